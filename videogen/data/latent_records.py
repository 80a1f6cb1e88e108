"""Pre-encoded training examples in ArrayRecord: VAE posterior moments plus the caption.

Written by `python -m videogen.encode_dataset`, read by the `latents` data source. Record i
is clip i of the source dataset, so a latent run visits the same clips in the same order as
the pixel run it replaces. Each record is an `.npz` archive of plain arrays, read with
`allow_pickle=False`: a record is data, never code.
"""
import glob
import io
import json
import os

import grain
import numpy as np

INFO_FILE = "info.json"


def encode_record(arrays: dict[str, np.ndarray]) -> bytes:
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def decode_record(record: bytes) -> dict[str, np.ndarray]:
  with np.load(io.BytesIO(record), allow_pickle=False) as archive:
    return {name: archive[name] for name in archive.files}


def write_shard(path: str, records: list[dict[str, np.ndarray]]) -> None:
  from array_record.python.array_record_module import ArrayRecordWriter
  writer = ArrayRecordWriter(path, "group_size:1")
  for arrays in records:
    writer.write(encode_record(arrays))
  writer.close()


def write_info(directory: str, info: dict) -> None:
  with open(os.path.join(directory, INFO_FILE), "w") as f:
    json.dump(info, f, indent=2)


def read_info(directory: str, key: str = "data.latents_path",
              writer: str = "videogen.encode_dataset") -> dict:
  """`info.json` of a records directory; its absence names the config key and the writer."""
  path = os.path.join(directory, INFO_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{key}={directory!r} has no {INFO_FILE} "
                            f"(write it with `python -m {writer}`)")
  with open(path) as f:
    return json.load(f)


def shard_paths(directory: str) -> list[str]:
  return sorted(glob.glob(os.path.join(directory, "*.array_record")))


def encode_dataset(config, output: str, num_clips: int, batch_size: int = 8,
                   records_per_shard: int = 4096) -> None:
  """Encodes clips 0..num_clips-1 of `config.data` with the VAE at `config.vae.checkpoint`
  into ArrayRecord shards of {latent_moments, caption} under `output` (captions after
  recaptioning; the reader turns them into the run's text features)."""
  from videogen.data import pipeline
  from videogen.parallel import mesh as mesh_lib
  from videogen.vae.latents import FrozenVae

  mesh = mesh_lib.create_mesh(config.mesh)
  vae = FrozenVae.load(config.vae.checkpoint, mesh, mesh_lib.rules_from_config(config.mesh))
  examples = pipeline.SyntheticExamples(pipeline.world_from_config(config.data), config.data.seed,
                                        recaptioner=pipeline.recaptioner_from_config(config))
  os.makedirs(output)
  num_shards = -(-num_clips // records_per_shard)
  for shard in range(num_shards):
    records = []
    for start in range(shard * records_per_shard,
                       min(num_clips, (shard + 1) * records_per_shard), batch_size):
      indices = np.arange(start, min(start + batch_size, num_clips,
                                     (shard + 1) * records_per_shard))
      batch = examples(indices)
      moments = vae.encode_moments(batch["video"])
      records += [{"latent_moments": moments[i], "caption": batch["caption"][i]}
                  for i in range(len(indices))]
    write_shard(
        os.path.join(output, f"latents-{shard:05d}-of-{num_shards:05d}.array_record"), records)
  write_info(output, {
      "num_records": num_clips, "vae_checkpoint": config.vae.checkpoint,
      "clip_shape": [config.data.num_frames, config.data.height, config.data.width],
      "moments_shape": list(moments.shape[1:])})


class LatentExamples:
  """Index batch → stacked `latent_moments` and `caption`, plus `text_features(captions)`
  (picklable for Grain)."""

  def __init__(self, directory: str, text_features=None):
    self.paths = shard_paths(directory)
    self.text_features = text_features
    self._source = None

  def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    if self._source is None:
      self._source = grain.sources.ArrayRecordDataSource(self.paths)
    rows = [decode_record(self._source[int(i)]) for i in indices]
    batch = {name: np.stack([row[name] for row in rows]) for name in rows[0]}
    if self.text_features is not None:
      batch.update(self.text_features([str(c) for c in batch["caption"]]))
    return batch

  def __getstate__(self):
    return {**self.__dict__, "_source": None}
