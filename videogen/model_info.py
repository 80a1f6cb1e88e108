"""Parameter count, FLOPs and memory of a DiT config, without allocating it.

    python -m videogen.model_info --config configs/dit_family.py:wan_1_3b
    python -m videogen.model_info --config configs/dit_family.py:XL --frames 49 --height 720 \\
        --width 1280

Counts come from `jax.eval_shape` of the real model (nothing is allocated); FLOPs from the
analytic per-layout counter (`videogen/models/flops.py`, checked against XLA in the tests).
Sizes are pixels; a latent-space model (model.channels != 3) is counted on the latents of a
4×8×8 causal VAE (`1 + (T−1)/4` frames, H/8, W/8) unless `vae.checkpoint` names its VAE.
"""
import json
import sys

from absl import flags
from ml_collections import config_flags

from videogen.cli import parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_CONFIG = config_flags.DEFINE_config_file("config", None, "DiT config.", lock_config=True)
_FRAMES = flags.DEFINE_integer("frames", None, "Pixel frames (default: data.num_frames).")
_HEIGHT = flags.DEFINE_integer("height", None, "Pixel height (default: data.height).")
_WIDTH = flags.DEFINE_integer("width", None, "Pixel width (default: data.width).")
flags.mark_flags_as_required(["config"])


def latent_grid(config, frames: int, height: int, width: int) -> tuple[int, int, int]:
  """The (T, H, W) the DiT sees for a pixel clip shape."""
  if config.model.channels == 3:
    return frames, height, width
  return 1 + (frames - 1) // 4, height // 8, width // 8


def model_info(config, frames: int, height: int, width: int) -> dict:
  import jax
  import numpy as np
  from videogen.models.flops import dit_forward_flops, train_step_flops
  from videogen.models.text_to_video import build_model, example_inputs, spec_from_config
  t, h, w = latent_grid(config, frames, height, width)
  model = build_model(config, 0, config.model.text_dim)
  inputs = example_inputs(config, model, latent_shape=(t, h, w, config.model.channels))
  abstract = jax.eval_shape(lambda k: model.init(k, *inputs)["params"], jax.random.key(0))
  params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract))
  spec = spec_from_config(config.model)
  pt, ph, pw = spec.patch_size
  forward = dit_forward_flops(spec, t, h, w, config.text.max_length, config.model.text_dim)
  return {"layout": spec.layout, "params": params, "params_B": round(params / 1e9, 4),
          "latent_shape": [t, h, w, spec.channels],
          "video_tokens": (t // pt) * (h // ph) * (w // pw),
          "forward_TFLOP_per_clip": float(f"{forward / 1e12:.4g}"),
          "train_TFLOP_per_clip": float(f"{train_step_flops(forward) / 1e12:.4g}"),
          "adam_state_GB_f32": round(params * 16 / 1e9, 2)}  # params + grads + 2 moments


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv)
  config = _CONFIG.value
  data = config.data
  info = model_info(config, _FRAMES.value or data.num_frames, _HEIGHT.value or data.height,
                    _WIDTH.value or data.width)
  print(json.dumps(info, indent=2))


if __name__ == "__main__":
  main(sys.argv)
