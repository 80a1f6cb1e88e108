"""Camera control: per-frame cameras → Plücker-ray embeddings → a zero-initialised adapter.

A camera is a pinhole with intrinsics (fx, fy, cx, cy; in units of the image size) and a
world-to-camera pose [R | t]. Each pixel's viewing ray, with origin o (the camera centre)
and unit direction d in world space, is embedded as its Plücker coordinates (o × d, d): six
numbers that identify the ray whatever point on it is chosen (CameraCtrl, Plücker 1865).
The DiT gets them per patch token through `CameraAdapter`, whose last layer starts at zero,
so a base model is unchanged until the adapter trains (MotionCtrl / CameraCtrl style).

Cameras are `(T, 12)` arrays per clip: R (9, row-major), then t (3); intrinsics are shared.
The paths themselves are numpy (camera_paths.py), which the data pipeline uses without flax.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from videogen.models.camera_paths import (HEIGHT, INTRINSICS, PATHS, named_path,  # noqa: F401
                                          pose, synthetic_cameras)
from videogen.models.layers import Dense

def at_frames(cameras: jax.Array | None, frames: int):
  """Per-video-frame cameras `(B, T, 12)` at a model's `frames` (latent frame k of a 4×
  causal VAE starts at video frame 4k)."""
  if cameras is None or frames >= cameras.shape[1]:
    return cameras
  stride = (cameras.shape[1] - 1) // max(frames - 1, 1)
  return cameras[:, ::stride][:, :frames]


def plucker_rays(cameras: jax.Array, grid: tuple[int, int]) -> jax.Array:
  """`(..., T, 12)` cameras → `(..., T, H, W, 6)` Plücker coordinates of the rays through
  the centres of an `H × W` grid of image cells."""
  h, w = grid
  fx, fy, cx, cy = INTRINSICS
  v, u = jnp.meshgrid((jnp.arange(h) + 0.5) / h, (jnp.arange(w) + 0.5) / w, indexing="ij")
  camera_dirs = jnp.stack([(u - cx) / fx, (v - cy) / fy, jnp.ones_like(u)], -1)  # (H, W, 3)
  rotation = cameras[..., :9].reshape(*cameras.shape[:-1], 3, 3)
  translation = cameras[..., 9:]
  origin = -jnp.einsum("...ji,...j->...i", rotation, translation)               # −Rᵀt
  directions = jnp.einsum("...ji,hwj->...hwi", rotation, camera_dirs)           # Rᵀ d_cam
  directions = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
  origin = jnp.broadcast_to(origin[..., None, None, :], directions.shape)
  return jnp.concatenate([jnp.cross(origin, directions), directions], -1)


class CameraAdapter(nn.Module):
  """Plücker rays at the token grid → an additive token embedding; zero at init."""
  width: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, cameras: jax.Array, grid: tuple[int, int, int], frames: int):
    """`cameras` `(B, frames, 12)` for the video's frames; `grid` the token grid (T', H', W'):
    each token takes the rays of its first frame (patch_t frames share one token)."""
    stride = frames // grid[0]
    rays = plucker_rays(cameras[:, ::stride][:, :grid[0]], grid[1:])          # (B,T',H',W',6)
    rays = rays.reshape(rays.shape[0], -1, 6)
    h = nn.silu(Dense(self.width, ("patch", "mlp"), dtype=self.dtype, name="camera_in")(rays))
    return Dense(self.width, ("mlp", "embed"), dtype=self.dtype,
                 kernel_init=nn.initializers.zeros, name="camera_out")(h)
