"""A ~100M-parameter joint DiT (DiT-B width, 8 blocks: 104M with cross-attention and AdaLN)
for benchmarking."""
from videogen.config import base_config


def get_config(arg: str | None = None):
  del arg
  c = base_config()
  c.model.update(width=768, depth=8, num_heads=12, patch_size=(1, 4, 4), text_dim=256,
                 dtype="bfloat16", remat_policy="save_dots")
  c.data.update(num_frames=8, height=64, width=64)
  c.train.update(batch_size=4, learning_rate=1e-4)
  return c
