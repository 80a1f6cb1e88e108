"""Camera control: per-frame cameras → Plücker-ray embeddings → a zero-initialised adapter.

A camera is a pinhole with intrinsics (fx, fy, cx, cy; in units of the image size) and a
world-to-camera pose [R | t]. Each pixel's viewing ray, with origin o (the camera centre)
and unit direction d in world space, is embedded as its Plücker coordinates (o × d, d): six
numbers that identify the ray whatever point on it is chosen (CameraCtrl, Plücker 1865).
The DiT gets them per patch token through `CameraAdapter`, whose last layer starts at zero,
so a base model is unchanged until the adapter trains (MotionCtrl / CameraCtrl style).

Cameras are `(T, 12)` arrays per clip: R (9, row-major), then t (3); intrinsics are shared.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from videogen.models.layers import Dense

PATHS = ("static", "pan_left", "pan_right", "pan_up", "pan_down", "zoom_in", "zoom_out",
         "orbit")
# The synthetic world is the plane z = 0 seen from z = −HEIGHT (world units = image widths).
HEIGHT = 1.0
INTRINSICS = (1.0, 1.0, 0.5, 0.5)  # fx, fy, cx, cy: a 53° field of view at HEIGHT


def pose(rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
  """World-to-camera [R | t] of a camera at `centre` with world-to-camera rotation R."""
  return np.concatenate([rotation.reshape(-1), -rotation @ centre])


def named_path(name: str, frames: int, speed: float = 0.03) -> np.ndarray:
  """`(T, 12)` cameras along a named path (pan: image widths per frame; zoom: factor per
  frame, as the synthetic world's camera; orbit: `speed` radians per frame about the scene
  centre)."""
  if name not in PATHS:
    raise ValueError(f"camera path {name!r} is not one of {PATHS}")
  t = np.arange(frames, dtype=np.float64)
  cameras = []
  for k in t:
    rotation, centre = np.eye(3), np.array([0.5, 0.5, -HEIGHT])
    step = {"pan_left": (-1, 0), "pan_right": (1, 0), "pan_up": (0, -1), "pan_down": (0, 1)}
    if name in step:
      centre[:2] += np.array(step[name], np.float64) * speed * k  # (x, y)
    elif name in ("zoom_in", "zoom_out"):
      zoom = (1 + speed) ** (k if name == "zoom_in" else -k)
      centre[2] = -HEIGHT / zoom
    elif name == "orbit":  # about the vertical (y) axis through the scene centre
      angle = speed * k
      c, s = np.cos(angle), np.sin(angle)
      to_camera = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
      centre = np.array([0.5, 0.5, 0.0]) + to_camera.T @ np.array([0, 0, -HEIGHT])
      rotation = to_camera
    cameras.append(pose(rotation, centre))
  return np.stack(cameras).astype(np.float32)


def synthetic_cameras(camera: np.ndarray) -> np.ndarray:
  """The synthetic world's per-frame camera `(T, 3)` (centre y, x; zoom) as `(T, 12)`
  poses: a pan moves the camera over the plane, a zoom moves it closer."""
  centres = np.stack([camera[:, 1], camera[:, 0], -HEIGHT / camera[:, 2]], -1)
  return np.stack([pose(np.eye(3), c) for c in centres]).astype(np.float32)


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
