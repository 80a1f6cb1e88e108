"""Analytic FLOP count of the DiT forward pass per layout (matmuls only, 2·m·n·k each).

Used by the benchmark to report model FLOPs per step and MFU; a test checks each layout
against XLA's own cost analysis of the compiled forward.
"""
from videogen.models.dit import DiTSpec


def _attention(queries: int, keys: int, d: int, groups: int = 1) -> int:
  """q and out projections over the queries, k and v over the keys, then scores and mix,
  with attention confined to `groups` independent groups of queries/keys."""
  return 2 * queries * d * d * 2 + 2 * keys * d * d * 2 + 2 * 2 * queries * keys * d // groups


def dit_forward_flops(spec: DiTSpec, frames: int, height: int, width: int, text_length: int,
                      text_dim: int, batch: int = 1) -> int:
  pt, ph, pw = spec.patch_size
  t, hw = frames // pt, (height // ph) * (width // pw)
  n = t * hw                                               # video tokens
  d, l, e = spec.width, text_length, spec.cond_dim
  hidden = round(spec.width * spec.mlp_ratio)
  patch_dim = pt * ph * pw * spec.channels
  mlp = lambda tokens: 2 * 2 * tokens * d * hidden  # noqa: E731
  per_block_mod = 2 * e * 6 * d if spec.adaln == "per_block" else 0
  cross = lambda queries: (_attention(queries, l, d)  # noqa: E731
                           + (2 * queries * d * 3 * d if spec.token_adaln else 0))

  if spec.layout == "expert":
    s = n + l
    block = _attention(s, s, d) + mlp(s) + 2 * per_block_mod
  elif spec.layout == "factorized":
    spatial = _attention(n, n, d, groups=t) + cross(n) + mlp(n) + per_block_mod
    temporal = _attention(n, n, d, groups=hw) + cross(n) + mlp(n) + per_block_mod
    block = spatial + temporal
  else:
    s = n + spec.registers
    block = _attention(s, s, d) + cross(s) + mlp(s) + per_block_mod

  text = 2 * l * text_dim * d + (2 * l * d * d if spec.text_projection == "mlp" else 0)
  embed = 2 * n * patch_dim * d + text + 2 * text_dim * e * spec.pooled_text
  timestep = 2 * spec.time_frequency_dim * e + 2 * e * e
  shared = 2 * e * 6 * d if spec.adaln == "single" else 0
  head_hidden = int(spec.head_mlp_ratio * d)
  head = (2 * e * 2 * d if spec.adaln == "per_block" else 0) + (
      2 * n * (d * head_hidden + head_hidden * patch_dim) if head_hidden else 2 * n * d * patch_dim)
  return batch * (spec.depth * block + embed + timestep + shared + head)


def train_step_flops(forward_flops: int) -> int:
  """Forward + backward ≈ 3 × forward (backward costs two matmuls per forward matmul)."""
  return 3 * forward_flops
