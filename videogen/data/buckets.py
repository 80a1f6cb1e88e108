"""Shape buckets (Open-Sora style): every global batch has one (frames, height, width).

`data.buckets.sizes` maps a resolution (the side of a square of the same area, in pixels) to
`{frames: (keep_probability, batch_size)}`; `data.buckets.aspect_ratios` lists the height/width
ratios a clip snaps to. A clip goes to the largest resolution it covers (never upscaled) and
the longest frame count it can fill, each accepted with its keep probability (seeded per
epoch and clip, so the same on every host); it is then resized and centre-cropped to its
bucket. Each epoch's plan groups clips by bucket, shuffles them, cuts batches of the bucket's
size and shuffles the batch order: no padding, and the train step compiles once per bucket.

Buckets are given one of three ways (`bucket_sizes`): nothing, so the one bucket is the
config's own `data.num_frames × data.height × data.width` at `train.batch_size`; the flag
form `data.buckets.spec` (`SPEC_GRAMMAR`); or `data.buckets.sizes` / a JSON or YAML file
named by `data.buckets.spec`, holding the mapping above.

`train.stages` (progressive training) = `((start_step, sizes), …)`: global batch k (= step
k + 1) draws from the stage whose start step it has reached, so a resumed run lands in the
right stage from its iterator position alone.
"""
import dataclasses
import json
import math
import os
import re

import numpy as np

from videogen.data.manifest import ManifestError

SPEC_GRAMMAR = """\
data.buckets.spec = ENTRY[,ENTRY...]  or  a .json/.yaml/.yml file of {resolution: {frames:
[keep, batch]}}. ENTRY = RESxFRAMES[:KEEP[:BATCH]]: RES is the side in pixels of a square of
the bucket's area (clips snap to data.buckets.aspect_ratios), FRAMES the clip length, KEEP
the chance a clip that fits is kept (default 1.0), BATCH the global batch size (default
train.batch_size). Example: 32x8:1.0:2,64x16:0.5:1."""
GRAMMAR_LINE = " ".join(SPEC_GRAMMAR.split())  # for one-line errors
_ENTRY = re.compile(r"^(\d+)x(\d+)(?::([0-9.eE+-]+))?(?::(\d+))?$")


class BucketSpecError(ValueError):
  """A bucket description that cannot be read; the message names the key and the grammar."""


def parse_spec(text: str, batch_size: int, key: str = "data.buckets.spec") -> dict:
  """The flag form (or a JSON/YAML file) → `{resolution: {frames: (keep, batch_size)}}`."""
  text = text.strip()
  if text.lower().endswith((".json", ".yaml", ".yml")):
    return _read_file(text, key)
  sizes: dict = {}
  for entry in filter(None, (e.strip() for e in text.split(","))):
    match = _ENTRY.match(entry)
    if not match:
      raise BucketSpecError(f"{key}={text!r}: {entry!r} is not RESxFRAMES[:KEEP[:BATCH]]. "
                            f"{GRAMMAR_LINE}")
    resolution, frames, keep, batch = match.groups()
    try:
      keep = float(keep) if keep is not None else 1.0
    except ValueError:
      keep = -1.0
    batch = int(batch) if batch is not None else batch_size
    if not (0 < keep <= 1 and int(resolution) > 0 and int(frames) > 0 and batch > 0):
      raise BucketSpecError(f"{key}={text!r}: in {entry!r} RES, FRAMES and BATCH must be >= 1 "
                            f"and KEEP in (0, 1]. {GRAMMAR_LINE}")
    sizes.setdefault(str(int(resolution)), {})[str(int(frames))] = (keep, batch)
  if not sizes:
    raise BucketSpecError(f"{key}={text!r} names no bucket. {GRAMMAR_LINE}")
  return sizes


def _read_file(path: str, key: str) -> dict:
  if not os.path.isfile(path):
    raise BucketSpecError(f"{key}={path!r} does not exist. {GRAMMAR_LINE}")
  try:
    with open(path, encoding="utf-8") as f:
      if path.lower().endswith(".json"):
        sizes = json.load(f)
      else:
        import yaml  # pyyaml is not a dependency: only a .yaml bucket file needs it
        sizes = yaml.safe_load(f)
  except (OSError, ValueError, UnicodeDecodeError) as e:
    raise BucketSpecError(f"{key}={path!r} cannot be read: {str(e).splitlines()[0]}") from None
  except Exception as e:  # yaml.YAMLError and its subclasses
    raise BucketSpecError(f"{key}={path!r} is not YAML: {str(e).splitlines()[0]}") from None
  check_sizes(sizes, f"{key}={path!r}")
  return sizes


def check_sizes(sizes, key: str) -> None:
  """`{resolution: {frames: (keep, batch_size)}}` with positive numbers, or BucketSpecError."""
  def bad(why):
    return BucketSpecError(f"{key}: {why}; want {{resolution: {{frames: [keep, batch]}}}}")
  if not hasattr(sizes, "items") or not sizes:
    raise bad(f"a {type(sizes).__name__}, not a non-empty mapping")
  for resolution, frames in sizes.items():
    if not hasattr(frames, "items") or not frames:
      raise bad(f"resolution {resolution!r} maps to {frames!r}")
    for count, value in frames.items():
      try:
        keep, batch = value
        ok = (int(resolution) > 0 and int(count) > 0 and 0 < float(keep) <= 1
              and int(batch) == batch and int(batch) > 0)
      except (TypeError, ValueError, OverflowError):
        ok = False
      if not ok:
        raise bad(f"{resolution!r}: {{{count!r}: {value!r}}} is not (keep in (0, 1], "
                  f"batch >= 1) under positive resolution and frames")


@dataclasses.dataclass(frozen=True, order=True)
class Bucket:
  frames: int
  height: int
  width: int
  batch_size: int

  @property
  def shape(self) -> tuple[int, int, int]:
    return self.frames, self.height, self.width


@dataclasses.dataclass(frozen=True)
class BucketSpec:
  """One stage's buckets: {resolution: {frames: (keep_probability, batch_size)}}."""

  sizes: tuple[tuple[int, tuple[tuple[int, float, int], ...]], ...]
  aspect_ratios: tuple[float, ...]
  multiple: int = 16        # bucket sides are multiples of this (VAE 8 × patch 2)
  frame_stride: int = 1
  shape: tuple[int, int] | None = None  # (height, width) of every bucket, ratios ignored

  @classmethod
  def from_config(cls, sizes: dict, aspect_ratios, multiple: int, frame_stride: int,
                  shape: tuple[int, int] | None = None):
    parsed = []
    for resolution, frames in sizes.items():
      entries = tuple(sorted(((int(f), float(p), int(b)) for f, (p, b) in frames.items()),
                             reverse=True))
      parsed.append((int(resolution), entries))
    return cls(tuple(sorted(parsed, reverse=True)), tuple(float(a) for a in aspect_ratios),
               multiple, frame_stride, shape)

  @classmethod
  def exact(cls, frames: int, height: int, width: int, batch_size: int, frame_stride: int):
    """One bucket of exactly `frames × height × width` (the config's own clip shape)."""
    return cls(((round(math.sqrt(height * width)), ((frames, 1.0, batch_size),)),), (1.0,),
               1, frame_stride, (height, width))

  def dims(self, resolution: int, ratio: float) -> tuple[int, int]:
    """(height, width) of `resolution`² pixels at height/width `ratio`, rounded to
    `multiple` (or the fixed `shape`)."""
    if self.shape:
      return self.shape
    m = self.multiple
    height = max(m, round(resolution * math.sqrt(ratio) / m) * m)
    width = max(m, round(resolution / math.sqrt(ratio) / m) * m)
    return height, width

  def buckets(self) -> list[Bucket]:
    return sorted({Bucket(f, *self.dims(r, a), b) for r, frames in self.sizes
                   for f, _, b in frames for a in self.aspect_ratios})

  def fits(self, num_frames: int, height: int, width: int) -> bool:
    """Whether some bucket could take the clip (ignoring keep probabilities)."""
    return self.assign(num_frames, height, width, _KEEP_ALL) is not None

  def assign(self, num_frames: int, height: int, width: int, rng: np.random.Generator
             ) -> Bucket | None:
    """The clip's bucket, or None (shorter or smaller than every bucket, or not kept)."""
    ratio = min(self.aspect_ratios, key=lambda a: abs(math.log(a * width / height)))
    for resolution, frames in self.sizes:
      bucket_h, bucket_w = self.dims(resolution, ratio)
      if height * width < bucket_h * bucket_w:
        continue  # never upscale
      for count, keep, batch_size in frames:
        if num_frames >= (count - 1) * self.frame_stride + 1 and rng.random() < keep:
          return Bucket(count, bucket_h, bucket_w, batch_size)
    return None


class _KeepAll:
  """An rng stand-in whose every draw passes the keep-probability test."""

  def random(self) -> float:
    return 0.0


_KEEP_ALL = _KeepAll()


@dataclasses.dataclass(frozen=True)
class PlannedBatch:
  bucket: Bucket
  clips: tuple[int, ...]     # indices into the clip list, one per row
  starts: tuple[int, ...]    # first frame of each row's window
  spares: tuple[int, ...]    # other clips of the bucket, to stand in for unreadable ones
  # Every clip of the bucket this epoch (one tuple shared by the bucket's batches): the
  # stand-ins once the spares are unreadable too.
  members: tuple[int, ...] = dataclasses.field(default=(), compare=False, repr=False)


def epoch_plan(clip_shapes: np.ndarray, spec: BucketSpec, seed: int, epoch: int
               ) -> list[PlannedBatch]:
  """All of one epoch's batches. `clip_shapes` is `(N, 3)`: frames, height, width."""
  groups: dict[Bucket, list[int]] = {}
  starts = {}
  for index, (frames, height, width) in enumerate(clip_shapes):
    rng = np.random.default_rng([seed, epoch, index])
    bucket = spec.assign(int(frames), int(height), int(width), rng)
    if bucket is not None:
      groups.setdefault(bucket, []).append(index)
      span = (bucket.frames - 1) * spec.frame_stride + 1
      starts[index] = int(rng.integers(0, int(frames) - span + 1))
  rng = np.random.default_rng([seed, epoch, 1 << 30])
  batches = []
  for bucket in sorted(groups):
    order = tuple(int(i) for i in rng.permutation(groups[bucket]))
    for b in range(len(order) // bucket.batch_size):
      rows = order[b * bucket.batch_size:(b + 1) * bucket.batch_size]
      spares = order[(b + 1) * bucket.batch_size:][:4] or order[:4]
      batches.append(PlannedBatch(bucket, rows, tuple(starts[i] for i in rows), spares, order))
  return [batches[i] for i in rng.permutation(len(batches))]


class BucketedBatches:
  """Global batch k → its PlannedBatch, walking epochs (and stages) in order. Picklable and
  stateless apart from a cache, so Grain can index it from any position."""

  def __init__(self, clip_shapes: np.ndarray, stages: tuple[tuple[int, BucketSpec], ...],
               seed: int):
    self.clip_shapes, self.stages, self.seed = clip_shapes, stages, seed
    self._lengths: dict[int, list[int]] = {}  # stage → batches in each epoch planned so far
    self._plans: dict[tuple[int, int], list[PlannedBatch]] = {}

  def __getstate__(self):
    return {"clip_shapes": self.clip_shapes, "stages": self.stages, "seed": self.seed}

  def __setstate__(self, state):
    self.__init__(**state)

  def _plan(self, stage: int, epoch: int) -> list[PlannedBatch]:
    if (stage, epoch) not in self._plans:
      if len(self._plans) > 4:
        self._plans.pop(next(iter(self._plans)))
      plan = epoch_plan(self.clip_shapes, self.stages[stage][1], self.seed + 7919 * stage,
                        epoch)
      if not plan:
        raise ManifestError(f"epoch {epoch} has no batch: no bucket kept enough clips for one "
                            f"(raise the keep probabilities or lower the batch sizes in "
                            f"data.buckets, or add clips)")
      self._plans[stage, epoch] = plan
    return self._plans[stage, epoch]

  def __call__(self, k: int) -> PlannedBatch:
    step = int(k) + 1  # global batch k feeds train step k + 1
    stage = max(i for i, (start, _) in enumerate(self.stages) if start <= step)
    position = step - max(self.stages[stage][0], 1)
    lengths = self._lengths.setdefault(stage, [])
    epoch = 0
    while True:
      if epoch == len(lengths):
        lengths.append(len(self._plan(stage, epoch)))
      if position < lengths[epoch]:
        return self._plan(stage, epoch)[position]
      position -= lengths[epoch]
      epoch += 1
