"""The `videos` source: manifest clips → bucketed batches of decoded, resized frames.

Global batch k is planned by `buckets.BucketedBatches` (one shape per batch); this process
decodes only its rows, seeking to each clip's window (`video_io.read_frames`), resizing so
the bucket is covered and centre-cropping. An unreadable clip (corrupt, truncated, shorter
than its manifest row says) is replaced by a spare clip of the same bucket and counted in the
batch's `skipped`; the loop logs the running total as `data_skipped`.
"""
import warnings

import ml_collections
import numpy as np
from PIL import Image

from videogen import video_io
from videogen.data import buckets as buckets_lib
from videogen.data.manifest import Clip, ManifestError, passes, read_manifest
from videogen.data.recaption import Recaptioner

# Warn for the first few unreadable clips, then for every 1000th: never a flood.
_WARN_FIRST, _WARN_EVERY = 20, 1000
_warned = [0]


def _warn(message: str) -> None:
  _warned[0] += 1
  if _warned[0] <= _WARN_FIRST or _warned[0] % _WARN_EVERY == 0:
    warnings.warn(f"skipped clip #{_warned[0]}: {message}", stacklevel=3)


def resize_and_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 `(T, h, w, 3)` → `(T, height, width, 3)`: scale to cover, then centre-crop."""
  _, h, w, _ = frames.shape
  scale = max(height / h, width / w)
  new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
  top, left = (new_h - height) // 2, (new_w - width) // 2
  out = np.empty((len(frames), height, width, 3), np.uint8)
  for i, frame in enumerate(frames):
    resized = np.asarray(Image.fromarray(frame).resize((new_w, new_h), Image.BICUBIC))
    out[i] = resized[top:top + height, left:left + width]
  return out


def clips_and_reader(data: ml_collections.ConfigDict) -> tuple[list[Clip], object, int]:
  """The source's clips that pass `data.filters` (with their original indices kept for the
  reader), the frame reader, and the number of malformed rows skipped; no usable clip is a
  ManifestError."""
  if data.source == "tfds":
    from videogen.data import tfds_source
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
  """`((start_step, BucketSpec), …)` from `train.stages`, or one stage of `data.buckets`."""
  b = config.data.buckets

  def spec(sizes):
    return buckets_lib.BucketSpec.from_config(sizes, b.aspect_ratios, b.multiple, b.frame_stride)

  stages = tuple(config.train.stages) or ((0, b.sizes),)
  if stages[0][0] > 1:
    raise ValueError(f"train.stages must start at step 0 or 1, not {stages[0][0]}")
  return tuple((int(start), spec(sizes)) for start, sizes in stages)


def count_unfit(config: ml_collections.ConfigDict, clips: list[Clip]) -> int:
  """Clips shorter or smaller than every bucket of every stage: never drawn."""
  specs = [spec for _, spec in bucket_stages(config)]
  unfit = sum(not any(spec.fits(c.num_frames, c.height, c.width) for spec in specs)
              for c in clips)
  if unfit:
    warnings.warn(f"{unfit} of {len(clips)} clips fit no bucket (shorter or smaller than "
                  f"every data.buckets entry) and are never drawn", stacklevel=2)
  return unfit


def batch_sizes(config: ml_collections.ConfigDict) -> list[int]:
  return sorted({bucket.batch_size for _, spec in bucket_stages(config)
                 for bucket in spec.buckets()})


class FileReader:
  """`(clip index, start, count, stride) → uint8 frames` from the manifest's files."""

  def __init__(self, clips: list[Clip]):
    self.paths = [clip.path for clip in clips]

  def __call__(self, index: int, start: int, count: int, stride: int) -> np.ndarray:
    return video_io.read_frames(self.paths[index], start, count, stride)


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

  def _read(self, index: int, start: int, bucket: buckets_lib.Bucket) -> np.ndarray:
    frames = self.reader(index, start, bucket.frames, self.frame_stride)
    return resize_and_crop(frames, bucket.height, bucket.width)

  def __call__(self, planned: buckets_lib.PlannedBatch) -> dict[str, np.ndarray]:
    bucket = planned.bucket
    rows = bucket.batch_size // self.process_count
    lo = self.process_index * rows
    spares = list(planned.spares)
    videos, captions, skipped = [], [], 0
    for index, start in zip(planned.clips[lo:lo + rows], planned.starts[lo:lo + rows]):
      while True:
        try:
          videos.append(self._read(index, start, bucket))
          break
        except video_io.VideoReadError as e:
          skipped += 1
          _warn(str(e))
          if not spares:
            raise video_io.VideoReadError(f"every spare clip of bucket {bucket.shape} is "
                                          f"unreadable; last: {e}") from None
          index, start = spares.pop(0), 0
      clip = self.clips[index]
      captions.append(self.recaptioner(clip.path, clip.text))
    batch = {"video": np.stack(videos).astype(np.float32) / 127.5 - 1.0,
             "caption": np.array(captions), "skipped": np.array(skipped),
             "unfit": np.array(self.unfit), "bad_rows": np.array(self.bad_rows)}
    if self.text_features is not None:
      batch.update(self.text_features(captions))
    return batch


def planned_batches(config: ml_collections.ConfigDict, clips: list[Clip]
                    ) -> buckets_lib.BucketedBatches:
  shapes = np.array([(c.num_frames, c.height, c.width) for c in clips], np.int64)
  return buckets_lib.BucketedBatches(shapes, bucket_stages(config), config.data.seed)
