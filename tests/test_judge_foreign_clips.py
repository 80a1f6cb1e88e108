"""The judge on clips it did not render: a second, deliberately different renderer (PIL
`ImageDraw`, 4× supersampled anti-aliasing, shades of each colour lit by a gradient, objects 6 px
to half the frame across, rotated triangles and tilted squares, a textured noisy background,
4–16 frames, objects that bounce, enter or leave the frame, one or two objects), encoded with
libx264 yuv420p at CRF 12 and CRF 26, written to disk and read back with `video_io.read_video`.

Corpus: `NUM_CLIPS` = 144 clips (48 with two objects; 96 state a speed, 48 a bounce count) at
each of the two CRFs, each judged against its true caption and, per property it states, a
caption with exactly that property wrong. At each CRF every property is right on ≥ 97% of the
true captions and on ≤ 3% of the one-wrong captions. Also issue 17's own clips (numpy, hard
edges) through the CLI, with the calibration report. No model, no download: numpy, PIL, PyAV.
"""
import colorsys
import dataclasses
import functools
import json

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from videogen import video_io
from videogen.data import synthetic_grammar
from videogen.eval import synthetic_judge

NUM_CLIPS = 144
SEED = 17
CRFS = (12, 26)  # near-lossless; compressed harder than x264's default (23)
FRAME_SIZES = ((48, 64), (64, 64), (64, 80))  # (H, W)
SUPERSAMPLE = 4
# Conventional hues of the colour words (degrees); a clip draws a shade within ±8° of one.
HUES = {"red": 0, "orange": 30, "yellow": 56, "green": 120, "cyan": 182, "blue": 228,
        "purple": 283}
COLOURS = tuple(synthetic_grammar.COLOURS)
DIRECTIONS = {"left": (1, -1), "right": (1, 1), "up": (0, -1), "down": (0, 1)}  # axis, sign
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
KINDS = ("inside", "bounce", "enter", "leave")


@dataclasses.dataclass
class ForeignClip:
  video: np.ndarray    # (T, H, W, 3) uint8
  objects: list[dict]  # colour, shape, direction, speed (word or None), bounces (int or None)
  kind: str
  sizes: list[float]   # pixels across


def _shade(colour: str, rng) -> np.ndarray:
  """An RGB shade (0–255) of a colour word: a hue within ±8° of its own, saturation 0.65–1,
  value 0.6–1; white: saturation under 0.08 (any hue), value 0.85–1."""
  if colour == "white":
    hue, saturation, value = rng.uniform(0, 1), rng.uniform(0, 0.08), rng.uniform(0.85, 1)
  else:
    hue = (HUES[colour] + rng.uniform(-8, 8)) / 360 % 1
    saturation, value = rng.uniform(0.65, 1), rng.uniform(0.6, 1)
  return np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255


def _background(h: int, w: int, rng) -> np.ndarray:
  """A static texture: smooth blotches of dark grey (values about 10–90) with a faint tint."""
  coarse = rng.normal(0, 1, (4, h // 8 + 2, w // 8 + 2)).astype(np.float32)
  smooth = np.stack([np.asarray(Image.fromarray(c).resize((w, h), Image.BICUBIC)) for c in coarse],
                    -1)
  grey = rng.uniform(25, 60) + 15 * smooth[..., :1]
  return np.clip(grey + 5 * smooth[..., 1:], 0, 255)


def _coverage(shape: str, centre, size: float, angle: float, h: int, w: int) -> np.ndarray:
  """Anti-aliased coverage `(H, W)` in [0, 1] of a shape `size` pixels across (circle:
  diameter; square: side 0.9 × size; triangle: side), drawn 4× larger and box-filtered down."""
  s = SUPERSAMPLE
  canvas = Image.new("L", (w * s, h * s), 0)
  draw = ImageDraw.Draw(canvas)
  cy, cx = (centre[0] + 0.5) * s, (centre[1] + 0.5) * s
  if shape == "circle":
    r = size / 2 * s
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
  else:
    corners = 4 if shape == "square" else 3
    r = (0.9 * size / np.sqrt(2) if shape == "square" else size / np.sqrt(3)) * s
    draw.polygon([(cx + r * np.cos(angle + 2 * np.pi * k / corners),
                   cy + r * np.sin(angle + 2 * np.pi * k / corners)) for k in range(corners)],
                 fill=255)
  return np.asarray(canvas.resize((w, h), Image.BOX), np.float32) / 255


def _forward_path(kind: str, t: int, length: int, extent: float, step: float, rng):
  """Centre per frame along the motion axis (pixels, moving towards larger values) and the
  wall hits, or None when this draw does not fit. inside: never touches a wall; bounce:
  reflects off the walls at least once, every leg at least a tenth of the frame; enter / leave:
  crosses the frame's edge, wholly inside in its first or last frame, the centre inside in at least
  60% of the frames."""
  travel = step * (t - 1)
  if kind == "inside":
    room = length - 2 * extent - 3 - travel
    return None if room < 0 else (extent + 1 + rng.uniform(0, room) + step * np.arange(t), 0)
  if kind == "bounce":
    low, span = extent, length - 1 - 2 * extent
    if span < 0.15 * length:
      return None
    start = rng.uniform(0, span)
    unbounded = start + step * np.arange(t)
    laps = np.floor(unbounded / span)
    within = unbounded - laps * span
    folded = low + np.where(laps % 2 == 0, within, span - within)
    hits = int(laps[-1])
    events = [0.0, *[(k + 1) * span - start for k in range(hits)], travel]
    if hits == 0 or min(np.diff(events)) < 0.1 * length:
      return None
    return folded, hits
  if kind == "enter":
    path = rng.uniform(-extent, 0) + step * np.arange(t)
    if path[-1] > length - 3 - extent:  # wholly inside at the end
      return None
  else:  # leave
    path = length - 1 + rng.uniform(0, extent) - step * np.arange(t)[::-1]
    if path[0] > length - 3 - extent:  # wholly inside at the start
      return None
  inside = ((path >= 0) & (path <= length - 1)).mean()
  return (path, 0) if inside >= 0.6 else None


def _clip(index: int) -> ForeignClip:
  """Clip `index` of the corpus (a pure function of it)."""
  rng = np.random.default_rng([SEED, index])
  h, w = FRAME_SIZES[index % len(FRAME_SIZES)]
  count = 2 if index % 3 == 2 else 1
  kind = "inside" if count == 2 else KINDS[(index // 3) % len(KINDS)]
  colours = [COLOURS[index % len(COLOURS)]]
  colours += list(rng.choice([c for c in COLOURS if c != colours[0]], count - 1, replace=False))
  direction = list(DIRECTIONS)[(index // 2) % 4]
  axis = DIRECTIONS[direction][0]
  length, across = (h, w) if axis == 0 else (w, h)
  largest = min(h, w) / 2 if count == 1 else min(min(h, w) / 2, across / 2 - 4)
  video = None
  for _ in range(500):
    t = 4 if index % 8 == 0 else int(rng.integers(4, 17))
    objects, sizes, drawn = [], [], []
    for k, colour in enumerate(colours):
      shape = synthetic_grammar.SHAPES[(index // 8 + k) % 3]
      size = float(np.exp(rng.uniform(np.log(6), np.log(largest))))
      extent = size / 2
      speed = str(rng.choice(list(synthetic_grammar.SPEEDS)))
      step = rng.uniform(*synthetic_grammar.SPEEDS[speed]) * length
      way = direction if k == 0 else str(rng.choice([d for d in DIRECTIONS
                                                     if DIRECTIONS[d][0] == axis]))
      found = _forward_path(kind, t, length, extent, step, rng)
      if found is None:
        break
      path, hits = found
      if DIRECTIONS[way][1] < 0:
        path = length - 1 - path
      lane = (across / 4 if k == 0 else 3 * across / 4) if count == 2 else \
          rng.uniform(extent + 1, across - 2 - extent)
      centres = np.stack([path, np.full(t, lane)][::1 if axis == 0 else -1], -1)
      angle = rng.uniform(0, 2 * np.pi) if shape == "triangle" else \
          np.deg2rad(45 + rng.uniform(-15, 15))  # a square, tilted up to 15°
      drawn.append((shape, centres, size, angle, _shade(colour, rng),
                    rng.uniform(0, 0.3), rng.uniform(0, 2 * np.pi)))
      objects.append(dict(colour=colour, shape=shape, direction=way,
                          speed=speed if (index + k) % 3 else None,
                          bounces=hits if kind == "bounce" or (kind == "inside" and index % 4 == 1)
                          else None))
      sizes.append(size)
    else:
      video = np.repeat(_background(h, w, rng)[None], t, 0)
      rows, cols = np.indices((h, w))
      for shape, centres, size, angle, colour, gradient, light in drawn:
        for i, centre in enumerate(centres):
          cover = _coverage(shape, centre, size, angle, h, w)[..., None]
          lit = ((rows - centre[0]) * np.sin(light) + (cols - centre[1]) * np.cos(light)) / size
          shaded = colour * (1 - gradient * np.clip(lit, -0.5, 0.5))[..., None]
          video[i] = video[i] * (1 - cover) + cover * shaded
      video = video + rng.normal(0, 4, video.shape)
      break
  assert video is not None, index
  return ForeignClip(np.clip(np.round(video), 0, 255).astype(np.uint8), objects, kind, sizes)


@functools.cache
def corpus() -> tuple[ForeignClip, ...]:
  return tuple(_clip(i) for i in range(NUM_CLIPS))


def encode(path: str, video_thwc: np.ndarray, crf: int) -> None:
  """H.264 (libx264, yuv420p) at a constant rate factor."""
  with av.open(path, mode="w") as container:
    stream = container.add_stream("libx264", rate=8)
    stream.height, stream.width = video_thwc.shape[1:3]
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": str(crf)}
    for frame in video_thwc:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())


def one_wrong(objects: list[dict], prop: str, index: int) -> list[dict] | None:
  """`objects` with exactly `prop` of the first object that states it changed (None where no
  object states it); count: one object more, or one fewer."""
  objects = [dict(o) for o in objects]
  unused = [c for c in COLOURS if c not in {o["colour"] for o in objects}]
  first = objects[0]
  if prop == "colour":
    first["colour"] = unused[index % len(unused)]
  elif prop == "shape":
    shapes = synthetic_grammar.SHAPES
    first["shape"] = shapes[(shapes.index(first["shape"]) + 1 + index % 2) % 3]
  elif prop == "direction":
    first["direction"] = OPPOSITE[first["direction"]]
  elif prop == "count":
    if len(objects) > 1:
      return objects[:-1]
    objects.append(dict(colour=unused[index % len(unused)],
                        shape=synthetic_grammar.SHAPES[index % 3],
                        direction=list(DIRECTIONS)[index % 4], speed=None, bounces=None))
  elif prop == "speed":
    stated = [o for o in objects if o["speed"]]
    if not stated:
      return None
    stated[0]["speed"] = "slowly" if stated[0]["speed"] == "quickly" else "quickly"
  elif prop == "bounces":
    stated = [o for o in objects if o["bounces"] is not None]
    if not stated:
      return None
    stated[0]["bounces"] += 1 if stated[0]["bounces"] == 0 or index % 2 else -1
  return objects


def judged(crf: int, folder) -> tuple[dict, dict]:
  """The corpus through H.264 at `crf` and back: the judge's report on the true captions, and
  per property its report on the one-wrong captions."""
  seen = []
  for i, clip in enumerate(corpus()):
    path = str(folder / f"clip_{i}.mp4")
    encode(path, clip.video, crf)
    video = video_io.read_video(path)
    assert video.shape == clip.video.shape
    seen.append(synthetic_judge.observe_video(video))
  captions = [synthetic_grammar.format_prompt(c.objects) for c in corpus()]
  true = synthetic_judge.judge_observed(seen, captions)
  wrong = {}
  for prop in synthetic_judge.PROPERTIES:
    pairs = [(observed, synthetic_grammar.format_prompt(changed))
             for i, (observed, clip) in enumerate(zip(seen, corpus()))
             if (changed := one_wrong(clip.objects, prop, i)) is not None]
    wrong[prop] = synthetic_judge.judge_observed(*map(list, zip(*pairs)))
  return true, wrong


def test_corpus_covers_what_the_judge_must_handle():
  clips = corpus()
  sizes = [s for c in clips for s in c.sizes]
  frames = [len(c.video) for c in clips]
  assert len(clips) == NUM_CLIPS and min(sizes) < 7 and max(sizes) >= 30
  assert min(frames) == 4 and max(frames) >= 14
  assert {c.kind for c in clips} == set(KINDS)
  objects = [o for c in clips for o in c.objects]
  assert {o["colour"] for o in objects} == set(COLOURS)
  assert {o["shape"] for o in objects} == set(synthetic_grammar.SHAPES)
  assert {o["direction"] for o in objects} == set(DIRECTIONS)
  assert {o["bounces"] for o in objects} >= {0, 1, 2}
  assert sum(len(c.objects) == 2 for c in clips) == NUM_CLIPS // 3


@pytest.mark.parametrize("crf", CRFS)
def test_foreign_clips_through_h264(crf, tmp_path):
  true, wrong = judged(crf, tmp_path)
  failed = [(v["prompt"], v["seen"]) for v in true["per_video"] if not v["ok"]]
  print(f"CRF {crf}: true", {p: (round(true[p], 3), true["stated"][p])
                              for p in synthetic_judge.PROPERTIES},
        "one wrong", {p: (round(wrong[p][p], 3), wrong[p]["stated"][p])
                      for p in synthetic_judge.PROPERTIES}, failed[:4])
  assert true["stated"] == {"colour": 144, "shape": 144, "direction": 144, "speed": 96,
                            "count": 144, "bounces": 48}
  for prop in synthetic_judge.PROPERTIES:
    assert wrong[prop]["stated"][prop] == true["stated"][prop], prop
    assert true[prop] >= 0.97, (prop, true[prop], failed[:4])
    assert wrong[prop][prop] <= 0.03, (prop, wrong[prop][prop])


def _issue_clip(shape: str, colour, direction: str) -> np.ndarray:
  """Issue 17's clips: 17 frames of 64×64 drawn with numpy (hard edges, dark background), one
  10-pixel object moving 2 px per frame."""
  rows, cols = np.indices((64, 64))
  video = np.full((17, 64, 64, 3), 20, np.uint8)
  axis, sign = DIRECTIONS[direction]
  for i in range(17):
    centre = [32.0, 32.0]
    centre[axis] += sign * (2 * i - 16)
    dy, dx = rows - centre[0], cols - centre[1]
    inside = {"circle": dy ** 2 + dx ** 2 <= 25,
              "square": (np.abs(dy) <= 4.5) & (np.abs(dx) <= 4.5),
              "triangle": (dy <= 2.9) & (np.abs(dx) <= (dy + 5.8) / np.sqrt(3))}[shape]
    video[i][inside] = colour
  return video


def test_issue_clips_and_calibration_through_the_cli(tmp_path):
  from conftest import one_line_error, run_cli
  clips = [("a blue square moving left", "a blue square moving right",
            _issue_clip("square", (30, 30, 220), "left")),
           ("a red circle moving right", "a red square moving right",
            _issue_clip("circle", (200, 30, 30), "right")),
           ("a white triangle moving down", "a green triangle moving down",
            _issue_clip("triangle", (235, 235, 235), "down"))]
  manifest = tmp_path / "clips.csv"
  lines = ["path,text,expected"]
  for i, (true, false, video) in enumerate(clips):
    encode(str(tmp_path / f"{i}.mp4"), video, 23)
    lines += [f"{i}.mp4,{true},{true}", f"{i}.mp4,{false},{true}"]
  manifest.write_text("\n".join(lines) + "\n")
  result = run_cli("videogen.evaluate", f"--videos={manifest}", check=True)
  report = json.loads(result.stdout.strip().splitlines()[-1])
  print(result.stderr[-1500:])
  assert [v["ok"] for v in report["per_video"]] == [True, False] * 3  # all six verdicts right
  calibration = report["calibration"]
  assert calibration["videos"] == 6
  assert calibration["confusion"]["colour"] == {"blue": {"blue": 2}, "red": {"red": 2},
                                                "white": {"white": 2}}
  assert calibration["confusion"]["shape"] == {"square": {"square": 2}, "circle": {"circle": 2},
                                               "triangle": {"triangle": 2}}
  assert calibration["confusion"]["direction"] == {"left": {"left": 2}, "right": {"right": 2},
                                                   "down": {"down": 2}}
  assert calibration["confusion"]["count"] == {"1": {"1": 6}}
  assert all(calibration["accuracy"][p] == 1.0 for p in ("colour", "shape", "direction", "count"))
  assert "shape: 6/6 right" in result.stderr and "triangle" in result.stderr
  # A label the judge cannot tell apart shows where it errs: a clip with no object at all.
  (tmp_path / "blank.csv").write_text("path,text,expected\nblank.mp4,a red circle moving up,"
                                      "a red circle moving up\n")
  encode(str(tmp_path / "blank.mp4"), np.full((8, 32, 32, 3), 20, np.uint8), 23)
  blank = json.loads(run_cli("videogen.evaluate", f"--videos={tmp_path / 'blank.csv'}",
                             check=True).stdout.strip().splitlines()[-1])["calibration"]
  assert blank["confusion"]["colour"] == {"red": {"none": 1}}
  assert blank["confusion"]["count"] == {"1": {"0": 1}} and blank["accuracy"]["shape"] == 0.0
  (tmp_path / "bad.csv").write_text("path,text,expected\nblank.mp4,a red circle moving up,"
                                    "a red blob\n")
  assert "row 1: expected" in one_line_error(
      run_cli("videogen.evaluate", f"--videos={tmp_path / 'bad.csv'}", timeout=120))
