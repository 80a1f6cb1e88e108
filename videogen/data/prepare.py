"""Describe video files for a manifest: probe, motion score, optional user scores.

Used by `python -m videogen.prepare_data`. The motion score is the mean absolute difference
between consecutive sampled frames (grayscale, ≤64 px, 0–255 scale): ~0 for a still, large
for a chaotic clip, so `data.filters.min_motion/max_motion` can drop both ends.
"""
import importlib
import os

import numpy as np
from PIL import Image

from videogen import video_io
from videogen.data import manifest as manifest_lib

MOTION_SIZE = 64


def motion_score(frames: np.ndarray) -> float:
  """Mean |frame_t − frame_{t−1}| of uint8 `(T, H, W, 3)` frames at ≤64 px grayscale."""
  if len(frames) < 2:
    return 0.0
  h, w = frames.shape[1:3]
  scale = min(1.0, MOTION_SIZE / max(h, w))
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  gray = np.stack([np.asarray(Image.fromarray(f).convert("L").resize(size), np.float32)
                   for f in frames])
  return float(np.abs(np.diff(gray, axis=0)).mean())


def sample_frames(path: str, info: video_io.VideoInfo, count: int) -> np.ndarray:
  """About `count` frames evenly spread over the clip (one seek-free forward decode)."""
  stride = max(1, info.num_frames // count)
  return video_io.read_frames(path, 0, min(count, (info.num_frames - 1) // stride + 1), stride)


def describe(path: str, text: str, motion_frames: int = 8, scorer=None) -> dict:
  """A manifest row for one file; raises VideoReadError if it cannot be read."""
  info = video_io.probe(path)
  frames = sample_frames(path, info, motion_frames)
  row = {"path": path, "text": text, "num_frames": info.num_frames, "height": info.height,
         "width": info.width, "fps": round(info.fps, 4),
         "aspect_ratio": round(info.height / info.width, 4),
         "duration": round(info.duration, 4), "motion": round(motion_score(frames), 4)}
  if scorer is not None:
    row.update({k: float(v) for k, v in scorer(frames, path).items()})
  return row


def load_scorer(spec: str):
  """"module:function", called as `function(frames_uint8_thwc, path) -> {name: score}`."""
  module, _, name = spec.partition(":")
  try:
    return getattr(importlib.import_module(module), name)
  except (ImportError, AttributeError, ValueError) as e:
    raise ValueError(f"--scorer {spec!r} cannot be loaded: {e}") from None


def find_inputs(source: str) -> list[tuple[str, str]]:
  """(path, caption) pairs from a folder (captions from sidecar `.txt` files beside each
  video) or from a manifest (its `path` and `text` columns; other columns are re-measured)."""
  if os.path.isdir(source):
    pairs = []
    for root, _, files in sorted(os.walk(source)):
      for name in sorted(files):
        if name.lower().endswith(video_io.READABLE_SUFFIXES):
          path = os.path.join(root, name)
          sidecar = os.path.splitext(path)[0] + ".txt"
          text = ""
          if os.path.isfile(sidecar):
            with open(sidecar) as f:
              text = f.read().strip()
          pairs.append((path, text))
    return pairs
  if not os.path.isfile(source):
    raise FileNotFoundError(f"--input {source!r} does not exist")
  rows = manifest_lib.read_rows(source)
  folder = os.path.dirname(os.path.abspath(source))
  return [(r["path"] if os.path.isabs(r["path"]) else os.path.join(folder, r["path"]),
           str(r.get("text", ""))) for r in rows if r.get("path")]
