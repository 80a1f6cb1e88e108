"""The synthetic world: coloured shapes moving and bouncing off the walls, rendered with exact
ground truth.

`render_clip(world, seed, index)` is a pure function of its arguments, so clip `index` is the
same on every host, every run and every mesh. It renders at any (T, H, W) and returns the
object trajectories and the camera path, so evaluation (an exact judge) and camera control can
build on it. Objects live in world coordinates `[0, 1]²`; a camera (pan, zoom) maps them to
pixels. `draw_scene(world, seed, index)` draws the same clip without its pixels (caption,
objects, paths, camera), so a stream of captions costs no rendering. What the words of a
caption mean (colours, shapes, directions, speed classes, bounce counts) is the prompt
language's, `videogen.data.synthetic_grammar`.

`World.scenes` picks what each clip shows:

  random  `num_objects` objects drawn from the world's ranges (colours, shapes, directions,
          speed; wall bounces only with `allow_bounces`), under the world's `camera`, and
          captioned by one of `caption_forms` (`CAPTION_FORMS`), one clause per object:
            plain    "a <colour> <shape> moving <direction>"
            verbose  "a <colour> <shape> moves to the <direction>"
            bounces  "a <colour> <shape> moving <direction> bouncing <number> times"
          joined by " and ", plus ", camera panning" or ", camera zooming in" for a pan or zoom
          camera ("mixed" draws static, pan or zoom per clip and does not say which). Every
          word is in `VOCABULARY`, the word tokenizer's.
  suite   a benchmark-suite prompt (`synthetic_grammar.suite_objects`: 1 to 3 objects, speed
          words, bounce counts), rendered exactly by `render_objects` with a static camera and
          captioned with that prompt, e.g. "a red circle moving slowly left bouncing two times
          and a blue square moving up".

`render_prompt(prompt, world, seed)` renders any prompt of the grammar exactly: its objects may
pass over each other, but never hide where one starts, ends or bounces. With `keep_apart` they
never touch at all, wherever paths that do so exist (suite training clips: always, redrawn
where none do).
"""
import dataclasses
import functools
import itertools

import numpy as np

from videogen.data.synthetic_grammar import (BOUNCE_CLEARANCE, COLOURS, DIRECTIONS,
                                             NUMBER_WORDS, SHAPES, SPEEDS, bounce_speeds,
                                             feasible_bounces, format_prompt, max_objects,
                                             object_counts, parse_prompt, start_room,
                                             suite_objects)

BACKGROUNDS = ("plain", "checker")
# "mixed": each clip draws static, pan or zoom, and its caption does not say which (camera
# control learns the motion from the camera input alone).
CAMERAS = ("static", "pan", "zoom", "mixed")
SCENES = ("random", "suite")
CAPTION_FORMS = {
    "plain": "a {colour} {shape} moving {direction}",
    "verbose": "a {colour} {shape} moves to the {direction}",
    "bounces": "a {colour} {shape} moving {direction} bouncing {bounces} times",
}
VOCABULARY = tuple(sorted(
    set(COLOURS) | set(SHAPES) | set(DIRECTIONS) | set(NUMBER_WORDS)
    | {w for form in CAPTION_FORMS.values() for w in form.split() if "{" not in w}
    | {"and", "camera", "panning", "zooming", "in"}))


@dataclasses.dataclass(frozen=True)
class World:
  """What the generator may draw; each clip samples from these ranges."""

  num_frames: int = 8
  height: int = 32
  width: int = 32
  colours: tuple[str, ...] = tuple(COLOURS)
  shapes: tuple[str, ...] = SHAPES
  directions: tuple[str, ...] = tuple(DIRECTIONS)
  num_objects: int = 1
  radius: float = 0.14                     # object radius, fraction of the frame
  speed: tuple[float, float] = (0.06, 0.09)  # frame widths per frame
  allow_bounces: bool = False              # False: start where the object never hits a wall
  # Travel (frame sizes) kept before the first and after the last wall hit of a stated bounce
  # count: longer first legs make a caption's direction a larger part of its clip.
  bounce_clearance: float = BOUNCE_CLEARANCE
  background: str = "plain"
  camera: str = "static"
  camera_speed: float = 0.03               # pan: frame widths per frame; zoom: scale per frame
  caption_forms: tuple[str, ...] = ("plain",)
  scenes: str = "random"
  # suite: objects per clip, drawn uniformly from this list; () = the suite's own
  # `object_counts` (1, 1, 2, 3), which the evaluation prompts also cycle through.
  suite_object_counts: tuple[int, ...] = ()
  # True: objects of a clip never touch (suite clips are redrawn where no paths keep them
  # apart; `render_prompt` lets them pass over each other there, as `render_objects` describes
  # and as they always may when False).
  keep_apart: bool = False

  def __post_init__(self):
    for name, values, allowed in (("colours", self.colours, COLOURS), ("shapes", self.shapes, SHAPES),
                                  ("directions", self.directions, DIRECTIONS),
                                  ("caption_forms", self.caption_forms, CAPTION_FORMS)):
      bad = [v for v in values if v not in allowed]
      if bad or not values:
        raise ValueError(f"data.synthetic.{name}: unknown {bad or 'empty'}; "
                         f"choose from {sorted(allowed)}")
    if self.background not in BACKGROUNDS:
      raise ValueError(f"data.synthetic.background={self.background!r}; choose from {BACKGROUNDS}")
    if self.camera not in CAMERAS:
      raise ValueError(f"data.synthetic.camera={self.camera!r}; choose from {CAMERAS}")
    if self.scenes not in SCENES:
      raise ValueError(f"data.synthetic.scenes={self.scenes!r}; choose from {SCENES}")
    if self.bounce_clearance < BOUNCE_CLEARANCE:
      raise ValueError(f"data.synthetic.bounce_clearance={self.bounce_clearance} is under "
                       f"{BOUNCE_CLEARANCE}, the least travel around a wall hit that keeps every "
                       "leg visible")
    bad = [n for n in self.suite_object_counts if not 1 <= n <= max_objects(self)]
    if bad:
      raise ValueError(f"data.synthetic.suite_object_counts: {bad} not in [1, "
                       f"{max_objects(self)}] (the most objects of radius {self.radius} that "
                       f"fit side by side, at most three)")
    if self.scenes == "suite" and self.camera != "static":
      raise ValueError("data.synthetic.scenes='suite' renders prompts exactly, with a static "
                       f"camera; data.synthetic.camera={self.camera!r} needs scenes='random'")


@dataclasses.dataclass
class Clip:
  video: np.ndarray            # (T, H, W, 3) uint8
  caption: str
  positions: np.ndarray        # (T, num_objects, 2) object centres, (row, column) pixel index
  objects: list[dict]          # per object: colour, shape, direction, speed, bounces
  camera: np.ndarray           # (T, 3): camera centre (y, x) in world units and zoom


@dataclasses.dataclass
class Scene:
  """A clip before its pixels: what it shows and its caption, cheap to draw (no rendering)."""

  caption: str
  objects: list[dict]             # per object, in the caption's order (as `Clip.objects`)
  paths: np.ndarray               # (T, num_objects, 2) world-space centres, (row, column)
  camera: np.ndarray              # (T, 3) as `Clip.camera`
  drawing_order: tuple[int, ...]  # objects back to front: a later one covers an earlier one


def _fold(p: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
  """Reflects unbounded trajectories `(T, ...)` into [lo, hi]; also returns wall hits so far."""
  span = hi - lo
  laps = np.floor((p - lo) / span)
  u = (p - lo) - laps * span
  folded = lo + np.where(laps % 2 == 0, u, span - u)
  return folded, np.abs(laps - laps[0])


def _object_trajectory(world: World, rng: np.random.Generator, direction: str):
  """World-space centres `(T, 2)`, number of bounces and speed of one object."""
  r = world.radius
  speed = rng.uniform(*world.speed)
  velocity = np.array(DIRECTIONS[direction]) * speed
  start = rng.uniform(r, 1 - r, size=2)
  if not world.allow_bounces:  # start far enough from the wall it heads to
    axis = int(np.argmax(np.abs(velocity)))
    room = max(0.0, (1 - 2 * r) - speed * (world.num_frames - 1))
    offset = rng.uniform(0, room)
    start[axis] = r + offset if velocity[axis] > 0 else 1 - r - offset
  return (*_path(world, start, velocity), speed)


def _path(world: World, start: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, int]:
  """World-space centres `(T, 2)` from a start and a velocity, reflected at the walls, and the
  number of wall hits."""
  paths, hits = _paths(world, start[None], velocity[None])
  return paths[0], int(hits[0])


def _paths(world: World, starts: np.ndarray, velocities: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
  """`_path` of `(K, 2)` starts and velocities at once: centres `(K, T, 2)` and hits `(K,)`."""
  r, t = world.radius, np.arange(world.num_frames)
  unbounded = starts[None] + t[:, None, None] * velocities[None]  # (T, K, 2)
  paths, hits = _fold(unbounded, r, 1 - r)
  return paths.transpose(1, 0, 2), hits[-1].sum(-1).astype(int)


def _camera_path(world: World, rng: np.random.Generator) -> np.ndarray:
  t = np.arange(world.num_frames, dtype=np.float64)
  centre = np.full((world.num_frames, 2), 0.5)
  zoom = np.ones(world.num_frames)
  kind = str(rng.choice(CAMERAS[:3])) if world.camera == "mixed" else world.camera
  if kind == "pan":
    centre += np.array(DIRECTIONS[rng.choice(list(DIRECTIONS))]) * world.camera_speed * t[:, None]
  elif kind == "zoom":
    zoom = (1 + world.camera_speed) ** t
  return np.concatenate([centre, zoom[:, None]], -1)


def shape_distance(shape: str, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
  """Approximate signed distance to a shape centred at 0 (radius units; negative inside)."""
  if shape == "circle":
    return np.sqrt(dy ** 2 + dx ** 2) - 1.0
  if shape == "square":
    return np.maximum(np.abs(dy), np.abs(dx)) - 0.85
  # upward triangle as three half-planes (y grows downwards)
  return np.maximum.reduce([dy, -0.5 * dy + 0.866 * dx, -0.5 * dy - 0.866 * dx]) - 0.6


def _coverage(shape: str, dy: np.ndarray, dx: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
  """Anti-aliased coverage in [0, 1] from the signed distance."""
  return np.clip(0.5 - shape_distance(shape, dy, dx) * radius_px, 0.0, 1.0)


def draw_scene(world: World, seed: int, index: int) -> Scene:
  """Clip `index`'s scene: what `render_clip` renders, without its pixels (the same caption,
  objects, paths and camera), so captions alone cost no rendering."""
  rng = np.random.default_rng([seed, index])
  return _suite_scene(world, rng) if world.scenes == "suite" else _random_scene(world, rng)


def render_clip(world: World, seed: int, index: int) -> Clip:
  """Clip `index` of the world's stream `seed`: `draw_scene`'s scene, rendered."""
  return _render(world, draw_scene(world, seed, index))


def _random_scene(world: World, rng: np.random.Generator) -> Scene:
  """`num_objects` objects from the world's ranges, captioned by one of its caption forms."""
  camera = _camera_path(world, rng)
  objects, paths = [], []
  for _ in range(world.num_objects):
    direction = str(rng.choice(world.directions))
    path, bounces, speed = _object_trajectory(world, rng, direction)
    objects.append(dict(colour=str(rng.choice(world.colours)), shape=str(rng.choice(world.shapes)),
                        direction=direction, speed=speed, bounces=bounces))
    paths.append(path)
  form = CAPTION_FORMS[str(rng.choice(world.caption_forms))]
  caption = " and ".join(form.format(**{**o, "bounces": NUMBER_WORDS[min(o["bounces"], 9)]})
                         for o in objects)
  if world.camera in ("pan", "zoom"):
    caption += ", camera " + ("panning" if world.camera == "pan" else "zooming in")
  return Scene(caption, objects, np.stack(paths, 1), camera, tuple(range(len(objects))))


def _render(world: World, scene: Scene) -> Clip:
  """Draws the scene's objects on their world-space paths through its camera (in float32:
  half the memory traffic of float64, for pixels that end as uint8)."""
  # Pixel grid → world coordinates through the camera, for every frame: (T, H, W).
  h, w = world.height, world.width
  u_y = (np.arange(h) + 0.5) / h - 0.5
  u_x = (np.arange(w) + 0.5) / w - 0.5
  camera, paths = scene.camera, scene.paths
  centre, zoom = camera[:, None, None, :2], camera[:, None, None, 2]
  world_y = (centre[..., 0] + u_y[None, :, None] / zoom).astype(np.float32)
  world_x = (centre[..., 1] + u_x[None, None, :] / zoom).astype(np.float32)
  world_y, world_x = np.broadcast_arrays(world_y, world_x)

  if world.background == "checker":
    checks = (np.floor(world_y * 8) + np.floor(world_x * 8)) % 2
    frame = np.repeat((20 + 25 * checks)[..., None], 3, axis=-1)
  else:
    frame = np.full((world.num_frames, h, w, 3), 25.0, np.float32)
  radius_px = (world.radius * min(h, w) * zoom).astype(np.float32)
  radius, centres = np.float32(world.radius), paths.astype(np.float32)
  for k in scene.drawing_order:
    obj, path = scene.objects[k], centres[:, k]
    dy = (world_y - path[:, 0, None, None]) / radius
    dx = (world_x - path[:, 1, None, None]) / radius
    alpha = _coverage(obj["shape"], dy, dx, radius_px)[..., None]
    frame += alpha * (np.array(COLOURS[obj["colour"]], np.float32) - frame)

  # World → pixel coordinates through the camera.
  pixel = (0.5 + (paths - camera[:, None, :2]) * camera[:, None, 2:]) * np.array([h, w]) - 0.5
  return Clip(video=np.round(frame).astype(np.uint8), caption=scene.caption, positions=pixel,
              objects=scene.objects, camera=camera)


# ---------------------------------------------------------------------------------------------
# Exact rendering of object specs (prompts, suite scenes).


def _spec_path(world: World, rng: np.random.Generator, spec: dict) -> dict:
  """An object satisfying `spec`: world-space centres `path` `(T, 2)`, `bounces`, `speed` and
  the `key` frames `(T,)` that show its motion: those within half `BOUNCE_CLEARANCE` of travel
  from its start, its end or a wall hit."""
  drawn = {name: value[0] for name, value in _spec_paths(world, rng, spec, 1).items()}
  return dict(drawn, bounces=int(drawn["bounces"]), speed=float(drawn["speed"]))


def _spec_paths(world: World, rng: np.random.Generator, spec: dict, count: int) -> dict:
  """`count` independent `_spec_path` draws as arrays, each with a leading `(count,)` axis
  (one draw consumes `rng` exactly as `_spec_path` does)."""
  counts = range(len(NUMBER_WORDS)) if spec.get("bounces") is None else [spec["bounces"]]
  bounces = next((n for n in counts if bounce_speeds(world, spec.get("speed"), n)), None)
  if bounces is None:
    raise ValueError(
        f"{format_prompt([spec])!r} cannot be rendered in {world.num_frames} frames with "
        f"radius {world.radius} at speed {SPEEDS.get(spec.get('speed'), world.speed)}: exact "
        f"bounce counts there are {feasible_bounces(world, spec.get('speed'))}; change "
        "data.num_frames, the prompt or data.synthetic.speed")
  speeds, rooms = _speeds_and_rooms(world, spec.get("speed"), bounces)
  which = rng.integers(len(speeds), size=count)
  speed = speeds[which]
  ahead = rng.uniform(rooms[which, 0], rooms[which, 1])
  velocity = np.array(DIRECTIONS[spec["direction"]])[None] * speed[:, None]
  axis = int(np.argmax(np.abs(velocity[0])))
  start = rng.uniform(world.radius, 1 - world.radius, size=(count, 2))
  start[:, axis] = 1 - world.radius - ahead if velocity[0, axis] > 0 else world.radius + ahead
  paths, hits = _paths(world, start, velocity)
  travel = speed[:, None] * np.arange(world.num_frames)  # (count, T)
  walls = ahead[:, None] + np.arange(hits.max(initial=0)) * (1 - 2 * world.radius)
  events = np.concatenate([np.zeros((count, 1)), travel[:, -1:],
                           np.where(np.arange(walls.shape[1]) < hits[:, None], walls, np.inf)], 1)
  key = np.abs(travel[:, :, None] - events[:, None]).min(-1) <= BOUNCE_CLEARANCE / 2
  return dict(path=paths, bounces=hits, speed=speed, key=key)


@functools.lru_cache(maxsize=256)
def _speeds_and_rooms(world: World, speed: str | None, bounces: int
                      ) -> tuple[np.ndarray, np.ndarray]:
  """`bounce_speeds` `(S,)` and each one's `start_room` `(S, 2)`, as read-only arrays (looked up
  per candidate path: 128 a draw with `keep_apart`)."""
  speeds = np.array(bounce_speeds(world, speed, bounces))
  rooms = np.array([start_room(world, v, bounces) for v in speeds]).reshape(-1, 2)
  speeds.flags.writeable = rooms.flags.writeable = False
  return speeds, rooms


def _hidden(drawn: dict, covered: np.ndarray) -> bool:
  """Whether an object is covered (`covered` `(T,)`: frames where one drawn over it touches
  it) in one of its key frames or in over half of all frames."""
  return bool((covered & drawn["key"]).any() or covered.sum() > len(covered) // 2)


def _place(world: World, objects: list[dict], rng: np.random.Generator) -> list[dict] | None:
  """Paths for `objects` drawn in this order where none is `_hidden` by those drawn over it
  (None when none are found): placed one by one, redrawing one that hides one before it,
  starting over when one does not fit."""
  for _ in range(20):
    drawn, covered = [], []  # covered[i]: frames where an object drawn later touches drawn[i]
    for spec in objects:
      for _ in range(50):
        candidate = _spec_path(world, rng, spec)
        touched = [c | (np.linalg.norm(d["path"] - candidate["path"], axis=-1) < 2 * world.radius)
                   for d, c in zip(drawn, covered)]
        if not any(map(_hidden, drawn, touched)):
          drawn.append(candidate)
          covered = touched + [np.zeros(world.num_frames, bool)]
          break
      else:
        break
    if len(drawn) == len(objects):
      return drawn
  return None


def _never_touch(world: World, paths_a: np.ndarray, paths_b: np.ndarray) -> np.ndarray:
  """`(n, m)`: whether the i-th of `paths_a` `(n, T, 2)` and the j-th of `paths_b` keep their
  centres two radii apart in every frame (one frame at a time: the temporaries stay in cache,
  where one `(n, m, T)` array would not)."""
  apart = np.ones((len(paths_a), len(paths_b)), bool)
  for a, b in zip(np.moveaxis(paths_a, 1, 0).astype(np.float32),
                  np.moveaxis(paths_b, 1, 0).astype(np.float32)):
    rows = a[:, None, 0] - b[None, :, 0]
    rows *= rows
    columns = a[:, None, 1] - b[None, :, 1]
    columns *= columns
    rows += columns
    apart &= rows >= (2 * world.radius) ** 2
  return apart


def _place_apart(world: World, objects: list[dict], rng: np.random.Generator,
                 candidates: int = 128) -> list[dict] | None:
  """Paths for `objects` whose centres stay two radii apart in every frame, so that none
  touches another (None when none are found): `candidates` draws of each object's spec, and one
  of their combinations where no two touch (up to 128³ for three objects), uniformly at random.
  The combinations are counted, not listed: those of all objects but the last that keep apart,
  times how many of the last one's paths keep apart from each."""
  options = [_spec_paths(world, rng, spec, candidates) for spec in objects]
  apart = {(a, b): _never_touch(world, options[a]["path"], options[b]["path"])
           for a, b in itertools.combinations(range(len(objects)), 2)}
  last = len(objects) - 1
  heads = np.ones((candidates,) * last, bool)  # combinations of the first `last` kept apart
  for (a, b), ok in apart.items():
    if b < last:
      heads &= ok.reshape([candidates if k in (a, b) else 1 for k in range(last)])
  # Per head, how many of the last one's paths keep apart from all of it: its objects' rows of
  # `apart`, bit-packed, ANDed and counted (no BLAS product: NumPy's BLAS threads would spin
  # beside XLA's on a CPU host).
  rows = [np.packbits(apart[k, last], axis=-1).reshape(
      [candidates if j == k else 1 for j in range(last)] + [-1]) for k in range(last)]
  fits = functools.reduce(np.bitwise_and, rows, np.packbits(np.ones(candidates, bool)))
  counts = np.bitwise_count(fits).sum(-1, dtype=np.int64) * heads
  ends = np.cumsum(counts.ravel())
  if not ends[-1]:
    return None
  nth = rng.integers(ends[-1])  # the nth apart combination in row-major order
  flat = int(np.searchsorted(ends, nth, side="right"))
  head = np.unravel_index(flat, counts.shape)
  tail = np.logical_and.reduce([apart[k, last][head[k]] for k in range(last)]
                               + [np.ones(candidates, bool)])
  picked = (*head, int(np.flatnonzero(tail)[nth - (ends[flat] - counts.flat[flat])]))
  return [{name: value[i] for name, value in drawn.items()} for drawn, i in zip(options, picked)]


def _place_in_an_order(world: World, objects: list[dict], rng: np.random.Generator
                       ) -> tuple[list[dict] | None, tuple[int, ...]]:
  """`_place` in the first order of up to six (the given one first) where it finds paths: the
  paths in drawing order and that order (None and the last order tried when none does)."""
  for order in itertools.islice(itertools.permutations(range(len(objects))), 6):
    drawn = _place(world, [objects[k] for k in order], rng)
    if drawn:
      break
  return drawn, order


def _objects_scene(world: World, objects: list[dict], seed: int, overlap: bool = True
                   ) -> Scene | None:
  """A static-camera scene of exactly `objects`, as `render_objects` describes it (kept apart
  first with `world.keep_apart`, passing over each other only where none keep apart and
  `overlap`); None when no order of up to six places them."""
  rng = np.random.default_rng(seed)
  drawn, order = None, tuple(range(len(objects)))
  if world.keep_apart:
    drawn = _place_apart(world, objects, rng)
  if drawn is None and (overlap or not world.keep_apart):
    drawn, order = _place_in_an_order(world, objects, rng)
  if drawn is None:
    return None
  drawn = [drawn[k] for k in np.argsort(order)]  # drawing order → the given order
  placed = [dict(colour=o["colour"], shape=o["shape"], direction=o["direction"],
                 speed=float(d["speed"]), bounces=int(d["bounces"]))
            for o, d in zip(objects, drawn)]
  static = np.tile([0.5, 0.5, 1.0], (world.num_frames, 1))
  return Scene(format_prompt(objects), placed, np.stack([d["path"] for d in drawn], 1), static,
               order)


def render_objects(world: World, objects: list[dict], seed: int) -> Clip:
  """A static-camera clip of exactly `objects` (specs as `parse_prompt` returns them; the clip
  lists them in that order; `world.camera` and `world.num_objects` are not used). Objects may
  pass over each other, but one drawn later covers an earlier one in at most half the frames
  and never where that one starts, ends or bounces; they are drawn in the first order (of up to
  six, the given one first) where such paths are found. With `world.keep_apart` they never
  touch, where paths that keep them two radii apart are found."""
  scene = _objects_scene(world, objects, seed)
  if scene is None:
    raise ValueError(f"{len(objects)} objects of radius {world.radius} keep overlapping in "
                     f"{world.num_frames} frames; name fewer or lower data.synthetic.radius")
  return _render(world, scene)


def _suite_scene(world: World, rng: np.random.Generator) -> Scene:
  """A scene of `suite_objects`, redrawn while they cannot be placed (a few three-object
  draws, such as three fast objects on one line), or with `world.keep_apart` placed apart:
  its training clips never show objects touching, and a redraw costs less than the
  overlapping placement's rejection sampling."""
  counts = world.suite_object_counts or object_counts(world)
  for _ in range(100):
    objects = suite_objects(world, rng, counts[rng.integers(len(counts))])
    scene = _objects_scene(world, objects, seed=int(rng.integers(2 ** 32)), overlap=False)
    if scene is not None:
      return scene
  raise ValueError(f"suite prompts keep overlapping at radius {world.radius} in "
                   f"{world.num_frames} frames; lower data.synthetic.radius")


def render_prompt(prompt: str, world: World, seed: int) -> Clip:
  """A ground-truth clip of `prompt` (see `parse_prompt`) at the world's size and background."""
  return dataclasses.replace(render_objects(world, parse_prompt(prompt), seed), caption=prompt)
