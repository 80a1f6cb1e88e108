"""The built-in synthetic world: coloured shapes moving and bouncing, with exact ground truth.

`render_clip(world, seed, index)` is a pure function of its arguments, so clip `index` is the
same on every host, every run and every mesh. It renders at any (T, H, W) and returns the
object trajectories, so evaluation (an exact judge) and camera control can build on it.
Objects live in world coordinates `[0, 1]²`; a camera (pan, zoom) maps them to pixels.
"""
import dataclasses

import numpy as np

COLOURS = {
    "red": (230, 40, 40), "green": (40, 200, 70), "blue": (50, 100, 245),
    "yellow": (240, 220, 40), "purple": (160, 60, 220), "orange": (250, 140, 20),
    "cyan": (40, 220, 230), "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = {"left": (0.0, -1.0), "right": (0.0, 1.0), "up": (-1.0, 0.0), "down": (1.0, 0.0)}
BACKGROUNDS = ("plain", "checker")
# "mixed": each clip draws static, pan or zoom, and its caption does not say which (camera
# control learns the motion from the camera input alone).
CAMERAS = ("static", "pan", "zoom", "mixed")
CAPTION_FORMS = {
    "plain": "a {colour} {shape} moving {direction}",
    "verbose": "a {colour} {shape} moves to the {direction}",
    "bounces": "a {colour} {shape} moving {direction} bouncing {bounces} times",
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
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
  background: str = "plain"
  camera: str = "static"
  camera_speed: float = 0.03               # pan: frame widths per frame; zoom: scale per frame
  caption_forms: tuple[str, ...] = ("plain",)

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


@dataclasses.dataclass
class Clip:
  video: np.ndarray            # (T, H, W, 3) uint8
  caption: str
  positions: np.ndarray        # (T, num_objects, 2) object centres, (row, column) pixel index
  objects: list[dict]          # per object: colour, shape, direction, speed, bounces
  camera: np.ndarray           # (T, 3): camera centre (y, x) in world units and zoom


def _fold(p: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
  """Reflects an unbounded 1-D trajectory into [lo, hi]; also returns wall hits so far."""
  span = hi - lo
  laps = np.floor((p - lo) / span)
  u = (p - lo) - laps * span
  folded = lo + np.where(laps % 2 == 0, u, span - u)
  return folded, np.abs(laps - laps[0])


def _object_trajectory(world: World, rng: np.random.Generator, direction: str):
  """World-space centres `(T, 2)` and number of bounces of one object."""
  r, t = world.radius, np.arange(world.num_frames)
  speed = rng.uniform(*world.speed)
  velocity = np.array(DIRECTIONS[direction]) * speed
  start = rng.uniform(r, 1 - r, size=2)
  if not world.allow_bounces:  # start far enough from the wall it heads to
    axis = int(np.argmax(np.abs(velocity)))
    room = max(0.0, (1 - 2 * r) - speed * (world.num_frames - 1))
    offset = rng.uniform(0, room)
    start[axis] = r + offset if velocity[axis] > 0 else 1 - r - offset
  unbounded = start[None] + t[:, None] * velocity[None]
  ys, hits_y = _fold(unbounded[:, 0], r, 1 - r)
  xs, hits_x = _fold(unbounded[:, 1], r, 1 - r)
  return np.stack([ys, xs], -1), int(hits_y[-1] + hits_x[-1]), speed


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


def _coverage(shape: str, dy: np.ndarray, dx: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
  """Anti-aliased coverage in [0, 1] from an approximate signed distance (radius units)."""
  if shape == "circle":
    sdf = np.sqrt(dy ** 2 + dx ** 2) - 1.0
  elif shape == "square":
    sdf = np.maximum(np.abs(dy), np.abs(dx)) - 0.85
  else:  # upward triangle as three half-planes (y grows downwards)
    sdf = np.maximum.reduce([dy, -0.5 * dy + 0.866 * dx, -0.5 * dy - 0.866 * dx]) - 0.6
  return np.clip(0.5 - sdf * radius_px, 0.0, 1.0)


def render_clip(world: World, seed: int, index: int) -> Clip:
  rng = np.random.default_rng([seed, index])
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

  # Pixel grid → world coordinates through the camera, for every frame: (T, H, W).
  h, w = world.height, world.width
  u_y = (np.arange(h) + 0.5) / h - 0.5
  u_x = (np.arange(w) + 0.5) / w - 0.5
  centre, zoom = camera[:, None, None, :2], camera[:, None, None, 2]
  world_y = centre[..., 0] + u_y[None, :, None] / zoom
  world_x = centre[..., 1] + u_x[None, None, :] / zoom
  world_y, world_x = np.broadcast_arrays(world_y, world_x)

  if world.background == "checker":
    checks = (np.floor(world_y * 8) + np.floor(world_x * 8)) % 2
    frame = np.repeat((20 + 25 * checks)[..., None], 3, axis=-1)
  else:
    frame = np.full((world.num_frames, h, w, 3), 25.0)
  radius_px = world.radius * min(h, w) * zoom
  for obj, path in zip(objects, paths):
    dy = (world_y - path[:, 0, None, None]) / world.radius
    dx = (world_x - path[:, 1, None, None]) / world.radius
    alpha = _coverage(obj["shape"], dy, dx, radius_px)[..., None]
    frame = frame * (1 - alpha) + alpha * np.array(COLOURS[obj["colour"]], np.float64)

  positions = np.stack(paths, 1)  # world → pixel coordinates through the camera
  pixel = (0.5 + (positions - camera[:, None, :2]) * camera[:, None, 2:]) * np.array([h, w]) - 0.5
  return Clip(video=np.round(frame).astype(np.uint8), caption=caption, positions=pixel,
              objects=objects, camera=camera)
