"""The on-disk format of the caches (`videogen.encode_dataset` latents, `videogen.encode_text`
text states): ArrayRecord shards of `.npz` records, read with `allow_pickle=False` (a record is
data, never code), plus an `info.json`. A shared leaf: data/latent_records.py and
text/embedding_cache.py both read and write it."""
import glob
import io
import json
import os

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

INFO_FILE = "info.json"


def encode_record(arrays: dict[str, np.ndarray]) -> bytes:
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue()


def decode_record(record: bytes) -> dict[str, np.ndarray]:
  with np.load(io.BytesIO(record), allow_pickle=False) as archive:
    return {name: archive[name] for name in archive.files}


def write_shard(path: str, records: list[dict[str, np.ndarray]]) -> None:
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
