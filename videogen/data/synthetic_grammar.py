"""The synthetic world's prompt language: its words and what each means, the grammar that reads
and writes prompts, which prompts a world can show exactly, and the benchmark suite drawn from
them. The renderer (`videogen.data.synthetic`) draws what these words mean; the judge
(`videogen.eval.synthetic_judge`) reads them back from pixels.

A prompt is clauses joined by " and ", one per object:

    a <colour> <shape> moving [slowly|quickly] <direction> [bouncing <number> times]

"moves to the <direction>" (the world's verbose caption form) also parses. `parse_prompt` turns a
prompt into one spec per object (colour, shape, direction, speed word or None, bounce count or
None) and `format_prompt` writes specs back. The speed classes `SPEEDS` are a factor of two apart
so that pixels decide them; an unstated speed is the world's own `speed` range ("quickly" by
default). A stated bounce count is exact within the clip's frames and keeps `BOUNCE_CLEARANCE`
of travel between the start, each wall hit and the end, so every leg is visible; an unstated
one is the fewest that fit. `feasible_bounces` and `max_objects` say what a world's frames and
object size allow; `prompt_suite(world, n)` lists prompts the world can render exactly, drawn
by `suite_objects` (as the world's `scenes="suite"` clips are).

Functions taking `world` read a `synthetic.World`'s fields (radius, num_frames, speed, colours,
shapes, directions); this module sits below the renderer, which imports it.
"""
import functools
import re

import numpy as np

COLOURS = {  # colour word → the RGB the world paints it in
    "red": (230, 40, 40), "green": (40, 200, 70), "blue": (50, 100, 245),
    "yellow": (240, 220, 40), "purple": (160, 60, 220), "orange": (250, 140, 20),
    "cyan": (40, 220, 230), "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")
# Direction word → unit step (row, column) in world coordinates (rows grow downwards).
DIRECTIONS = {"left": (0.0, -1.0), "right": (0.0, 1.0), "up": (-1.0, 0.0), "down": (1.0, 0.0)}
# Speed classes, in frame sizes per frame (well apart: a judge splits them at the geometric mean
# of 0.03 and 0.06). Random scenes' captions never use them, so they are not in the word
# tokenizer's vocabulary (`synthetic.VOCABULARY`) and word-tokenizer checkpoints keep theirs.
SPEEDS = {"slowly": (0.02, 0.03), "quickly": (0.06, 0.09)}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BOUNCE_CLEARANCE = 0.1  # least world units of travel before the first and after the last wall hit

GRAMMAR = ("'a <colour> <shape> moving [slowly|quickly] <direction> [bouncing <number> times]' "
           "clauses joined by ' and '")
_CLAUSE = re.compile(
    rf"a (?P<colour>{'|'.join(COLOURS)}) (?P<shape>{'|'.join(SHAPES)}) (?:moving|moves)"
    rf"(?: (?P<speed>{'|'.join(SPEEDS)}))? (?:to the )?(?P<direction>{'|'.join(DIRECTIONS)})"
    rf"(?: bouncing (?P<bounces>{'|'.join(NUMBER_WORDS)}) times)?")


def parse_prompt(prompt: str) -> list[dict]:
  """One spec per clause: colour, shape, direction, speed (a `SPEEDS` word, or None where the
  prompt does not say) and bounces (an int, or None)."""
  objects = []
  for clause in " ".join(prompt.lower().split()).split(" and "):
    match = _CLAUSE.fullmatch(clause)
    if not match:
      raise ValueError(
          f"prompt {prompt!r}: {clause!r} is not in the grammar {GRAMMAR}; colours "
          f"{list(COLOURS)}, shapes {list(SHAPES)}, directions {list(DIRECTIONS)}, numbers "
          f"{NUMBER_WORDS[0]}..{NUMBER_WORDS[-1]}")
    bounces = None if match["bounces"] is None else NUMBER_WORDS.index(match["bounces"])
    objects.append(dict(colour=match["colour"], shape=match["shape"],
                        direction=match["direction"], speed=match["speed"], bounces=bounces))
  return objects


def format_prompt(objects: list[dict]) -> str:
  """The prompt that `parse_prompt` reads back as `objects`."""
  def clause(o):
    words = ["a", o["colour"], o["shape"], "moving", o.get("speed"), o["direction"]]
    if o.get("bounces") is not None:
      words += ["bouncing", NUMBER_WORDS[o["bounces"]], "times"]
    return " ".join(w for w in words if w)
  return " and ".join(map(clause, objects))


def start_room(world, speed: float, bounces: int) -> tuple[float, float]:
  """Distances from the start to the wall ahead, `[lo, hi]` (empty when lo > hi), at which an
  object hits the walls exactly `bounces` times, with the world's `bounce_clearance` (at least
  `BOUNCE_CLEARANCE`) around each hit."""
  span, travel = 1 - 2 * world.radius, speed * (world.num_frames - 1)
  if bounces == 0:
    return travel + 1e-3, span
  clear = world.bounce_clearance + speed
  return (max(clear, travel - bounces * span + 1e-3),
          min(span, travel - (bounces - 1) * span - clear))


@functools.lru_cache(maxsize=256)
def bounce_speeds(world, speed: str | None, bounces: int) -> tuple[float, ...]:
  """Speeds of the class (None: `world.speed`) at which exactly `bounces` fit, on a grid of
  33."""
  grid = np.linspace(*(SPEEDS[speed] if speed else world.speed), 33)
  return tuple(float(v) for v in grid if np.subtract(*start_room(world, v, bounces)) <= 0)


def feasible_bounces(world, speed: str | None = None) -> list[int]:
  """Bounce counts (up to nine) an object of speed class `speed` (None: `world.speed`) can make
  exactly within the world's frames."""
  return [n for n in range(len(NUMBER_WORDS)) if bounce_speeds(world, speed, n)]


def max_objects(world) -> int:
  """Most objects a prompt names in this world: at most three, of distinct colours, that fit
  side by side across the frame."""
  return max(1, min(3, len(world.colours), int(1 / (2 * world.radius))))


def object_counts(world) -> list[int]:
  """Objects per prompt that the suite cycles through: 1, 1, 2, … `max_objects` (single
  objects weigh double: they carry most of the grammar)."""
  return [1, 1, *range(2, max_objects(world) + 1)]


def suite_objects(world, rng: np.random.Generator, count: int) -> list[dict]:
  """`count` object specs of distinct colours the world can render exactly: colour, shape and
  direction from the world's; a speed class (or none: `world.speed`) among those that fit its
  frames, each as likely; and one of its `feasible_bounces` or none, each as likely."""
  bounces = {s: [None, *feasible_bounces(world, s)] for s in (None, *SPEEDS)}
  speeds = [s for s, options in bounces.items() if len(options) > 1]
  if not speeds:
    raise ValueError(f"no speed fits {world.num_frames} frames (an object would hit the walls "
                     "more than nine times); lower data.num_frames or data.synthetic.speed")
  objects = []
  for colour in rng.choice(world.colours, count, replace=False):
    speed = speeds[rng.integers(len(speeds))]
    objects.append(dict(colour=str(colour), shape=str(rng.choice(world.shapes)),
                        direction=str(rng.choice(world.directions)), speed=speed,
                        bounces=bounces[speed][rng.integers(len(bounces[speed]))]))
  return objects


def prompt_suite(world, n: int) -> list[str]:
  """`n` prompts the world can render exactly, the same on every call: `suite_objects` for 1,
  1, 2, … `max_objects` objects in turn. A clause states a speed class in two cases of three
  (among the classes that fit the world's frames) and a bounce count in at least half."""
  rng = np.random.default_rng(0)
  counts = object_counts(world)
  return [format_prompt(suite_objects(world, rng, counts[i % len(counts)])) for i in range(n)]
