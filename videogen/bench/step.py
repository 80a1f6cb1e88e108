"""Train-step benchmark: step time, tokens/s, model FLOPs, achieved FLOP/s and MFU.

    python -m videogen.bench [step] [--configs tiny,dit_100m] [--steps 5] [--batch_size N] \
        [--frames 17,49] [--json]

(`step` is the default <what>; the other benchmarks: `python -m videogen.bench
vae|attention|data|sample|vs-pytorch-dit --help`.)

Also reported: compile time and peak device memory (XLA's memory analysis of the compiled
step: state + temporaries).

MFU is reported against the matmul peak *measured in the same run* on the same devices
(a large square matmul in the compute dtype), so the figure is a ratio taken under the same
conditions, not against a datasheet number. Inputs are random arrays of the configured
shape: this times the step itself, not the data pipeline.
"""
import ast
import functools
import json
import os
import re
import sys
import tempfile
import time

from absl import flags

from videogen.cli import exit_with_error, missing_key, parse_flags_or_exit
from videogen.config import base_config, load_config_file
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_CONFIGS = flags.DEFINE_list("configs", ["tiny", "dit_100m"],
                             "Config names in configs/, optionally NAME:VARIANT.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per config (after one warm-up).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Override train.batch_size.")
_DTYPE = flags.DEFINE_string("dtype", None, "Override model.dtype (float32 on CPU is fastest).")
_JSON = flags.DEFINE_bool("json", False, "One JSON object per measurement instead of a table.")
_FRAMES = flags.DEFINE_list("frames", [], "Override data.num_frames, one measurement each.")
_RESOLUTION = flags.DEFINE_string("resolution", None, "Override data.height x width (480x720).")
_ATTENTION = flags.DEFINE_string("attention", None, "Override model.attention_backend.")
_REMAT = flags.DEFINE_string("remat", None, "Override model.remat_policy.")
_SET = flags.DEFINE_multi_string(
    "set", [], "Override any config key in every config: section.key=value at any depth (a "
    "Python literal, else a string), comma-separated or repeated, e.g. "
    "model.token_adaln=True,data.synthetic.radius=0.2,model.patch_size=(4,8,8).")
_PROFILE = flags.DEFINE_string("profile", None,
                               "Also trace two steps per measurement with jax.profiler into "
                               "this folder (read with benchmarks/profile_summary.py).")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO, "configs")


def load_config(name: str):
  """`tiny` or `tiny:expert` (a variant) → configs/tiny.py's config."""
  file, _, variant = name.partition(":")
  return load_config_file(os.path.join(CONFIG_DIR, f"{file}.py") + (f":{variant}" if variant
                                                                     else ""))


def configured(name: str, frames: int | None):
  """The named config with this run's overrides applied."""
  config = load_config(name)
  overrides = {"train.batch_size": _BATCH.value, "model.dtype": _DTYPE.value,
               "data.num_frames": frames, "model.attention_backend": _ATTENTION.value,
               "model.remat_policy": _REMAT.value}
  if _RESOLUTION.value:
    overrides["data.height"], overrides["data.width"] = map(int, _RESOLUTION.value.split("x"))
  overrides = {key: value for key, value in overrides.items() if value}
  for key, value in {**overrides, **dict(map(parse_setting, settings()))}.items():
    section, _, field = key.rpartition(".")
    node = config
    for part in section.split("."):
      node = node[part]
    node[field] = value
  return config


def settings() -> list[str]:
  """`--set` split into `section.key=value` items: at a comma only where the next item's key
  starts, so literals keep theirs (`model.patch_size=(4,8,8)`)."""
  return [item for value in _SET.value for item in re.split(r",(?=[A-Za-z_][\w.]*=)", value)]


def parse_setting(setting: str) -> tuple[str, object]:
  """`section.key=value` (any depth: `data.synthetic.radius=0.2`) → (key, value): a Python
  literal (`ast.literal_eval`, never `eval`), else the string; one ValueError line for a key
  the configs do not have."""
  key, _, raw = setting.partition("=")
  if "." not in key or missing_key(base_config(), key):
    raise ValueError(f"--set {setting}: no config key {key!r} (section.key=value, e.g. "
                     "model.token_adaln=True)")
  try:
    return key, ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return key, raw


def step_and_batch(config, mesh, rules):
  """(initialised state, step, host batch). A pixel config trains through its task (text
  through its own tokenizer/encoder); a latent preset is timed on pre-encoded inputs (VAE
  latents, T5 states), the step a large run trains after `encode_dataset`/`encode_text`."""
  import numpy as np
  from videogen.parallel import mesh as mesh_lib
  from videogen.training import state as state_lib
  from videogen.training.encoded_step import encoded_step
  from videogen.training.tasks import build_task
  rng = np.random.default_rng(0)
  if config.model.channels == 3:
    # A sentencepiece config (`tiny:suite`, `tiny:t5`) trains its tokenizer in the run
    # directory, as training would; the loaded tokenizer outlives the folder.
    with tempfile.TemporaryDirectory() as run_dir:
      task = build_task(config, mesh, rules, run_dir)
    step = functools.partial(task.build_step, rules=rules)
    data, b = config.data, config.train.batch_size
    batch = {"video": rng.uniform(-1, 1, (b, data.num_frames, data.height, data.width, 3)
                                  ).astype(np.float32),
             **task.text_features(["a red circle moving right"] * b)}
  else:
    task = encoded_step(config, rules)
    step = task.build_step
    batch = {name: (rng.standard_normal(s.shape).astype(s.dtype) if s.dtype != np.bool_
                    else np.ones(s.shape, bool)) for name, s in task.batch_shapes.items()}
  state, shardings = state_lib.create_train_state(task.init_params, task.tx, config.seed, mesh,
                                                  rules)
  return state, step(shardings, mesh_lib.batch_sharding(mesh)), batch


def bench_config(name: str, steps: int, peak: float, frames: int | None = None) -> dict:
  import jax
  import numpy as np
  from videogen.models.flops import dit_forward_flops, train_step_flops
  from videogen.models.text_to_video import spec_from_config
  from videogen.parallel import mesh as mesh_lib
  from videogen.bench.timing import seconds_per_step
  from videogen.training.encoded_step import input_grid

  config = configured(name, frames)
  mesh = mesh_lib.create_mesh(config.mesh)
  rules = mesh_lib.rules_from_config(config.mesh)
  state, step, batch = step_and_batch(config, mesh, rules)
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  with jax.set_mesh(mesh):
    batch = {k: jax.device_put(v, mesh_lib.batch_sharding(mesh)) for k, v in batch.items()}
    start = time.perf_counter()
    compiled = step.jitted.lower(state, batch, step.frozen).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()

    def step(state, batch, compiled=compiled, frozen=step.frozen):
      return compiled(state, batch, frozen)

    state, seconds = seconds_per_step(step, state, batch, steps)
    if _PROFILE.value:
      with jax.profiler.trace(os.path.join(_PROFILE.value, f"{name}_{frames}".replace(":", "_"))):
        state, _ = seconds_per_step(step, state, batch, 2)

  spec = spec_from_config(config.model)
  grid, b = input_grid(config), config.train.batch_size
  video_tokens = b * int(np.prod([n // p for n, p in zip(grid, spec.patch_size)]))
  flops = train_step_flops(dit_forward_flops(spec, *grid, config.text.max_length,
                                             config.model.text_dim, b))
  data = config.data
  return {"config": name, "params_M": num_params / 1e6, "batch": b,
          "shape": f"{data.num_frames}x{data.height}x{data.width}", "input_grid": grid,
          "attention": config.model.attention_backend, "remat": config.model.remat_policy,
          "dtype": config.model.dtype,
          "step_s": seconds, "clips_per_s": b / seconds, "tokens_per_s": video_tokens / seconds,
          "model_TFLOP_per_step": flops / 1e12, "achieved_TFLOP_s": flops / seconds / 1e12,
          "MFU_vs_measured_matmul": flops / seconds / peak, "compile_s": compile_s,
          "peak_memory_GB": (max(memory.argument_size_in_bytes, memory.output_size_in_bytes)
                             + memory.temp_size_in_bytes) / 1e9}


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  try:
    list(map(parse_setting, settings()))
  except ValueError as e:
    exit_with_error(str(e))
  import jax
  import jax.numpy as jnp
  from videogen.bench import timing
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}")
  rows = []
  for name in _CONFIGS.value:
    dtype = _DTYPE.value or load_config(name).model.dtype
    peak = timing.matmul_peak_flops(jnp.dtype(dtype))
    for frames in _FRAMES.value or [None]:
      row = bench_config(name, _STEPS.value, peak, frames and int(frames))
      row["matmul_peak_TFLOP_s"] = peak / 1e12
      if _JSON.value:
        print(json.dumps(row))
      rows.append(row)
  if _JSON.value:
    return
  header = list(rows[0])
  print(" | ".join(header))
  for row in rows:
    print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))


if __name__ == "__main__":
  main(sys.argv)
