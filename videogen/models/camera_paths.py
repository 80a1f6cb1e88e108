"""Camera paths as numpy `(T, 12)` world-to-camera poses [R (9, row-major) | t (3)]: the named
paths a sampler follows and the synthetic world's rendered cameras. numpy only (no jax, no
flax), so the data pipeline's Grain workers can use it; models/camera.py embeds them."""
import numpy as np

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
