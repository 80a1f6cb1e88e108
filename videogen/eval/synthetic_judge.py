"""Judging generated videos of the synthetic world from pixels alone.

`judge(videos, prompts)` scores prompts of the benchmark grammar (`synthetic.parse_prompt`, e.g.
"a blue square moving quickly left bouncing three times and a red circle moving up") on six
properties, each over the prompts that state it:

  colour     each named colour shows as an object: a compact blob of pixels nearest to it in the
             palette (within `TOLERANCE`), in at least half the frames
  shape      the world's shape that overlaps the blob best (intersection over union, median
             over frames) when placed at the blob's centroid and scaled to its spread (standard
             deviation per axis); the blob is its largest connected piece, holes filled
  direction  the first leg of the blob's motion along its main axis (the net displacement when
             it does not bounce)
  speed      the median per-frame displacement along that axis, in frame sizes, against the
             geometric mean between the `synthetic.SPEEDS` classes
  count      the number of palette colours that show as an object equals the number of clauses
  bounces    reversals of the motion along that axis; one counts once the blob has come back
             `MIN_REVERSAL` of the frame from its farthest point (smaller jitter is ignored)

Frames where a blob is missing, or much smaller than usual (another object covers it), are
skipped for motion and shape. It is exact on the generator's own clips and marks a clip with one
property changed as wrong (tests/test_synthetic_judge.py). `colour_track`, `observed_direction`
and `synthetic_prompts` are the earlier single-object helpers.
"""
import itertools

import numpy as np
from scipy import ndimage

from videogen.data.synthetic import (COLOURS, DIRECTIONS, SHAPES, SPEEDS, parse_prompt,
                                     shape_distance)

PROPERTIES = ("colour", "shape", "direction", "speed", "count", "bounces")
TOLERANCE = 60.0     # RGB distance to a palette colour
MIN_AREA = 0.005     # smallest object, fraction of the frame
MAX_SPREAD = 0.15    # std of a blob's pixel coordinates, fraction of the frame
MIN_REVERSAL = 0.04  # motion back from the farthest point that counts as a bounce, frame sizes
SPEED_SPLIT = float(np.sqrt(SPEEDS["slowly"][1] * SPEEDS["quickly"][0]))  # frame sizes / frame
_PALETTE = np.array(list(COLOURS.values()), np.float32)  # (K, 3)


def _unit_spread(shape: str) -> np.ndarray:
  """Standard deviation (rows, columns) of a shape of radius 1."""
  dy, dx = np.meshgrid(*[np.linspace(-1.5, 1.5, 301)] * 2, indexing="ij")
  inside = shape_distance(shape, dy, dx) <= 0
  return np.array([dy[inside].std(), dx[inside].std()])


_UNIT_SPREAD = {shape: _unit_spread(shape) for shape in SHAPES}


def blob_moments(mask_thw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per frame of a pixel mask: its pixel count `(T,)`, centroid `(T, 2)` (row, col) and the
  standard deviation of its coordinates `(T, 2)`, in pixels; NaN in empty frames."""
  rows, cols = np.indices(mask_thw.shape[1:])
  area = mask_thw.sum((1, 2))
  with np.errstate(invalid="ignore", divide="ignore"):
    centre = np.stack([(mask_thw * rows).sum((1, 2)), (mask_thw * cols).sum((1, 2))], -1)
    centre = centre / area[:, None]
    spread = np.sqrt(np.stack(
        [(mask_thw * (rows - centre[:, 0, None, None]) ** 2).sum((1, 2)),
         (mask_thw * (cols - centre[:, 1, None, None]) ** 2).sum((1, 2))], -1) / area[:, None])
  return area, centre, spread


def colour_track(video_thwc: np.ndarray, colour: str, tolerance: float = 60.0,
                 min_pixels: int = 3, max_spread: float = 0.15) -> np.ndarray:
  """Per-frame centroid `(T, 2)` (row, col) of pixels near `colour`; NaN where absent.

  A frame counts as showing the object only if such pixels form one compact blob: their
  spread (std of coordinates) is under `max_spread` of the frame. Scattered noise is not."""
  target = np.array(COLOURS[colour], np.float32)
  mask = np.linalg.norm(video_thwc.astype(np.float32) - target, axis=-1) < tolerance
  counts, centroid, spread = blob_moments(mask)
  spread = spread / np.array(mask.shape[1:])
  centroid[(counts < min_pixels) | ~(spread.max(-1) < max_spread)] = np.nan
  return centroid


def observed_direction(video_thwc: np.ndarray, colour: str, min_shift: float = 0.1) -> str:
  """"left"/"right"/"up"/"down", "static", or "absent" for the object of `colour`.

  `min_shift` is the net displacement, as a fraction of the frame, that counts as moving."""
  track = colour_track(video_thwc, colour)
  present = ~np.isnan(track[:, 0])
  if present.sum() < max(2, len(track) // 2):
    return "absent"
  first, last = track[present][0], track[present][-1]
  shift = (last - first) / np.array(video_thwc.shape[1:3], np.float32)
  if np.abs(shift).max() < min_shift:
    return "static"
  axis = int(np.argmax(np.abs(shift)))
  step = [0.0, 0.0]
  step[axis] = float(np.sign(shift[axis]))
  return next(name for name, d in DIRECTIONS.items() if list(d) == step)


def palette_labels(video_thwc: np.ndarray) -> np.ndarray:
  """`(T, H, W)` index into `COLOURS` of each pixel's nearest palette colour; -1 where none is
  within `TOLERANCE`."""
  red, green, blue = video_thwc.reshape(-1, 3).T.astype(np.float32, order="C")
  nearest = np.full(red.shape, TOLERANCE ** 2, np.float32)
  labels = np.full(red.shape, -1, np.int8)
  for k, (r, g, b) in enumerate(_PALETTE):
    distance2 = (red - r) ** 2 + (green - g) ** 2 + (blue - b) ** 2
    closer = distance2 < nearest
    nearest[closer], labels[closer] = distance2[closer], k
  return labels.reshape(video_thwc.shape[:3])


def _legs(track: np.ndarray) -> tuple[int, int]:
  """Sign of the first leg of a 1-D track (0: it never moves `MIN_REVERSAL`) and the number
  of reversals after it."""
  heading = first = turns = 0
  low = high = far = track[0]
  for x in track[1:]:
    if heading == 0:
      low, high = min(low, x), max(high, x)
      heading = first = 1 if x - low >= MIN_REVERSAL else -1 if high - x >= MIN_REVERSAL else 0
      far = x
    elif (x - far) * heading > 0:
      far = x
    elif (far - x) * heading >= MIN_REVERSAL:
      heading, far, turns = -heading, x, turns + 1
  return first, turns


def shape_fits(mask_hw: np.ndarray) -> np.ndarray:
  """Intersection over union of a blob with each of `SHAPES` placed at its centroid and scaled
  to its spread. The blob is the mask's largest connected piece, holes filled."""
  pieces, _ = ndimage.label(mask_hw)
  largest = np.bincount(pieces.ravel())[1:].argmax()
  rows, cols = ndimage.find_objects(pieces)[largest]
  pad = max(rows.stop - rows.start, cols.stop - cols.start) // 2 + 2  # room for the templates
  window = (slice(max(rows.start - pad, 0), rows.stop + pad),
            slice(max(cols.start - pad, 0), cols.stop + pad))
  blob = ndimage.binary_fill_holes(pieces[window] == largest + 1)
  points = np.argwhere(blob)  # (P, 2) rows, columns
  centre, spread = points.mean(0), np.maximum(points.std(0), 0.5)
  offset = (np.indices(blob.shape).transpose(1, 2, 0) - centre) / spread  # (H, W, 2)
  fits = []
  for shape in SHAPES:
    unit = offset * _UNIT_SPREAD[shape]
    template = shape_distance(shape, unit[..., 0], unit[..., 1]) <= 0
    fits.append((blob & template).sum() / (blob | template).sum())
  return np.array(fits)


def observe(mask_thw: np.ndarray) -> dict | None:
  """What one colour's pixel mask shows: None unless a compact blob in at least half the frames;
  else its shape (and how well it fits), direction, speed (frame sizes per frame), speed class,
  bounces and the frames it shows in."""
  t, h, w = mask_thw.shape
  area = mask_thw.sum((1, 2))
  if (area >= max(3, MIN_AREA * h * w)).sum() * 2 < t:
    return None
  _, centre, spread = blob_moments(mask_thw)
  present = (area >= max(3, MIN_AREA * h * w)) & (spread / [h, w] < MAX_SPREAD).all(-1)
  if present.sum() * 2 < t:
    return None
  # Frames where the blob is whole: not partly covered by another object.
  whole = np.flatnonzero(present & (area >= 0.75 * np.percentile(area[present], 90)))
  track = centre[whole] / [h, w]  # frame sizes
  axis = int(np.argmax(np.ptp(track, 0)))
  first, bounces = _legs(track[:, axis])
  speed = float(np.median(np.abs(np.diff(track[:, axis])) / np.diff(whole))) if len(whole) > 1 \
      else 0.0
  step = [0.0, 0.0]
  step[axis] = float(first)
  fits = np.median([shape_fits(mask_thw[i]) for i in whole[::max(1, len(whole) // 8)]], 0)
  return {"frames": int(present.sum()),
          "shape": SHAPES[int(fits.argmax())],
          "shape_fit": round(float(fits.max()), 3),
          "direction": next((name for name, d in DIRECTIONS.items() if list(d) == step), "static"),
          "speed": round(speed, 4),
          "speed_class": "slowly" if speed < SPEED_SPLIT else "quickly",
          "bounces": bounces}


def observe_video(video_thwc: np.ndarray, labels: np.ndarray | None = None) -> dict[str, dict]:
  """`observe` for every palette colour that shows as an object, by colour name (`labels`:
  the video's `palette_labels`, when already computed)."""
  labels = palette_labels(video_thwc) if labels is None else labels
  seen = {}
  for k, colour in enumerate(COLOURS):
    found = observe(labels == k)
    if found:
      seen[colour] = found
  return seen


def judge(videos_nthwc: np.ndarray, prompts: list[str]) -> dict:
  """Scores videos `(N, T, H, W, 3)` uint8 against their prompts.

  Returns per property of `PROPERTIES` the fraction of the prompts stating it where it holds for
  every object (None when no prompt states it); `overall`, the fraction of videos where every
  stated property holds; `stated`, how many prompts state each property; and `per_video`, a
  list of {prompt, ok, checks: {property: bool}, seen: {colour: observation}}."""
  if len(videos_nthwc) != len(prompts):
    raise ValueError(f"{len(videos_nthwc)} videos for {len(prompts)} prompts")
  per_video = []
  for video, prompt in zip(videos_nthwc, prompts):
    wanted, seen = parse_prompt(prompt), observe_video(video)
    if len({o["colour"] for o in wanted}) < len(wanted):
      raise ValueError(f"prompt {prompt!r} names a colour twice; the judge tells objects apart "
                       "by colour, so give each its own")
    found = lambda o, key: seen.get(o["colour"], {}).get(key)  # noqa: E731
    checks = {"colour": all(o["colour"] in seen for o in wanted),
              "shape": all(found(o, "shape") == o["shape"] for o in wanted),
              "direction": all(found(o, "direction") == o["direction"] for o in wanted),
              "count": len(seen) == len(wanted)}
    if any(o["speed"] for o in wanted):
      checks["speed"] = all(found(o, "speed_class") == o["speed"] for o in wanted if o["speed"])
    if any(o["bounces"] is not None for o in wanted):
      checks["bounces"] = all(found(o, "bounces") == o["bounces"] for o in wanted
                              if o["bounces"] is not None)
    per_video.append({"prompt": prompt, "ok": all(checks.values()), "checks": checks,
                      "seen": seen})
  report = {}
  for name in PROPERTIES:
    results = [v["checks"][name] for v in per_video if name in v["checks"]]
    report[name] = sum(results) / len(results) if results else None
  report["overall"] = sum(v["ok"] for v in per_video) / max(len(per_video), 1)
  report["stated"] = {name: sum(name in v["checks"] for v in per_video) for name in PROPERTIES}
  report["per_video"] = per_video
  return report


def synthetic_prompts(synthetic_config, n: int) -> list[str]:
  """`n` distinct plain-template prompts, cycling directions so each gets an equal share."""
  combos = list(itertools.product(synthetic_config.colours, synthetic_config.shapes))
  directions = list(synthetic_config.directions)
  return [f"a {combos[(i * 7) % len(combos)][0]} {combos[(i * 7) % len(combos)][1]} moving "
          f"{directions[i % len(directions)]}" for i in range(n)]
