"""Pre-encoded training examples in ArrayRecord: VAE posterior moments plus the caption.

Written by `python -m videogen.encode_dataset` (data/encode_latents.py), read by the
`latents` data source. Record i is clip i of the source dataset, so a latent run visits the
same clips in the same order as the pixel run it replaces. The record format is
videogen/records.py.
"""
import grain
import numpy as np

from videogen.records import decode_record, read_info, shard_paths  # noqa: F401

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
