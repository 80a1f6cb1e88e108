"""Our `expert` DiT train step vs the same model in PyTorch (diffusers CogVideoX), one run.

    python -m videogen.bench vs-pytorch-dit [--layers 4 --heads 8 --head_dim 64 --batch 2 \\
        --latent 5x32x32 --text 32 --steps 3 --compile]

Both sides train the identical architecture (our config is read from the diffusers model's
own config by the importer), f32, AdamW, on the same shapes; each prints one JSON line with
tokens/s, and a final line gives the ratios and both sides' share of a matmul peak measured
in the same run (torch and JAX each time a 2048² matmul).
"""
import dataclasses
import json
import sys
import time

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
_STEPS = flags.DEFINE_integer("steps", 3, "Timed steps per side (after one warm-up).")
_COMPILE = flags.DEFINE_bool("compile", False, "Also time torch.compile.")
_ATTENTION = flags.DEFINE_list("attention", ["xla"],
                               "Our attention backend(s): xla,reference,blockwise.")


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
  compile: bool


def torch_rates(args: Setup) -> tuple[dict, object]:
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

  rates = {"params_M": sum(p.numel() for p in model.parameters()) / 1e6}
  variants = [("eager", step)]
  if args.compile:
    variants.append(("compiled", torch.compile(step)))
  for name, fn in variants:
    fn()  # warm-up (and compilation)
    start = time.perf_counter()
    for _ in range(args.steps):
      fn()
    rates[name] = args.steps * tokens(args) / (time.perf_counter() - start)
  a = torch.randn(2048, 2048)
  (a @ a).sum()
  start = time.perf_counter()
  for _ in range(5):
    (a @ a).sum().item()
  rates["matmul_flops"] = 5 * 2 * 2048 ** 3 / (time.perf_counter() - start)
  return rates, model


def jax_rate(args: Setup, torch_model, attention: str) -> dict:
  import jax
  import jax.numpy as jnp
  from videogen.config import base_config
  from videogen.diffusion.objectives import from_config as diffusion_from_config
  from videogen.formats.diffusers_dit import cogvideox_model_config
  from videogen.models.flops import dit_forward_flops, train_step_flops
  from videogen.models.text_to_video import build_model, example_inputs, spec_from_config
  from videogen.parallel import mesh as mesh_lib
  from videogen.training import state as state_lib
  from videogen.bench.timing import matmul_peak_flops, seconds_per_step
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
  with jax.set_mesh(mesh):
    _, seconds = seconds_per_step(step, state, batch, args.steps)
  peak = matmul_peak_flops(jnp.float32, num_devices=1)  # the step runs on one device
  flops = train_step_flops(dit_forward_flops(spec_from_config(config.model), frames, height,
                                             width, args.text, 4096, args.batch))
  return {"tokens_per_s": tokens(args) / seconds, "model_flops_per_s": flops / seconds,
          "matmul_flops": peak, "step_s": seconds}


def tokens(args: Setup) -> int:
  frames, height, width = args.latent
  return args.batch * frames * (height // 2) * (width // 2)


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  try:
    frames, height, width = (int(v) for v in _LATENT.value.split("x"))
  except ValueError:
    exit_with_error(f"--latent: expected FRAMESxHEIGHTxWIDTH (5x32x32), got {_LATENT.value!r}")
  args = Setup(_LAYERS.value, _HEADS.value, _HEAD_DIM.value, _BATCH.value,
               (frames, height, width), _TEXT.value, _STEPS.value, _COMPILE.value)
  torch_side, model = torch_rates(args)
  print(json.dumps({"side": "pytorch", **{k: round(v, 3) for k, v in torch_side.items()}}))
  for attention in _ATTENTION.value:
    ours = jax_rate(args, model, attention)
    print(json.dumps({"side": "videogen", "attention": attention,
                      **{k: round(v, 3) for k, v in ours.items()}}))
    summary = {"ours_vs_eager": ours["tokens_per_s"] / torch_side["eager"],
               "ours_mfu_vs_measured_matmul": ours["model_flops_per_s"] / ours["matmul_flops"]}
    if "compiled" in torch_side:
      summary["ours_vs_compiled"] = ours["tokens_per_s"] / torch_side["compiled"]
    print(json.dumps({"attention": attention, **{k: round(v, 3) for k, v in summary.items()}}))


if __name__ == "__main__":
  main(sys.argv)
