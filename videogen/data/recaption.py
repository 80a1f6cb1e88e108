"""Recaptioning: replace or augment source captions with better ones (`data.recaption`).

Open-Sora and CogVideoX retrain on captions written by a vision-language model. The VLM is
yours; this hook takes its output either as a sidecar file written beforehand or as a Python
callable run inside data preparation:

    path      JSONL (`{"index": 7, "text": "..."}` per line) or CSV (`index,text` header);
              the key column is `index` (synthetic / latents sources: the clip index) or
              `path` (video files). Clips without an entry keep their caption.
    callable  "package.module:function", called as `function(caption, key) -> str`; the
              module must be importable where the data pipeline runs.
    mode      "replace": always the new caption; "augment": per clip, the new caption with
              probability `prob`, else the original (a seeded coin, the same on every host),
              so training sees both.

The sidecar is data (parsed as JSON/CSV, never evaluated); the callable is code the user
named in their own config.
"""
import hashlib
import importlib
import os

import ml_collections
import numpy as np

from videogen.data.manifest import ManifestError, read_rows

MODES = ("replace", "augment")
KEY_COLUMNS = ("index", "path", "key")


class RecaptionError(ValueError):
  """A bad `data.recaption` setting or sidecar file; printed as one line."""


def read_sidecar(path: str) -> dict[str, str]:
  """A JSONL or CSV sidecar → {key: caption}."""
  if not os.path.isfile(path):
    raise RecaptionError(f"data.recaption.path={path!r} does not exist")
  try:
    rows = read_rows(path)
  except ManifestError:
    raise RecaptionError(f"data.recaption.path={path!r}: want a .jsonl or .csv file") from None
  table = {}
  for number, row in enumerate(rows, 1):
    key = next((row[k] for k in KEY_COLUMNS if k in row), None)
    if "_bad" in row or key is None or not isinstance(row.get("text"), str):
      raise RecaptionError(f"{path}: row {number} needs a 'text' and one of {KEY_COLUMNS}")
    table[str(key)] = row["text"]
  return table


def load_callable(spec: str):
  module_name, _, function_name = spec.partition(":")
  try:
    function = getattr(importlib.import_module(module_name), function_name)
  except (ImportError, AttributeError, ValueError) as e:
    raise RecaptionError(f"data.recaption.callable={spec!r} cannot be loaded: {e}") from None
  if not callable(function):
    raise RecaptionError(f"data.recaption.callable={spec!r} is not callable")
  return function


class Recaptioner:
  """`(key, caption) → caption` for one config; picklable (Grain workers rebuild the
  callable by name)."""

  def __init__(self, recaption: ml_collections.ConfigDict, seed: int):
    if recaption.path and recaption.callable:
      raise RecaptionError("set one of data.recaption.path and data.recaption.callable")
    if recaption.mode not in MODES:
      raise RecaptionError(f"data.recaption.mode={recaption.mode!r} is not one of {MODES}")
    if not 0.0 <= recaption.prob <= 1.0:
      raise RecaptionError(f"data.recaption.prob={recaption.prob} is not in [0, 1]")
    self.table = read_sidecar(recaption.path) if recaption.path else None
    self.callable_spec = recaption.callable
    self.mode, self.prob, self.seed = recaption.mode, recaption.prob, seed
    self._function = load_callable(self.callable_spec) if self.callable_spec else None

  @property
  def active(self) -> bool:
    return self.table is not None or bool(self.callable_spec)

  def __getstate__(self):
    return {**self.__dict__, "_function": None}

  def __setstate__(self, state):
    self.__dict__.update(state)
    if self.callable_spec:
      self._function = load_callable(self.callable_spec)

  def __call__(self, key: str, caption: str) -> str:
    if not self.active:
      return caption
    if self.mode == "augment":
      coin = np.random.default_rng([self.seed, _stable_hash(key)]).random()
      if coin >= self.prob:
        return caption
    if self.table is not None:
      return self.table.get(key, caption)
    new = self._function(caption, key)
    if not isinstance(new, str):
      raise RecaptionError(f"data.recaption.callable returned {type(new).__name__} for "
                           f"{key!r}, not a caption string")
    return new


def _stable_hash(key: str) -> int:
  """A process-independent integer for a key (Python's `hash` is salted per process)."""
  return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
