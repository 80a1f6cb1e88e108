"""Patchify, timestep embedding and 3D positions computed from the runtime (T, H, W).

Positions are never a stored table: the same weights run at any duration and resolution.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from videogen.models.layers import Dense


def patchify(x_bthwc: jax.Array, patch: tuple[int, int, int]) -> jax.Array:
  """`(B, T, H, W, C)` → `(B, T/pt * H/ph * W/pw, pt*ph*pw*C)`, tokens in (t, h, w) order."""
  b, t, h, w, c = x_bthwc.shape
  pt, ph, pw = patch
  if t % pt or h % ph or w % pw:
    raise ValueError(f"video shape (T={t}, H={h}, W={w}) is not divisible by "
                     f"model.patch_size={patch}")
  x = x_bthwc.reshape(b, t // pt, pt, h // ph, ph, w // pw, pw, c)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(b, (t // pt) * (h // ph) * (w // pw), pt * ph * pw * c)


def unpatchify(tokens: jax.Array, grid: tuple[int, int, int],
               patch: tuple[int, int, int], channels: int) -> jax.Array:
  """Inverse of `patchify` for a token grid `(T', H', W')`."""
  b = tokens.shape[0]
  gt, gh, gw = grid
  pt, ph, pw = patch
  x = tokens.reshape(b, gt, gh, gw, pt, ph, pw, channels)
  x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(b, gt * pt, gh * ph, gw * pw, channels)


ROPE_SPLITS = ("cogvideox", "wan")


def axis_split(dim: int, split: str = "cogvideox") -> tuple[int, int, int]:
  """Splits `dim` channels over (t, h, w): CogVideoX gives 1/4 to time and 3/8 to each space
  axis; Wan gives 2·(dim // 6) to each space axis and the rest to time."""
  if split == "wan":
    dim_h = dim_w = 2 * (dim // 6)
    dim_t = dim - dim_h - dim_w
  elif split == "cogvideox":
    dim_t = dim // 4
    dim_h = dim_w = (dim - dim_t) // 2
  else:
    raise ValueError(f"model.rope_split={split!r}; expected one of {ROPE_SPLITS}")
  if dim % 2 or dim_t % 2 or dim_h % 2 or dim_t + dim_h + dim_w != dim:
    raise ValueError(f"3D positions need a dimension whose ({split}) t/h/w splits are even; "
                     f"got {dim} (use a head_dim/width that is a multiple of 16)")
  return dim_t, dim_h, dim_w


def _grid_positions(grid: tuple[int, int, int]) -> np.ndarray:
  """Integer (t, h, w) coordinates of each token, `(T'*H'*W', 3)`."""
  return np.stack(np.meshgrid(*[np.arange(n) for n in grid], indexing="ij"), -1).reshape(-1, 3)


def _angles(positions: np.ndarray, dim: int, theta: float) -> np.ndarray:
  """`(L,)` positions → `(L, dim/2)` rotation angles with geometric frequencies."""
  freqs = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
  return positions[:, None].astype(np.float64) * freqs[None]


def rope_3d(grid: tuple[int, int, int], head_dim: int, theta: float = 10000.0,
            split: str = "cogvideox", trailing: int = 0):
  """3D rotary embedding: `(cos, sin)`, each `(L + trailing, head_dim/2)`, from the token grid.
  `trailing` rows of identity rotation come last (text tokens that share the sequence)."""
  pos = _grid_positions(grid)
  angles = np.concatenate([_angles(pos[:, i], d, theta)
                           for i, d in enumerate(axis_split(head_dim, split))], axis=-1)
  return _cos_sin(np.concatenate([angles, np.zeros((trailing, angles.shape[1]))]))


def rope_1d(length: int, head_dim: int, theta: float = 10000.0):
  """Rotary embedding over token index (a caption): `(cos, sin)`, each `(length, head_dim/2)`."""
  return _cos_sin(_angles(np.arange(length), head_dim, theta))


def _cos_sin(angles: np.ndarray):
  return jnp.asarray(np.cos(angles), jnp.float32), jnp.asarray(np.sin(angles), jnp.float32)


def sincos_3d(grid: tuple[int, int, int], dim: int, theta: float = 10000.0) -> jax.Array:
  """Additive 3D sin-cos positions `(L, dim)`, channels split over (t, h, w)."""
  pos = _grid_positions(grid)
  parts = []
  for i, d in enumerate(axis_split(dim)):
    angles = _angles(pos[:, i], d, theta)
    parts += [np.sin(angles), np.cos(angles)]
  return jnp.asarray(np.concatenate(parts, axis=-1), jnp.float32)


def timestep_features(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal features `(B, dim)` of a (possibly fractional) timestep `(B,)`."""
  half = dim // 2
  freqs = jnp.exp(-np.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedding(nn.Module):
  """DiT's timestep MLP: sinusoidal features → Dense → SiLU → Dense."""

  dim: int
  frequency_dim: int = 256
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, t: jax.Array) -> jax.Array:
    h = timestep_features(t, self.frequency_dim)
    h = Dense(self.dim, (None, "embed"), dtype=self.dtype, name="fc1")(h)
    return Dense(self.dim, ("mlp", "embed"), dtype=self.dtype, name="fc2")(nn.silu(h))
