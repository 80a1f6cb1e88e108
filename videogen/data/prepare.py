"""Describe video files for a manifest: probe, motion score, optional user scores.

Used by `python -m videogen.prepare_data`. The motion score is the mean absolute difference
between consecutive sampled frames (grayscale, ≤64 px, 0–255 scale): ~0 for a still, large
for a chaotic clip, so `data.filters.min_motion/max_motion` can drop both ends.
"""
import collections
import dataclasses
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


def sample_frames(path: str, info: video_io.VideoInfo, count: int,
                  max_pixels: int = video_io.MAX_PIXELS, max_side: int = 0) -> np.ndarray:
  """About `count` frames evenly spread over the clip (one seek-free forward decode)."""
  stride = max(1, info.num_frames // count)
  return video_io.read_frames(path, 0, min(count, (info.num_frames - 1) // stride + 1), stride,
                              max_pixels, max_side)


def describe(path: str, text: str, motion_frames: int = 8, scorer=None,
             max_pixels: int = video_io.MAX_PIXELS) -> dict:
  """A manifest row for one file; raises VideoReadError if it cannot be read. The frame size
  is checked against `max_pixels` from the header before anything is decoded; without a
  scorer, frames are scaled down as they are decoded (the motion score needs ≤64 px)."""
  info = video_io.probe(path, max_pixels)
  frames = sample_frames(path, info, motion_frames, max_pixels,
                         max_side=0 if scorer else 4 * MOTION_SIZE)
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


# A sidecar caption larger than this is not read (counted as caption_unreadable).
MAX_CAPTION_BYTES = 1 << 20


@dataclasses.dataclass
class Inputs:
  """What a folder or manifest holds: (path, caption) pairs to probe, the files skipped
  before probing as (path, reason), and counted caption problems (the clip is kept)."""
  pairs: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  notes: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def _utf8(name: str) -> bool:
  try:
    name.encode("utf-8")
    return True
  except UnicodeEncodeError:  # os.walk's surrogate escapes for bytes that are not UTF-8
    return False


def read_caption(path: str, notes: collections.Counter) -> str:
  """A sidecar caption as text: bytes that are not UTF-8 become U+FFFD (counted as
  caption_not_utf8); an unreadable or oversized file is counted and gives ""."""
  try:
    with open(path, "rb") as f:
      raw = f.read(MAX_CAPTION_BYTES + 1)
  except OSError:
    notes["caption_unreadable"] += 1
    return ""
  if len(raw) > MAX_CAPTION_BYTES:
    notes["caption_unreadable"] += 1
    return ""
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError:
    notes["caption_not_utf8"] += 1
    text = raw.decode("utf-8", "replace")
  return text.replace("\x00", "\ufffd").strip()


def find_inputs(source: str) -> Inputs:
  """Videos and captions from a folder (captions from sidecar `.txt` files beside each
  video) or from a manifest (its `path` and `text` columns; other columns are re-measured).
  A name that is not UTF-8, and a non-file with a video suffix (a directory called x.mp4),
  is skipped here; folders that cannot be listed are counted."""
  found = Inputs()
  if os.path.isdir(source):
    def unlisted(error):
      found.notes["folder_unreadable"] += 1
    for root, dirs, files in sorted(os.walk(source, onerror=unlisted)):
      dirs.sort()
      for name in sorted(dirs):
        if name.lower().endswith(video_io.READABLE_SUFFIXES):
          path = os.path.join(root, name)
          found.skipped.append((path, "not_a_file" if _utf8(path) else "name_not_utf8"))
      for name in sorted(files):
        if not name.lower().endswith(video_io.READABLE_SUFFIXES):
          continue
        path = os.path.join(root, name)
        if not _utf8(path):
          found.skipped.append((path, "name_not_utf8"))
          continue
        sidecar = os.path.splitext(path)[0] + ".txt"
        text = read_caption(sidecar, found.notes) if os.path.lexists(sidecar) else ""
        found.pairs.append((path, text))
    return found
  if not os.path.isfile(source):
    raise FileNotFoundError(f"--input {source!r} does not exist")
  rows = manifest_lib.read_rows(source)
  folder = os.path.dirname(os.path.abspath(source))
  for row in rows:
    if not row.get("path") or not isinstance(row["path"], str):
      continue
    path = row["path"] if os.path.isabs(row["path"]) else os.path.join(folder, row["path"])
    found.pairs.append((path, str(row.get("text") or "")))
  return found
