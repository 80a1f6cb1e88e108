"""Our `expert` DiT train step vs the same model in PyTorch (diffusers CogVideoX), one run.

    python -m videogen.bench vs-pytorch-dit [--layers 4 --heads 8 --head_dim 64 --batch 2 \\
        --latent 5x32x32 --text 32 --steps 2 --rounds 5 --compile]

Both sides train the identical architecture (our config is read from the diffusers model's
own config by the importer), f32, AdamW, on the same shapes. After one warm-up step each,
the sides take turns (A B C A B C …, `--rounds` times) timing a window of `--steps` steps,
with a 2048² matmul of torch and of JAX in each round as the peak: on a shared machine the
load drifts, and windows taken in turn see about the same load. Each side prints one JSON line
(median tokens/s); a final line per attention backend gives the median of the per-round
ratios and our MFU (model FLOPs/s over JAX's matmul in the same round).
"""
import dataclasses
import json
import statistics
import sys

import numpy as np
from absl import flags

from videogen.cli import exit_with_error, parse_flags_or_exit
# jax, torch and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_LAYERS = flags.DEFINE_integer("layers", 4, "Transformer blocks.")
_HEADS = flags.DEFINE_integer("heads", 8, "Attention heads.")
_HEAD_DIM = flags.DEFINE_integer("head_dim", 64, "Channels per head.")
_BATCH = flags.DEFINE_integer("batch", 2, "Clips per step.")
_LATENT = flags.DEFINE_string("latent", "5x32x32", "Latent FRAMESxHEIGHTxWIDTH.")
_TEXT = flags.DEFINE_integer("text", 32, "Text tokens.")
_STEPS = flags.DEFINE_integer("steps", 2, "Steps per timed window (after one warm-up).")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed windows per side, taken in turn.")
_COMPILE = flags.DEFINE_bool("compile", False, "Also time torch.compile.")
_ATTENTION = flags.DEFINE_list("attention", ["xla"],
                               "Our attention backend(s): xla,reference,blockwise.")
MATMUL = 2048  # the peak's square matmul size
MATMUL_REPEATS = 5


@dataclasses.dataclass(frozen=True)
class Setup:
  """The shared model and input shape, read from the flags."""
  layers: int
  heads: int
  head_dim: int
  batch: int
  latent: tuple[int, int, int]  # latent (frames, height, width)
  text: int
  steps: int
  rounds: int
  compile: bool


def torch_steps(args: Setup) -> tuple[object, dict]:
  """(the diffusers model, {"eager": step, "compiled": step}), each step warmed up."""
  import diffusers
  import torch
  frames, height, width = args.latent
  model = diffusers.CogVideoXTransformer3DModel(
      num_attention_heads=args.heads, attention_head_dim=args.head_dim, in_channels=16,
      out_channels=16, num_layers=args.layers, text_embed_dim=4096, time_embed_dim=512,
      sample_frames=(frames - 1) * 4 + 1, sample_height=height, sample_width=width,
      max_text_seq_length=args.text, use_rotary_positional_embeddings=True)
  x = torch.randn(args.batch, frames, 16, height, width)
  context = torch.randn(args.batch, args.text, 4096)
  t = torch.randint(0, 1000, (args.batch,))
  from diffusers.models.embeddings import get_3d_rotary_pos_embed
  grid = (height // 2, width // 2)
  rope = get_3d_rotary_pos_embed(args.head_dim, ((0, 0), grid), grid, frames)
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

  def step():
    optimizer.zero_grad(set_to_none=True)
    out = model(x, context, t, image_rotary_emb=rope, return_dict=False)[0]
    loss = (out - x).square().mean()
    loss.backward()
    optimizer.step()
    return loss

  steps = {"eager": step}
  if args.compile:
    steps["compiled"] = torch.compile(step)
  for fn in steps.values():
    fn()  # warm-up (and compilation)
  return model, steps


def torch_matmul():
  """One timed unit of torch's matmul peak (a 2048² product, result read back)."""
  import torch
  a = torch.randn(MATMUL, MATMUL)
  return lambda: (a @ a).sum().item()


def jax_step(args: Setup, torch_model, attention: str):
  """(our step as a blocking zero-argument call, warmed up; its model FLOPs)."""
  import jax
  from videogen.config import base_config
  from videogen.diffusion.objectives import from_config as diffusion_from_config
  from videogen.formats.diffusers_dit import cogvideox_model_config
  from videogen.models.flops import dit_forward_flops, train_step_flops
  from videogen.models.text_to_video import build_model, example_inputs, spec_from_config
  from videogen.parallel import mesh as mesh_lib
  from videogen.training import state as state_lib
  from videogen.training.step import jit_train_step
  frames, height, width = args.latent
  config = base_config()
  config.model.update(**cogvideox_model_config(dict(torch_model.config)), dtype="float32",
                      scan_layers=True, attention_backend=attention)
  config.data.update(num_frames=frames, height=height, width=width)
  config.text.update(max_length=args.text)
  config.train.update(batch_size=args.batch, caption_dropout=0.0, learning_rate=1e-4)
  mesh = mesh_lib.create_mesh(config.mesh, jax.devices()[:1])
  rules = mesh_lib.rules_from_config(config.mesh)
  # The DiT reads 4096-wide text states directly (as from a T5 cache), like the torch side.
  model = build_model(config, 0, 4096)
  inputs = example_inputs(config, model)
  tx = state_lib.make_optimizer(config.train)
  state, shardings = state_lib.create_train_state(
      lambda key: model.init(key, *inputs)["params"], tx, 0, mesh, rules)
  step = jit_train_step(config, model, diffusion_from_config(config.diffusion), tx, None,
                        shardings, mesh_lib.batch_sharding(mesh), rules)
  rng = np.random.default_rng(0)
  batch = {"video": rng.normal(size=(args.batch, frames, height, width, 16)).astype(np.float32),
           "text_embedding": rng.normal(size=(args.batch, args.text, 4096)).astype(np.float32),
           "text_mask": np.ones((args.batch, args.text), bool)}
  batch = jax.device_put(batch, mesh_lib.batch_sharding(mesh))  # like torch's resident inputs
  held = [state]  # each step donates the previous state

  def run():
    with jax.set_mesh(mesh):
      held[0], metrics = step(held[0], batch)
    jax.block_until_ready(metrics)

  run()  # warm-up (and compilation)
  flops = train_step_flops(dit_forward_flops(spec_from_config(config.model), frames, height,
                                             width, args.text, 4096, args.batch))
  return run, flops


def jax_matmul():
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(0), (MATMUL, MATMUL), jnp.float32)
  product = jax.jit(lambda x: x @ x)
  product(a).block_until_ready()
  return lambda: product(a).block_until_ready()


def tokens(args: Setup) -> int:
  frames, height, width = args.latent
  return args.batch * frames * (height // 2) * (width // 2)


def repeated(fn, times: int):
  def window():
    for _ in range(times):
      fn()
  return window


def measure(args: Setup, attentions: list[str]) -> list[dict]:
  """The JSON rows: torch's side, each of our backends, and the per-backend ratios."""
  from videogen.bench.timing import interleaved_seconds
  torch_model, steps = torch_steps(args)
  windows = {name: repeated(fn, args.steps) for name, fn in steps.items()}
  flops = {}
  for attention in attentions:
    run, flops[attention] = jax_step(args, torch_model, attention)
    windows[attention] = repeated(run, args.steps)
  windows["torch_matmul"] = repeated(torch_matmul(), MATMUL_REPEATS)
  windows["jax_matmul"] = repeated(jax_matmul(), MATMUL_REPEATS)
  seconds = interleaved_seconds(windows, args.rounds)
  per_step = {name: np.array(s) / args.steps for name, s in seconds.items()}
  matmul_flops = {name: MATMUL_REPEATS * 2 * MATMUL ** 3 / np.array(seconds[name])
                  for name in ("torch_matmul", "jax_matmul")}
  median = lambda values: round(float(statistics.median(values)), 3)  # noqa: E731
  rate = lambda name: tokens(args) / per_step[name]  # noqa: E731  per round
  rows = [{"side": "pytorch",
           "params_M": round(sum(p.numel() for p in torch_model.parameters()) / 1e6, 3),
           **{name: median(rate(name)) for name in steps},
           "matmul_flops": median(matmul_flops["torch_matmul"])}]
  for attention in attentions:
    rows.append({"side": "videogen", "attention": attention,
                 "tokens_per_s": median(rate(attention)),
                 "model_flops_per_s": median(flops[attention] / per_step[attention]),
                 "matmul_flops": median(matmul_flops["jax_matmul"]),
                 "step_s": median(per_step[attention])})
  for attention in attentions:
    summary = {"attention": attention, "rounds": args.rounds}
    summary["ours_vs_eager"] = median(rate(attention) / rate("eager"))
    if "compiled" in steps:
      summary["ours_vs_compiled"] = median(rate(attention) / rate("compiled"))
    summary["ours_mfu_vs_measured_matmul"] = median(
        flops[attention] / per_step[attention] / matmul_flops["jax_matmul"])
    rows.append(summary)
  return rows


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  try:
    frames, height, width = (int(v) for v in _LATENT.value.split("x"))
  except ValueError:
    exit_with_error(f"--latent: expected FRAMESxHEIGHTxWIDTH (5x32x32), got {_LATENT.value!r}")
  if _STEPS.value < 1 or _ROUNDS.value < 1:
    exit_with_error("--steps and --rounds: expected at least 1")
  args = Setup(_LAYERS.value, _HEADS.value, _HEAD_DIM.value, _BATCH.value,
               (frames, height, width), _TEXT.value, _STEPS.value, _ROUNDS.value,
               _COMPILE.value)
  for row in measure(args, _ATTENTION.value):
    print(json.dumps(row))


if __name__ == "__main__":
  main(sys.argv)
