"""Temporal consistency of a video: pixel flicker, and the warping error under a given flow.

Flicker is the mean change between consecutive frames: 0 for a still video, and it cannot
tell motion from noise. The warping error (Lai et al., 2018) can: frame t is carried along
the flow to frame t + 1 and compared there, so a video whose pixels move exactly with the
flow scores 0 however fast they move. It needs a flow; the synthetic world's is exact and
rigid (each object translates, the static background stays): `rigid_flow` builds it from
object masks and centres, the ground-truth ones of a rendered clip or the ones the judge
tracks in a generated video.
"""
import numpy as np


def flicker(video_thwc: np.ndarray) -> float:
  """The mean absolute change between consecutive frames, in [0, 1] of the pixel range
  (uint8 input): 0 for a still video."""
  frames = np.asarray(video_thwc, np.float32) / 255.0
  return float(np.abs(np.diff(frames, axis=0)).mean())


def _dilate(mask: np.ndarray) -> np.ndarray:
  """3×3 binary dilation over the last two axes."""
  padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
  h, w = mask.shape[-2:]
  return np.any([padded[..., i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)


def rigid_flow(masks_tkhw: np.ndarray, centres_tk2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Backward flow `(T-1, H, W, 2)` (row, col) and validity `(T-1, H, W)` of rigidly moving
  objects on a static background.

  Pixel q of frame t + 1 came from q + flow[t](q) of frame t: the object's displacement
  reversed inside its mask at t + 1, zero elsewhere. Valid: the objects' interiors (mask
  eroded by a pixel) where their centre is known at t and t + 1, and background at least a
  pixel away from every object at t and t + 1 (anti-aliased edges and disoccluded background
  have no single source)."""
  masks = np.asarray(masks_tkhw, bool)
  centres = np.asarray(centres_tk2, np.float32)
  steps, (h, w) = masks.shape[0] - 1, masks.shape[2:]
  flow = np.zeros((steps, h, w, 2), np.float32)
  near_object = _dilate(masks.any(1))
  valid = ~near_object[:-1] & ~near_object[1:]
  for k in range(masks.shape[1]):
    shift = centres[:-1, k] - centres[1:, k]
    known = ~np.isnan(shift).any(-1)
    inside = masks[1:, k]
    flow[inside] = np.nan_to_num(np.broadcast_to(shift[:, None, None], flow.shape)[inside])
    valid |= ~_dilate(~inside) & known[:, None, None]
  return flow, valid


def warp(frames_thwc: np.ndarray, flow_thw2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Bilinear samples of `frames` at `q + flow(q)`; also whether that point is inside."""
  t, h, w = flow_thw2.shape[:3]
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  y, x = rows + flow_thw2[..., 0], cols + flow_thw2[..., 1]
  inside = (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)
  y, x = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
  y0, x0 = np.minimum(np.floor(y).astype(int), h - 2), np.minimum(np.floor(x).astype(int), w - 2)
  fy, fx = (y - y0)[..., None], (x - x0)[..., None]
  frame = np.arange(t)[:, None, None]
  f = np.asarray(frames_thwc, np.float32)
  top = f[frame, y0, x0] * (1 - fx) + f[frame, y0, x0 + 1] * fx
  bottom = f[frame, y0 + 1, x0] * (1 - fx) + f[frame, y0 + 1, x0 + 1] * fx
  return top * (1 - fy) + bottom * fy, inside


def warping_error(video_thwc: np.ndarray, flow_thw2: np.ndarray, valid_thw=None) -> float:
  """Mean |frame t+1 − frame t warped by the backward flow| over valid pixels, in [0, 1] of
  the pixel range (uint8 input)."""
  predicted, inside = warp(video_thwc[:-1], flow_thw2)
  mask = inside if valid_thw is None else inside & valid_thw
  error = np.abs(np.asarray(video_thwc[1:], np.float32) - predicted).mean(-1) / 255.0
  return float(error[mask].mean()) if mask.any() else float("nan")
