"""Sampler benchmark: seconds per video and model evaluations per second for every sampler of
the model's family, at several step counts, with and without feature caching, each with its
distance from a many-step reference (the quality proxy: same prompts, seeds and noise).

    python -m videogen.bench sample --workdir DIR [--steps 5,10,20,40] [--reference_steps 200]
        [--caches none,every:2,threshold:0.05] [--num_prompts 4] [--json]

`drift` is the mean |x − x_ref| in the sampler's space (pixels in [-1, 1] or latents) against
the reference sampler (heun for flow, dpm_solver++ otherwise) at `--reference_steps`. Read a
row's cost at equal quality by comparing rows of equal drift.
"""
import dataclasses
import json
import sys
import time

from absl import flags

from videogen.cli import load_generator_or_exit, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir or export.", required=True)
_STEPS = flags.DEFINE_list("steps", ["5", "10", "20", "40"], "Step counts to time.")
_REFERENCE = flags.DEFINE_integer("reference_steps", 200, "Steps of the reference sample.")
_CACHES = flags.DEFINE_list("caches", ["none", "every:2", "threshold:0.05"],
                            "Feature cache settings: none | every:K | threshold:X.")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 4, "Videos per call (one batch).")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed calls per row (after one warm-up).")
_JSON = flags.DEFINE_bool("json", False, "One JSON object per row instead of a table.")


def parse_cache(text: str):
  from videogen.diffusion.feature_cache import FeatureCache
  policy, _, value = text.partition(":")
  if policy == "every":
    return FeatureCache("every", every=int(value or 2))
  if policy == "threshold":
    return FeatureCache("threshold", threshold=float(value or 0.05))
  return FeatureCache(policy)


def evaluations(sampler: str, steps: int) -> int:
  """Model evaluations (each one CFG-batched call) a sampler makes in `steps` steps."""
  return 2 * steps - 1 if sampler == "heun" else steps


def timed(draw, repeats: int):
  import jax
  out = jax.block_until_ready(draw())
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(draw())
  return out, (time.perf_counter() - start) / repeats


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  import jax.numpy as jnp
  from videogen.diffusion import feature_cache, samplers
  from videogen.diffusion.objectives import from_config
  from videogen.eval.synthetic_judge import synthetic_prompts
  generator = load_generator_or_exit(_WORKDIR.value)
  diffusion = from_config(generator.config.diffusion)
  family = samplers.FLOW_SAMPLERS if diffusion.is_flow else samplers.DDPM_SAMPLERS
  prompts = synthetic_prompts(generator.config.data.synthetic, _NUM_PROMPTS.value)
  shape = generator.sample_shape(len(prompts))
  base = generator.options(shape)
  draw = lambda options: generator.sample(prompts, shape, options, seed=0)  # noqa: E731
  reference = draw(dataclasses.replace(base, steps=_REFERENCE.value,
                                       sampler="heun" if diffusion.is_flow else "dpm_solver++",
                                       cache=feature_cache.FeatureCache()))
  rows = []
  for sampler in family:
    for steps in map(int, _STEPS.value):
      for cache_text in _CACHES.value:
        options = dataclasses.replace(base, steps=steps, sampler=sampler,
                                      cache=parse_cache(cache_text))
        out, seconds = timed(lambda: draw(options), _REPEATS.value)
        row = {"sampler": sampler, "steps": steps, "cache": cache_text,
               "seconds_per_video": seconds / len(prompts),
               "evaluations_per_s": evaluations(sampler, steps) / seconds,
               "drift": float(jnp.abs(out - reference).mean())}
        rows.append(row)
        if _JSON.value:
          print(json.dumps(row))
  if not _JSON.value:
    print(" | ".join(rows[0]))
    for row in rows:
      print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))


if __name__ == "__main__":
  main(sys.argv)
