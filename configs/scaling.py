"""A scaling sweep: the same synthetic data and token count, widths xs → l (joint layout).

    for size in xs s m l; do
      python -m videogen.train --config configs/scaling.py:$size --workdir runs/scaling/$size
    done
    python -m videogen.scaling_fit --runs runs/scaling/xs,runs/scaling/s,runs/scaling/m,runs/scaling/l \\
        --output runs/scaling/fit.png

Sized for CPU (seconds per run); scale `train.num_steps` and the widths up on accelerators:
the fit reads compute from each run's own config, so any family of configs works.
"""
from videogen.config import base_config

# (width, depth, heads): head_dim 16 throughout, so 3D RoPE splits evenly.
SIZES = {"xs": (32, 2, 2), "s": (64, 3, 4), "m": (96, 4, 6), "l": (128, 6, 8)}


def get_config(arg: str | None = None):
  if arg not in SIZES:
    raise ValueError(f"configs/scaling.py needs a size variant, one of {list(SIZES)}")
  width, depth, heads = SIZES[arg]
  c = base_config()
  c.model.update(width=width, depth=depth, num_heads=heads, patch_size=(2, 4, 4), text_dim=64)
  c.data.update(num_frames=8, height=32, width=32)
  c.diffusion.update(shift=3.0)
  c.train.update(num_steps=400, batch_size=16, learning_rate=2e-3, warmup_steps=50,
                 log_every=20)
  c.checkpoint.update(every_steps=400, keep=1)
  return c
