"""Analytic FLOP count of the DiT forward pass (matmuls only, 2·m·n·k each).

Used by the benchmark to report model FLOPs per step and MFU; a test checks it against
XLA's own cost analysis of the compiled forward.
"""
from videogen.models.dit import DiTSpec

TIMESTEP_FREQUENCY_DIM = 256


def dit_forward_flops(spec: DiTSpec, frames: int, height: int, width: int, text_length: int,
                      text_dim: int, batch: int = 1) -> int:
  pt, ph, pw = spec.patch_size
  n = (frames // pt) * (height // ph) * (width // pw)      # video tokens
  d, l = spec.width, text_length
  hidden = int(spec.width * spec.mlp_ratio)
  patch_dim = pt * ph * pw * spec.channels

  self_attn = 2 * n * d * d * 4 + 2 * 2 * n * n * d        # q, k, v, out; scores and mix
  cross_attn = 2 * n * d * d * 2 + 2 * l * d * d * 2 + 2 * 2 * n * l * d
  mlp = 2 * 2 * n * d * hidden
  adaln = 2 * d * 6 * d
  block = self_attn + cross_attn + mlp + adaln

  embed = 2 * n * patch_dim * d + 2 * l * text_dim * d + 2 * text_dim * d * spec.pooled_text
  timestep = 2 * TIMESTEP_FREQUENCY_DIM * d + 2 * d * d
  head = 2 * d * 2 * d + 2 * n * d * patch_dim
  return batch * (spec.depth * block + embed + timestep + head)


def train_step_flops(forward_flops: int) -> int:
  """Forward + backward ≈ 3 × forward (backward costs two matmuls per forward matmul)."""
  return 3 * forward_flops
