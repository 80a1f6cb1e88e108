"""Pre-computed text-encoder outputs, keyed by caption (`python -m videogen.encode_text`).

A frozen T5-XXL costs as much per step as a small DiT; encoding every caption once and
reading the result back (`text.embeddings_path`) removes it from training. The cache is keyed
by caption text, so any source (synthetic clips, pre-encoded latents, video manifests) can
look its captions up, and repeated captions are stored once.

Layout: ArrayRecord shards of `.npz` records `{caption, embedding (n_valid, D)}` (read with
`allow_pickle=False`), `index.npz` (sorted 64-bit caption hashes → record ids) and
`info.json`, which records the fingerprint of the tokenizer and encoder that wrote it. A cache
whose fingerprint differs from the training config is refused: stale embeddings would
silently condition the model on the wrong text.
"""
import hashlib
import os

import grain
import numpy as np

from videogen.records import decode_record, shard_paths, write_info, write_shard
from videogen.records import read_info as read_records_info

INDEX_FILE = "index.npz"
DTYPES = ("float32", "float16")


class MissingCaptionError(LookupError):
  """A caption the cache does not hold; printed as one line."""


def caption_hash(caption: str) -> np.uint64:
  return np.frombuffer(hashlib.blake2b(caption.encode(), digest_size=8).digest(), np.uint64)[0]


def write_cache(conditioning, captions, output: str, batch_size: int = 64,
                records_per_shard: int = 4096, dtype: str = "float32") -> int:
  """Encodes the distinct `captions` with `conditioning`'s frozen encoder into `output`;
  returns the number of records."""
  if conditioning.encoder is None:
    raise ValueError("text.encoder='embedding' is trained with the DiT; only a frozen encoder "
                     "(text.encoder='t5') can be cached")
  if dtype not in DTYPES:
    raise ValueError(f"dtype={dtype!r} is not one of {DTYPES}")
  unique = sorted(set(captions))
  hashes = np.array([caption_hash(c) for c in unique], np.uint64)
  if len(np.unique(hashes)) != len(unique):
    raise ValueError("two distinct captions share a 64-bit hash; please report this")
  os.makedirs(output)
  num_shards = max(1, -(-len(unique) // records_per_shard))
  for shard in range(num_shards):
    shard_captions = unique[shard * records_per_shard:(shard + 1) * records_per_shard]
    records = []
    for start in range(0, len(shard_captions), batch_size):
      batch = shard_captions[start:start + batch_size]
      states, mask = (np.asarray(a) for a in conditioning.encode(batch))
      records += [{"caption": np.str_(c), "embedding": states[i, :mask[i].sum()].astype(dtype)}
                  for i, c in enumerate(batch)]
    write_shard(os.path.join(output, f"text-{shard:05d}-of-{num_shards:05d}.array_record"),
                records)
  order = np.argsort(hashes)
  np.savez(os.path.join(output, INDEX_FILE), hashes=hashes[order], records=order)
  write_info(output, {"num_records": len(unique), "dim": conditioning.dim,
                                    "dtype": dtype, "fingerprint": conditioning.fingerprint()})
  return len(unique)


def read_info(path: str) -> dict:
  return read_records_info(path, "text.embeddings_path", "videogen.encode_text")


def check_fingerprint(path: str, expected: dict) -> None:
  """Raises ValueError naming the first setting in which the cache and config differ."""
  written = read_info(path)["fingerprint"]
  for key, value in expected.items():
    if written.get(key) != value:
      raise ValueError(f"text.embeddings_path={path!r} was written with {key}="
                       f"{written.get(key)!r} but the config has {value!r}; re-run "
                       f"`python -m videogen.encode_text`")


class TextEmbeddingCache:
  """Captions → `{text_embedding (N, L, D) f32, text_mask (N, L)}`, zero-padded to
  `max_length` exactly as the in-step encoder pads; picklable for Grain workers."""

  def __init__(self, path: str, max_length: int):
    info = read_info(path)
    self.path, self.max_length, self.dim = path, max_length, info["dim"]
    with np.load(os.path.join(path, INDEX_FILE), allow_pickle=False) as index:
      self.hashes, self.records = index["hashes"], index["records"]
    self.paths = shard_paths(path)
    self._source = None

  def __getstate__(self):
    return {**self.__dict__, "_source": None}

  def _record(self, caption: str) -> np.ndarray:
    h = caption_hash(caption)
    i = int(np.searchsorted(self.hashes, h))
    if i < len(self.hashes) and self.hashes[i] == h:
      record = decode_record(self._source[int(self.records[i])])
      if str(record["caption"]) == caption:
        return record["embedding"]
    raise MissingCaptionError(f"caption {caption!r} is not in text.embeddings_path="
                              f"{self.path!r}; re-run `python -m videogen.encode_text` over "
                              f"this data")

  def __call__(self, captions) -> dict[str, np.ndarray]:
    if self._source is None:
      self._source = grain.sources.ArrayRecordDataSource(self.paths)
    embedding = np.zeros((len(captions), self.max_length, self.dim), np.float32)
    mask = np.zeros((len(captions), self.max_length), bool)
    for row, caption in enumerate(captions):
      states = self._record(caption)
      embedding[row, :len(states)] = states
      mask[row, :len(states)] = True
    return {"text_embedding": embedding, "text_mask": mask}
