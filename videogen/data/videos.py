"""The `videos` source: manifest clips → bucketed batches of decoded, resized frames.

Global batch k is planned by `buckets.BucketedBatches` (one shape per batch); this process
decodes only its rows, seeking to each clip's window (`video_io.read_frames`), resizing so
the bucket is covered and centre-cropping.

An unreadable clip (corrupt, truncated, shorter than its manifest row says, frames larger
than its row) is remembered by this process and never read again: its row is filled by the
batch's spares, then by any other clip of the same bucket, first one the batch does not hold
yet; the batch counts the rows filled so in `skipped` (logged as the running `data_skipped`)
and carries this process's number of remembered clips (`unreadable`). The remembered clips
travel in the Grain iterator state (`RememberingIterDataset`), so a resumed run does not
read them again. The stand-in for a row is the first readable clip in a fixed order, so a
batch is the same whether an unreadable file (one that fails at every window: corrupt,
truncated, missing) was known before or found while reading it.
Only a bucket whose every clip is unreadable stops training: one `UnreadableBucketError`
line naming the bucket and a file.
"""
import os
import sys
import warnings

import ml_collections
import numpy as np

from videogen import video_io
from videogen.config import ConfigError
from videogen.data import buckets as buckets_lib, frames as frames_lib
from videogen.data.manifest import Clip, ManifestError, passes, read_manifest
from videogen.data import tfds_source
from videogen.data.recaption import Recaptioner

# Warn for the first few unreadable clips, then for every 1000th: never a flood.
_WARN_FIRST, _WARN_EVERY = 20, 1000
_warned = [0]


def _warn(message: str) -> None:
  _warned[0] += 1
  if _warned[0] <= _WARN_FIRST or _warned[0] % _WARN_EVERY == 0:
    warnings.warn(f"skipped clip #{_warned[0]}: {message}", stacklevel=3)


def warn_line(message: str) -> None:
  """A start-up warning as one `warning:` line on stderr."""
  print(f"warning: {message}", file=sys.stderr)


def clips_and_reader(data: ml_collections.ConfigDict) -> tuple[list[Clip], object, int]:
  """The source's clips that pass `data.filters` (with their original indices kept for the
  reader), the frame reader, and the number of malformed rows skipped; no usable clip is a
  ManifestError."""
  if data.source == "tfds":
    clips, reader = tfds_source.load_clips(data.tfds), tfds_source.TfdsReader(data.tfds)
    bad_rows, where = 0, f"data.tfds.name={data.tfds.name!r}"
  else:
    clips, bad_rows = read_manifest(data.manifest)
    reader, where = FileReader(clips), f"data.manifest={data.manifest!r}"
  keep = [i for i, c in enumerate(clips) if passes(c, data.filters)]
  if not keep:
    raise ManifestError(f"{where}: none of its {len(clips)} usable clips passes data.filters")
  return [clips[i] for i in keep], _Subset(reader, keep), bad_rows


class _Subset:
  """A reader addressed by position in the filtered clip list."""

  def __init__(self, reader, indices: list[int]):
    self.reader, self.indices = reader, indices

  def __call__(self, index: int, start: int, count: int, stride: int) -> np.ndarray:
    return self.reader(self.indices[index], start, count, stride)


def bucket_stages(config: ml_collections.ConfigDict) -> tuple:
  """`((start_step, BucketSpec), …)` from `train.stages`, or one stage of `data.buckets`:
  `spec` (flag form or JSON/YAML file), else `sizes`, else the config's own clip shape."""
  b, data = config.data.buckets, config.data

  def spec(sizes, key):
    if isinstance(sizes, str):
      sizes = buckets_lib.parse_spec(sizes, config.train.batch_size, key)
    else:
      buckets_lib.check_sizes(sizes, key)
    return buckets_lib.BucketSpec.from_config(sizes, b.aspect_ratios, b.multiple, b.frame_stride)

  try:
    if config.train.stages:
      stages = tuple(config.train.stages)
      if stages[0][0] > 1:
        raise ConfigError(f"train.stages must start at step 0 or 1, not {stages[0][0]}")
      return tuple((int(start), spec(sizes, f"train.stages[{i}]"))
                   for i, (start, sizes) in enumerate(stages))
    if b.spec and b.sizes:
      raise ConfigError("data.buckets.spec and data.buckets.sizes are both set: give one")
    if b.spec:
      return ((0, spec(b.spec, "data.buckets.spec")),)
    if b.sizes:
      return ((0, spec(b.sizes, "data.buckets.sizes")),)
  except buckets_lib.BucketSpecError as e:
    raise ConfigError(str(e)) from None
  return ((0, buckets_lib.BucketSpec.exact(data.num_frames, data.height, data.width,
                                           config.train.batch_size, b.frame_stride)),)


def describe_buckets(config: ml_collections.ConfigDict) -> str:
  """`8x32x32 (batch 4), …` (frames x height x width) of the first stage, for messages."""
  _, spec = bucket_stages(config)[0]
  shapes = sorted({(k.frames, k.height, k.width, k.batch_size) for k in spec.buckets()})
  text = ", ".join(f"{f}x{h}x{w} (batch {n})" for f, h, w, n in shapes[:6])
  return text + (f" and {len(shapes) - 6} more" if len(shapes) > 6 else "")


def check_clips(config: ml_collections.ConfigDict, clips: list[Clip]) -> tuple[int, set[int]]:
  """Start-up checks, each one line, before anything compiles: no clip fitting any bucket,
  no bucket with enough clips for one batch, and every file missing are ManifestErrors;
  some clips unfit, some buckets too small, captions missing, some files missing are
  warnings. Returns (unfit clips, indices of clips whose file is missing or empty)."""
  where = f"data.manifest={config.data.manifest!r}" if config.data.source == "videos" else (
      f"data.tfds.name={config.data.tfds.name!r}")
  stages = bucket_stages(config)
  unfit = sum(not any(spec.fits(c.num_frames, c.height, c.width) for _, spec in stages)
              for c in clips)
  if unfit == len(clips):
    frames = sorted(c.num_frames for c in clips)
    side = sorted(min(c.height, c.width) for c in clips)
    raise ManifestError(
        f"{where}: none of its {len(clips)} clips fits a bucket ({describe_buckets(config)}; "
        f"clips have {frames[0]}-{frames[-1]} frames, short side {side[0]}-{side[-1]} px, and "
        f"are never upscaled): lower data.num_frames/height/width or set data.buckets.spec")
  if unfit:
    warn_line(f"{unfit} of {len(clips)} clips fit no bucket (shorter or smaller than "
                  f"every data.buckets entry) and are never drawn")
  for start, spec in stages:
    counts: dict = {}
    for c in clips:
      bucket = spec.assign(c.num_frames, c.height, c.width, buckets_lib._KEEP_ALL)
      if bucket is not None:
        counts[bucket] = counts.get(bucket, 0) + 1
    short = {k: n for k, n in counts.items() if n < k.batch_size}
    message = ", ".join(f"{k.frames}x{k.height}x{k.width} has {n} clips for batch "
                        f"{k.batch_size}" for k, n in sorted(short.items())[:4])
    stage = f" (stage from step {start})" if len(stages) > 1 else ""
    if len(short) == len(counts):
      raise ManifestError(f"{where}: too few clips for one batch{stage}: {message}; lower the "
                          f"batch size (train.batch_size or data.buckets.spec BATCH) or add "
                          f"clips")
    if short:
      warn_line(f"buckets with too few clips for one batch are never drawn{stage}: "
                    f"{message}")
  uncaptioned = sum(not c.text.strip() for c in clips)
  if uncaptioned:
    warn_line(f"{where}: {uncaptioned} of {len(clips)} clips have no caption (empty text) "
                  f"and train unconditioned")
  missing = set()
  if config.data.source == "videos":
    for i, c in enumerate(clips):
      try:
        if os.stat(c.path).st_size == 0:
          missing.add(i)
      except (OSError, ValueError):
        missing.add(i)
    if len(missing) == len(clips):
      raise ManifestError(f"{where}: none of its {len(clips)} clips' files exists or has "
                          f"bytes (e.g. {clips[0].path}; relative paths resolve against the "
                          f"manifest's folder)")
    if missing:
      warn_line(f"{where}: {len(missing)} of {len(clips)} clips' files are missing or empty "
                    f"(e.g. {clips[min(missing)].path}): never read")
  return unfit, missing


def batch_sizes(config: ml_collections.ConfigDict) -> list[int]:
  return sorted({bucket.batch_size for _, spec in bucket_stages(config)
                 for bucket in spec.buckets()})


class FileReader:
  """`(clip index, start, count, stride) → uint8 frames` from the manifest's files."""

  def __init__(self, clips: list[Clip]):
    self.paths = [clip.path for clip in clips]
    # A file whose header states more pixels than its row (and than the default limit) is
    # refused before decoding: the row is what prepare_data measured.
    self.max_pixels = [max(video_io.MAX_PIXELS, clip.height * clip.width) for clip in clips]

  def __call__(self, index: int, start: int, count: int, stride: int) -> np.ndarray:
    return video_io.read_frames(self.paths[index], start, count, stride,
                                self.max_pixels[index])


class UnreadableBucketError(ManifestError):
  """Every clip of a bucket is unreadable: the bucket cannot make a batch."""


class VideoBatches:
  """PlannedBatch → this process's rows as `{video, caption, skipped}` + text features.
  `reader` fetches a clip's frame window (video files, or a TFDS dataset)."""

  def __init__(self, clips: list[Clip], reader, frame_stride: int, text_features,
               recaptioner: Recaptioner, process_index: int, process_count: int,
               unfit: int = 0, bad_rows: int = 0):
    self.clips, self.reader, self.frame_stride = clips, reader, frame_stride
    # Reported with every batch: clips no bucket can take, malformed manifest rows.
    self.unfit, self.bad_rows = unfit, bad_rows
    self.text_features, self.recaptioner = text_features, recaptioner
    self.process_index, self.process_count = process_index, process_count
    # Clips (indices into `clips`) this process found unreadable: never read again. Shared by
    # Grain's reader threads; saved and restored with the iterator state.
    self.unreadable: set[int] = set()

  def _read(self, index: int, start: int, bucket: buckets_lib.Bucket) -> np.ndarray | None:
    """The clip's window at the bucket's shape, or None (and remembered) if unreadable."""
    if index in self.unreadable:
      return None
    try:
      frames = self.reader(index, start, bucket.frames, self.frame_stride)
    except video_io.VideoReadError as e:
      self.unreadable.add(index)
      _warn(f"{e} (remembered: not read again)")
      return None
    return frames_lib.cover_crop(frames, bucket.height, bucket.width)

  def _stand_in(self, planned: buckets_lib.PlannedBatch, used: set[int]
                ) -> tuple[int, np.ndarray]:
    """A readable clip of the batch's bucket (read from frame 0) for an unreadable row: the
    spares, then every clip of the bucket from a batch-dependent offset; clips the batch
    holds already only when no other is readable."""
    members = planned.members or planned.spares
    offset = sum(planned.clips) % max(len(members), 1)
    order = list(planned.spares) + list(members[offset:] + members[:offset])
    for allow_used in (False, True):
      for index in order:
        if allow_used or index not in used:
          video = self._read(index, 0, planned.bucket)
          if video is not None:
            return index, video
    bucket = planned.bucket
    example = self.clips[order[0]].path if order else "?"
    raise UnreadableBucketError(
        f"every one of the {len(set(order))} clips of bucket {bucket.frames} frames x "
        f"{bucket.height}x{bucket.width} is unreadable (e.g. {example}): fix or drop them in "
        f"data.manifest (videogen.prepare_data skips unreadable files)")

  def __call__(self, planned: buckets_lib.PlannedBatch) -> dict[str, np.ndarray]:
    bucket = planned.bucket
    rows = bucket.batch_size // self.process_count
    lo = self.process_index * rows
    mine = list(zip(planned.clips[lo:lo + rows], planned.starts[lo:lo + rows]))
    videos, captions, skipped = [], [], 0
    used = {index for index, _ in mine}
    for index, start in mine:
      video = self._read(index, start, bucket)
      if video is None:
        skipped += 1
        index, video = self._stand_in(planned, used)
        used.add(index)
      videos.append(video)
      clip = self.clips[index]
      captions.append(self.recaptioner(clip.path, clip.text))
    batch = {"video": frames_lib.from_uint8(np.stack(videos)),
             "caption": np.array(captions), "skipped": np.array(skipped),
             "unreadable": np.array(len(self.unreadable)),
             "unfit": np.array(self.unfit), "bad_rows": np.array(self.bad_rows)}
    if self.text_features is not None:
      batch.update(self.text_features(captions))
    return batch


def planned_batches(config: ml_collections.ConfigDict, clips: list[Clip]
                    ) -> buckets_lib.BucketedBatches:
  shapes = np.array([(c.num_frames, c.height, c.width) for c in clips], np.int64)
  return buckets_lib.BucketedBatches(shapes, bucket_stages(config), config.data.seed)
