"""Assembles the Grain input pipeline from config and puts batches on the mesh.

clip indices → seeded shuffle → repeat → global index batches → this process's rows
→ decode/render + tokenize + stack → threaded prefetch.
Sharding at the index level means the global batch at step k is the same clips in the same
order whatever the process count, and each host only decodes its own rows.
Batches are dicts of host numpy arrays:
`video` `(B, T, H, W, 3)` float32 in [-1, 1] (or, from the `latents` source, VAE
`latent_moments`), plus what the task's text features make of the captions: `tokens` and
`token_mask` `(B, L)`, or cached encoder states `text_embedding` `(B, L, D)` and `text_mask`.
Captions pass through the recaptioning hook (`data.recaption`) first.
The clip shape comes from config (or, later, the bucket), never from the code.
"""
import dataclasses
import os

import grain
import jax
import ml_collections
import numpy as np

from videogen.config import ConfigError, check_choice
from videogen.data import frames as frames_lib, latent_records, synthetic, videos
from videogen.models.camera_paths import synthetic_cameras
from videogen.data.recaption import MODES as RECAPTION_MODES, Recaptioner

SOURCES = ("synthetic", "latents", "videos", "tfds")
BUCKETED_SOURCES = ("videos", "tfds")  # real video, batched by shape bucket
# Batch fields that stay on the host: caption strings; counts of rows filled for unreadable
# clips, of the unreadable clips this process remembers, of clips no bucket takes and of
# malformed manifest rows.
HOST_KEYS = ("caption", "skipped", "unreadable", "unfit", "bad_rows")


def check_config(data: ml_collections.ConfigDict) -> None:
  """The `data` section: its source and recaption mode, the synthetic world's own checks, the
  manifest a video source reads; else one ConfigError line."""
  check_choice("data.recaption.mode", data.recaption.mode, RECAPTION_MODES)
  check_choice("data.source", data.source, SOURCES)
  if data.source == "synthetic":
    try:
      world_from_config(data)
    except ValueError as e:
      raise ConfigError(str(e)) from None
  if data.source == "videos" and not os.path.isfile(data.manifest):
    raise ConfigError(f"data.source='videos' needs data.manifest, a manifest file "
                      f"(videogen.prepare_data writes one); {data.manifest!r} does not exist")


def world_from_config(data: ml_collections.ConfigDict) -> synthetic.World:
  fields = {f.name for f in dataclasses.fields(synthetic.World)}
  overrides = {k: tuple(v) if isinstance(v, list) else v
               for k, v in data.synthetic.to_dict().items() if k in fields}
  return synthetic.World(num_frames=data.num_frames, height=data.height, width=data.width,
                         **overrides)


def recaptioner_from_config(config: ml_collections.ConfigDict) -> Recaptioner:
  return Recaptioner(config.data.recaption, config.data.seed)


class SyntheticExamples:
  """Index batch → `{video, caption}` plus `text_features(captions)`; picklable so Grain
  worker processes can run it."""

  def __init__(self, world: synthetic.World, seed: int, text_features=None,
               recaptioner: Recaptioner | None = None):
    self.world, self.seed = world, seed
    self.text_features, self.recaptioner = text_features, recaptioner

  def captions(self, indices) -> list[str]:
    """The clips' captions, drawn without rendering their pixels."""
    captions = [synthetic.draw_scene(self.world, self.seed, int(i)).caption for i in indices]
    return self._recaption(indices, captions)

  def _recaption(self, indices, captions):
    if self.recaptioner is None:
      return captions
    return [self.recaptioner(str(int(i)), c) for i, c in zip(indices, captions)]

  def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    clips = [synthetic.render_clip(self.world, self.seed, int(i)) for i in indices]
    captions = self._recaption(indices, [clip.caption for clip in clips])
    video = frames_lib.from_uint8(np.stack([clip.video for clip in clips]))
    batch = {"video": video, "caption": np.array(captions),
             "camera": np.stack([synthetic_cameras(clip.camera) for clip in clips])}
    if self.text_features is not None:
      batch.update(self.text_features(captions))
    return batch


def source_captions(config: ml_collections.ConfigDict, num_clips: int) -> list[str]:
  """The (recaptioned) captions of the source's first `num_clips` training clips."""
  examples = SyntheticExamples(world_from_config(config.data), config.data.seed,
                               recaptioner=recaptioner_from_config(config))
  return examples.captions(np.arange(num_clips))


# Held-out clips come from a seed the training stream never uses.
HELD_OUT_SEED_OFFSET = 1_000_003


def held_out_videos(config: ml_collections.ConfigDict, num_clips: int) -> np.ndarray:
  """`num_clips` evaluation clips `(N, T, H, W, 3)` in [-1, 1], disjoint from training."""
  examples = SyntheticExamples(world_from_config(config.data),
                               config.data.seed + HELD_OUT_SEED_OFFSET)
  return examples(np.arange(num_clips))["video"]


class ProcessRows:
  """Global index batch → the contiguous rows this process feeds to its devices."""

  def __init__(self, process_index: int, rows_per_process: int):
    self.start, self.stop = process_index * rows_per_process, (process_index + 1) * rows_per_process

  def __call__(self, global_indices: np.ndarray) -> np.ndarray:
    return global_indices[self.start:self.stop]


def _examples(config: ml_collections.ConfigDict, text_features):
  """(index batch → example batch, number of clips) for `data.source`."""
  data = config.data
  if data.source == "latents":
    info = latent_records.read_info(data.latents_path)
    return latent_records.LatentExamples(data.latents_path, text_features), info["num_records"]
  examples = SyntheticExamples(world_from_config(data), data.seed, text_features,
                               recaptioner_from_config(config))
  return examples, data.synthetic.num_clips


def make_dataset(config: ml_collections.ConfigDict, text_features=None,
                 process_index: int | None = None,
                 process_count: int | None = None) -> grain.IterDataset:
  """The training stream for this process: its rows of each global batch.
  `text_features(captions) → dict of arrays` is the task's (None: captions only)."""
  data = config.data
  if data.source not in SOURCES:
    raise ValueError(f"data.source={data.source!r}; available sources: {SOURCES}")
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if data.source not in BUCKETED_SOURCES and config.train.batch_size % process_count:
    raise ValueError(f"train.batch_size={config.train.batch_size} must divide evenly over "
                     f"{process_count} processes")
  read_options = grain.ReadOptions(num_threads=data.num_threads,
                                   prefetch_buffer_size=data.prefetch)
  if data.source in BUCKETED_SOURCES:
    return _video_dataset(config, text_features, process_index, process_count, read_options)
  examples, num_clips = _examples(config, text_features)
  dataset = (grain.MapDataset.range(num_clips)
             .seed(data.seed).shuffle().repeat()
             .batch(config.train.batch_size, drop_remainder=True)
             .map(ProcessRows(process_index, config.train.batch_size // process_count))
             .map(examples))
  return dataset.to_iter_dataset(read_options)


def _video_dataset(config, text_features, process_index, process_count, read_options):
  """Bucketed batches of real video (files or TFDS): global batch k → its plan → this
  process's rows."""
  for size in videos.batch_sizes(config):  # also checks the bucket spec (one line)
    if size % process_count:
      raise ValueError(f"bucket batch size {size} must divide evenly over {process_count} "
                       f"processes")
  clips, reader, bad_rows = videos.clips_and_reader(config.data)
  unfit, missing = videos.check_clips(config, clips)
  decode = videos.VideoBatches(clips, reader, config.data.buckets.frame_stride, text_features,
                               recaptioner_from_config(config), process_index, process_count,
                               unfit, bad_rows)
  decode.unreadable.update(missing)  # missing or empty files are never read
  # Batches are indexed by their global position, so the iterator state is that index plus
  # the clips this process found unreadable.
  dataset = (grain.MapDataset.range(2 ** 40)
             .map(videos.planned_batches(config, clips))
             .map(decode))
  return RememberingIterDataset(dataset.to_iter_dataset(read_options), decode, len(clips))


class RememberingIterDataset(grain.IterDataset):
  """Adds the unreadable clips `decode` (a `videos.VideoBatches`) remembers to the iterator
  state: `{"batches": <Grain's state>, "unreadable": [clip indices], "clips": N}`. A state
  saved for another clip count restores the position only (the indices would name other
  clips); a state without the key (older checkpoints) is Grain's own."""

  def __init__(self, parent: grain.IterDataset, decode, num_clips: int):
    super().__init__(parent)
    self.decode, self.num_clips = decode, num_clips

  def __iter__(self):
    return _RememberingIterator(self._parent.__iter__(), self.decode, self.num_clips)


class _RememberingIterator(grain.DatasetIterator):

  def __init__(self, parent, decode, num_clips: int):
    super().__init__(parent)
    self.decode, self.num_clips = decode, num_clips

  def __next__(self):
    return next(self._parent)

  def get_state(self) -> dict:
    return {"batches": self._parent.get_state(), "clips": self.num_clips,
            "unreadable": sorted(self.decode.unreadable)}

  def set_state(self, state: dict) -> None:
    if "batches" not in state:
      self._parent.set_state(state)
      return
    if state.get("clips") == self.num_clips:
      self.decode.unreadable.update(int(i) for i in state["unreadable"]
                                    if 0 <= int(i) < self.num_clips)
    self._parent.set_state(state["batches"])


def to_global_batch(local_batch: dict[str, np.ndarray], sharding) -> dict[str, jax.Array]:
  """Assembles each process's slice into one global array sharded along the batch axis
  (host-only fields such as the caption strings stay behind)."""
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()
          if k not in HOST_KEYS}
