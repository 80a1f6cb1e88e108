"""Judging videos of coloured shapes from pixels alone: the synthetic benchmark's judge.

`judge(videos, prompts)` scores prompts of the benchmark grammar (`synthetic_grammar`, e.g.
"a blue square moving quickly left bouncing three times and a red circle moving up") on six
properties, each over the prompts that state it. It knows nothing of the renderer (palette,
object size, clip length, background): it names colours by classes of hue, chroma and value,
and shapes by rotation- and scale-invariant moments, so it judges any model's clips, or a
recording, through a video codec.

Colour classes (`colour_labels`), on a pixel's hue (degrees), chroma = max(r, g, b) − min(r, g, b)
and value = max(r, g, b) (r, g, b in [0, 1]):

  a colour   chroma ≥ `MIN_CHROMA` (0.25) and value ≥ `MIN_VALUE` (0.3), named by hue (`HUES`):
             red [330°, 16°), orange [16°, 43°), yellow [43°, 72°), green [72°, 160°),
             cyan [160°, 200°), blue [200°, 258°), purple [258°, 330°)
  white      chroma < 0.25 and value ≥ `WHITE_VALUE` (0.7)
  none       the rest: greys, black, dark pixels

Shading (a darker or lighter shade keeps its hue), chroma subsampling and compression (which
blur chroma across an edge but keep its hue) change a pixel's class only at the edges; so dark
orange (brown) is orange, pink is red or purple, and light grey is white.

The properties:

  colour     each named colour shows as an object: in at least a third of the frames (two at
             least) the largest 8-connected piece of its pixels (holes filled) is object-like:
             `MIN_PIXELS` (8) pixels and `MIN_AREA` (0.1%) of the frame at least, `MAX_AREA`
             (40%) at most, not a thin sliver (`MIN_ROUNDNESS`: the ratio of the standard
             deviations of its pixel coordinates along its two principal axes) and filling
             `MIN_SOLIDITY` (70%) of its convex hull (noise is stringy); a piece touching
             another colour's piece `SPLIT_AREA` (2) times its size is part of that object
             (a highlight, a shade across a hue boundary, a codec's hue error)
  shape      rotation- and scale-invariant moments of the blob's soft mask (its interior, plus
             the partial coverage of its edge pixels measured against the colours inside and
             around it): τ3 = |Σ w z³| / Σ w |z|³ is 0.65 for a triangle and 0 for a square or
             a circle; τ4 = |Σ w z⁴| / Σ w |z|⁴ is 0.42 for a square and 0 for a triangle or a
             circle (z: position from the centroid as a complex number); median over up to 8
             frames where the blob is whole and clear of the frame's edge; a triangle (any
             rotation) where τ3 / 0.65 ≥ `SHAPE_SPLIT` and beats τ4 / 0.42, a square where τ4
             / 0.42 does, else a circle
  direction  the first leg of the blob's motion along its main axis (the net displacement when
             it does not bounce)
  speed      the median per-frame displacement along that axis, in frame sizes, against the
             geometric mean between the `synthetic_grammar.SPEEDS` classes
  count      the number of colours that show as an object equals the number of clauses
  bounces    reversals of the motion along that axis; one counts once the blob has come back
             `MIN_REVERSAL` of the frame from its farthest point (smaller jitter is ignored)

A blob is whole where it has at least 3/4 of its usual area (its 90th percentile, less
1.5 √ of it for pixel noise). Motion skips the frames where another object covers the blob (not
whole, clear of the frame's edge); speed and shape also skip those where the frame's edge (2 px)
cuts it; with fewer than two frames left, all the frames it shows in count. So objects may enter
or leave the frame; any clip of 4 frames or more works. The judge is
exact on the generator's own clips and marks a clip with one property changed as wrong
(tests/test_synthetic_judge.py); on 144 clips of a different renderer (PIL, anti-aliased,
shaded, 6 px to half the frame, textured noisy background) through H.264 yuv420p at CRF 12 and
26, it is right on ≥ 97% of true captions and ≤ 3% of one-property-wrong ones per property
(tests/test_judge_foreign_clips.py; the misses are 6-9 px blue triangles, whose shape lives in
subsampled chroma). `calibration` counts, per property, what it saw against
what a clip is known to show; `synthetic_prompts` draws prompts from the synthetic grammar.
"""
import itertools
import math

import numpy as np
from scipy import ndimage, spatial

from videogen.data.synthetic_grammar import COLOURS, DIRECTIONS, SHAPES, SPEEDS, parse_prompt

PROPERTIES = ("colour", "shape", "direction", "speed", "count", "bounces")
HUES = {"red": (330, 16), "orange": (16, 43), "yellow": (43, 72), "green": (72, 160),
        "cyan": (160, 200), "blue": (200, 258), "purple": (258, 330)}  # [from, to) degrees
MIN_CHROMA = 0.25     # max − min of (r, g, b) in [0, 1]: less is a grey (or white)
MIN_VALUE = 0.3       # max of (r, g, b): darker pixels have no colour
WHITE_VALUE = 0.7     # a grey at least this bright is white
MIN_PIXELS = 8        # smallest object, pixels (a 6 px triangle has about 15)
MIN_AREA = 0.001      # smallest object, fraction of the frame
MAX_AREA = 0.4        # largest object, fraction of the frame (more is background)
MIN_ROUNDNESS = 0.35  # principal standard deviations' ratio below which a piece is a sliver
MIN_SOLIDITY = 0.7    # share of its convex hull a piece fills, at least (noise is stringy)
SPLIT_AREA = 2.0      # a blob touching another colour's this many times larger is part of it
MIN_FRAMES = 1 / 3    # share of the frames an object shows in (two at least)
MIN_REVERSAL = 0.04   # motion back from the farthest point that counts as a bounce, frame sizes
SPEED_SPLIT = float(np.sqrt(SPEEDS["slowly"][1] * SPEEDS["quickly"][0]))  # frame sizes / frame
TRIANGLE_TAU3, SQUARE_TAU4 = 0.65, 0.42  # the moments of the ideal shapes
SHAPE_SPLIT = 0.45    # share of the ideal moment above which a blob is a triangle or a square
CHROMA_WEIGHT = 0.3   # chroma's weight against luma when measuring a blob's edge coverage
_INDEX = {name: k for k, name in enumerate(COLOURS)}
_EIGHT = np.ones((3, 3), bool)
_YCBCR = np.array([[0.299, -0.169 * CHROMA_WEIGHT, 0.5 * CHROMA_WEIGHT],  # RGB → weighed YCbCr
                   [0.587, -0.331 * CHROMA_WEIGHT, -0.419 * CHROMA_WEIGHT],
                   [0.114, 0.5 * CHROMA_WEIGHT, -0.081 * CHROMA_WEIGHT]], np.float32)
_CORNERS = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])


def colour_labels(video_thwc: np.ndarray) -> np.ndarray:
  """`(T, H, W)` index into `COLOURS` of each pixel's colour class (see the module docstring);
  -1 for none."""
  rgb = np.asarray(video_thwc).astype(np.float32) / 255
  value = rgb.max(-1)
  chroma = value - rgb.min(-1)
  labels = np.full(value.shape, -1, np.int8)
  labels[(chroma < MIN_CHROMA) & (value >= WHITE_VALUE)] = _INDEX["white"]
  coloured = (chroma >= MIN_CHROMA) & (value >= MIN_VALUE)
  r, g, b = rgb[coloured].T
  top, spread = value[coloured], chroma[coloured]
  hue = 60 * np.where(top == r, np.mod((g - b) / spread, 6),
                      np.where(top == g, (b - r) / spread + 2, (r - g) / spread + 4))
  names = np.full(hue.shape, -1, np.int8)
  for name, (start, stop) in HUES.items():
    names[(hue >= start) & (hue < stop) if start < stop else (hue >= start) | (hue < stop)] = \
        _INDEX[name]
  labels[coloured] = names
  return labels


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


def blobs(mask_thw: np.ndarray) -> np.ndarray:
  """Per frame, the mask's largest 8-connected piece with its holes filled where that piece is
  object-like (`MIN_PIXELS`, `MIN_AREA`, `MAX_AREA`, `MIN_ROUNDNESS`, `MIN_SOLIDITY`); empty
  elsewhere."""
  t, h, w = mask_thw.shape
  smallest, largest = max(MIN_PIXELS, MIN_AREA * h * w), MAX_AREA * h * w
  out = np.zeros(mask_thw.shape, bool)
  for i in np.flatnonzero(mask_thw.sum((1, 2)) >= smallest):
    pieces, _ = ndimage.label(mask_thw[i], _EIGHT)
    biggest = np.bincount(pieces.ravel())[1:].argmax() + 1
    piece = ndimage.find_objects(pieces)[biggest - 1]
    blob = ndimage.binary_fill_holes(pieces[piece] == biggest)
    if not smallest <= blob.sum() <= largest:
      continue
    points = np.argwhere(blob).astype(np.float64)
    low, high = np.linalg.eigvalsh(np.cov(points.T) + 1e-9 * np.eye(2))
    solid = (blob.sum() >= MIN_SOLIDITY * blob.size  # its bounding box: no hull needed
             or blob.sum() >= MIN_SOLIDITY * _hull_area(blob))
    if low >= MIN_ROUNDNESS ** 2 * high and solid:
      out[i][piece] = blob
  return out


def _hull_area(blob_hw: np.ndarray) -> float:
  """Area of the convex hull of a mask's pixels (as unit squares)."""
  rim = np.argwhere(blob_hw & ~ndimage.binary_erosion(blob_hw)).astype(np.float64)
  corners = (rim[:, None] + _CORNERS).reshape(-1, 2)
  return float(spatial.ConvexHull(corners).volume)


def shape_moments(frame_hwc: np.ndarray, blob_hw: np.ndarray) -> tuple[float, float]:
  """(τ3, τ4) of a blob (see the module docstring). Its soft mask is 1 inside, and on its edge
  (its outer pixels and one pixel out) each pixel's coverage: its colour projected onto the
  line from the background around the blob (2-3 pixels out, median) to the blob's own (median
  inside), in YCbCr with chroma weighed `CHROMA_WEIGHT` (codecs subsample and blur chroma)."""
  rows, cols = np.nonzero(blob_hw)
  h, w = blob_hw.shape
  window = (slice(max(rows.min() - 6, 0), min(rows.max() + 7, h)),
            slice(max(cols.min() - 6, 0), min(cols.max() + 7, w)))
  blob = blob_hw[window]
  pixels = frame_hwc[window].astype(np.float32) @ _YCBCR  # (h, w, 3)
  inner = ndimage.binary_erosion(blob)
  near = ndimage.binary_dilation(blob)
  ring = ndimage.binary_dilation(blob, iterations=3) & ~near
  own = np.median(pixels[inner if inner.sum() >= 3 else blob], 0)
  around = np.median(pixels[ring], 0) if ring.any() else np.zeros(3, np.float32)
  line = own - around
  cover = np.clip((pixels - around) @ line / max(float(line @ line), 1e-6), 0, 1)
  weight = np.where(inner, 1.0, np.where(near, cover, 0.0))
  ys, xs = np.indices(weight.shape)
  total = weight.sum()
  z = (xs - (weight * xs).sum() / total) + 1j * (ys - (weight * ys).sum() / total)
  size = np.abs(z)
  return (float(np.abs((weight * z ** 3).sum()) / max((weight * size ** 3).sum(), 1e-9)),
          float(np.abs((weight * z ** 4).sum()) / max((weight * size ** 4).sum(), 1e-9)))


def classify_shape(tau3: float, tau4: float) -> str:
  """The shape whose moments (`shape_moments`) a blob's are."""
  triangle, square = tau3 / TRIANGLE_TAU3, tau4 / SQUARE_TAU4
  if max(triangle, square) < SHAPE_SPLIT:
    return "circle"
  return "triangle" if triangle >= square else "square"


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


def observe(blob_thw: np.ndarray, video_thwc: np.ndarray) -> dict | None:
  """What one colour's `blobs` show: None unless an object in at least `MIN_FRAMES` of the
  frames (two at least); else its shape (and moments), direction, speed (frame sizes per
  frame), speed class, bounces, the frames it shows in and its track (centre along the motion
  axis per frame read)."""
  t, h, w = blob_thw.shape
  area = blob_thw.sum((1, 2))
  present = area > 0
  if present.sum() < max(2, math.ceil(MIN_FRAMES * t)):
    return None
  _, centre, _ = blob_moments(blob_thw)
  usual = np.percentile(area[present], 90)
  whole = present & (area >= 0.75 * usual - 1.5 * np.sqrt(usual))  # less: partly covered
  # The frame's edge cuts the blob (or its blurred rim: two pixels).
  cut = blob_thw[:, [0, 1, -2, -1]].any((1, 2)) | blob_thw[:, :, [0, 1, -2, -1]].any((1, 2))
  # Motion skips frames where another object covers the blob (smaller, off the frame's edge);
  # speed and shape also skip those where the frame's edge cuts it.
  moving = np.flatnonzero(whole | (present & cut))
  moving = moving if len(moving) >= 2 else np.flatnonzero(present)
  track = centre[moving] / [h, w]  # frame sizes
  axis = int(np.argmax(np.ptp(track, 0)))
  first, bounces = _legs(track[:, axis])
  timed = np.flatnonzero(whole & ~cut)
  timed = timed if len(timed) >= 2 else moving
  speed = float(np.median(np.abs(np.diff(centre[timed, axis] / [h, w][axis])) / np.diff(timed)))
  step = [0.0, 0.0]
  step[axis] = float(first)
  shaped = next(f for f in (np.flatnonzero(whole & ~cut), np.flatnonzero(whole), moving)
                if len(f))
  sample = shaped[np.unique(np.linspace(0, len(shaped) - 1, min(8, len(shaped))).round()
                            .astype(int))]

  tau3, tau4 = np.median([shape_moments(video_thwc[i], blob_thw[i]) for i in sample], 0)
  return {"frames": int(present.sum()),
          "shape": classify_shape(tau3, tau4),
          "shape_moments": [round(float(tau3), 3), round(float(tau4), 3)],
          "direction": next((name for name, d in DIRECTIONS.items() if list(d) == step), "static"),
          "speed": round(speed, 4),
          "speed_class": "slowly" if speed < SPEED_SPLIT else "quickly",
          "bounces": bounces,
          # Centre along the motion axis (frame sizes) in the frames the motion was read from:
          # where a sample's object jumps, and so turns, is read off here.
          "track": {int(f): round(float(x), 3) for f, x in zip(moving, track[:, axis])}}


def observe_video(video_thwc: np.ndarray, labels: np.ndarray | None = None) -> dict[str, dict]:
  """`observe` for every colour that shows as an object, by colour name (`labels`: the video's
  `colour_labels`, when already computed). In a frame, a colour's blob that touches another
  colour's at least `SPLIT_AREA` times its size is part of that object (a highlight, a shade
  across a hue boundary, a codec's hue error), not an object of its own."""
  video_thwc = np.asarray(video_thwc)
  labels = colour_labels(video_thwc) if labels is None else labels
  found = {colour: blobs(labels == k) for k, colour in enumerate(COLOURS)
           if (labels == k).sum() >= 2 * MIN_PIXELS}
  area = {colour: b.sum((1, 2)) for colour, b in found.items()}
  for i in range(len(labels)):
    here = [c for c in found if area[c][i]]
    for colour in here:
      grown = ndimage.binary_dilation(found[colour][i], _EIGHT)
      if any(area[other][i] >= SPLIT_AREA * area[colour][i] and (grown & found[other][i]).any()
             for other in here if other != colour):
        found[colour][i] = False  # `area` keeps this frame's sizes for the other colours
  seen = {}
  for colour, blob in found.items():
    observed = observe(blob, video_thwc)
    if observed:
      seen[colour] = observed
  return seen


def judge(videos_nthwc, prompts: list[str]) -> dict:
  """Scores videos `(N, T, H, W, 3)` uint8 (or a list of `(T, H, W, 3)`) against their prompts.

  Returns per property of `PROPERTIES` the fraction of the prompts stating it where it holds for
  every object (None when no prompt states it); `overall`, the fraction of videos where every
  stated property holds; `stated`, how many prompts state each property; `by_objects`, the
  same figures per number of objects a prompt names ({"1": {...}, "2": ...}); and
  `per_video`, a list of {prompt, ok, checks: {property: bool}, seen: {colour: observation},
  objects: number named}."""
  if len(videos_nthwc) != len(prompts):
    raise ValueError(f"{len(videos_nthwc)} videos for {len(prompts)} prompts")
  for prompt in prompts:
    _objects(prompt)
  return judge_observed([observe_video(video) for video in videos_nthwc], prompts)


def _objects(prompt: str) -> list[dict]:
  wanted = parse_prompt(prompt)
  if len({o["colour"] for o in wanted}) < len(wanted):
    raise ValueError(f"prompt {prompt!r} names a colour twice; the judge tells objects apart "
                     "by colour, so give each its own")
  return wanted


def judge_observed(seen_per_video: list[dict], prompts: list[str]) -> dict:
  """`judge` from each video's `observe_video`: one clip judged against many prompts is
  observed once."""
  if len(seen_per_video) != len(prompts):
    raise ValueError(f"{len(seen_per_video)} videos for {len(prompts)} prompts")
  per_video = []
  for seen, prompt in zip(seen_per_video, prompts):
    wanted = _objects(prompt)
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
                      "seen": seen, "objects": len(wanted)})
  counts = sorted({v["objects"] for v in per_video})
  return {**scores(per_video),
          "by_objects": {str(n): scores([v for v in per_video if v["objects"] == n])
                         for n in counts},
          "per_video": per_video}


def scores(per_video: list[dict]) -> dict:
  """Per property, the fraction of videos stating it where it holds (None: none states it);
  `overall`, the fraction where all hold; `stated`, how many state each."""
  report = {}
  for name in PROPERTIES:
    results = [v["checks"][name] for v in per_video if name in v["checks"]]
    report[name] = sum(results) / len(results) if results else None
  report["overall"] = sum(v["ok"] for v in per_video) / max(len(per_video), 1)
  report["stated"] = {name: sum(name in v["checks"] for v in per_video) for name in PROPERTIES}
  return report


def calibration(seen_per_video: list[dict], expected: list[str | None]) -> dict:
  """How the judge's observations (`observe_video` per video) compare with what each clip is
  known to show (`expected`: a caption of the grammar per video, None or "" where unknown).

  Returns per property {expected label: {observed label: count}} ("none": not seen; each
  object of an expected caption counts once; its colour is matched to a seen colour of the
  same name, else to the longest-seen colour the caption does not name), plus `right` and
  `total` per property, `accuracy` (right / total) and `videos` (how many were labelled)."""
  confusion = {name: {} for name in PROPERTIES}

  def add(name, want, got):
    row = confusion[name].setdefault(str(want), {})
    row[str(got)] = row.get(str(got), 0) + 1

  labelled = 0
  for seen, caption in zip(seen_per_video, expected):
    if not caption:
      continue
    labelled += 1
    wanted = _objects(caption)
    spare = sorted((c for c in seen if c not in {o["colour"] for o in wanted}),
                   key=lambda c: -seen[c]["frames"])
    add("count", len(wanted), len(seen))
    for o in wanted:
      colour = o["colour"] if o["colour"] in seen else spare.pop(0) if spare else "none"
      got = seen.get(colour, {})
      add("colour", o["colour"], colour)
      add("shape", o["shape"], got.get("shape", "none"))
      add("direction", o["direction"], got.get("direction", "none"))
      if o["speed"]:
        add("speed", o["speed"], got.get("speed_class", "none"))
      if o["bounces"] is not None:
        add("bounces", o["bounces"], got.get("bounces", "none"))
  right = {n: sum(row.get(want, 0) for want, row in confusion[n].items()) for n in PROPERTIES}
  total = {n: sum(sum(row.values()) for row in confusion[n].values()) for n in PROPERTIES}
  return {"videos": labelled, "confusion": confusion, "right": right, "total": total,
          "accuracy": {n: right[n] / total[n] if total[n] else None for n in PROPERTIES}}


def calibration_table(report: dict) -> str:
  """`calibration`'s confusion counts as text: per property, one row per expected label, one
  column per observed label."""
  lines = [f"judge calibration on {report['videos']} labelled videos (rows: expected, "
           "columns: seen)"]
  for name in PROPERTIES:
    rows = report["confusion"][name]
    if not rows:
      continue
    seen = sorted({got for row in rows.values() for got in row}, key=_label_order)
    width = max(8, *map(len, seen), *map(len, rows))
    lines.append(f"{name}: {report['right'][name]}/{report['total'][name]} right")
    lines.append(" " * width + "".join(f" {label:>{width}}" for label in seen))
    for want in sorted(rows, key=_label_order):
      lines.append(f"{want:>{width}}" + "".join(f" {rows[want].get(got, 0):>{width}}"
                                                 for got in seen))
  return "\n".join(lines)


def _label_order(label: str):
  order = [*COLOURS, *SHAPES, *DIRECTIONS, "static", *SPEEDS]
  return (0, order.index(label), "") if label in order else \
      (1, int(label), "") if label.isdigit() else (2, 0, label)


def synthetic_prompts(synthetic_config, n: int) -> list[str]:
  """`n` distinct plain-template prompts, cycling directions so each gets an equal share."""
  combos = list(itertools.product(synthetic_config.colours, synthetic_config.shapes))
  directions = list(synthetic_config.directions)
  return [f"a {combos[(i * 7) % len(combos)][0]} {combos[(i * 7) % len(combos)][1]} moving "
          f"{directions[i % len(directions)]}" for i in range(n)]
