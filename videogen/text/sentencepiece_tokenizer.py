"""SentencePiece caption tokenizer with T5 conventions (pad 0, eos 1, unk 2).

A drop-in for `WordTokenizer` (`encode(captions) → (tokens, mask)`) that loads any T5-style
`spiece.model`, or trains a small one in-process so runs on synthetic data need no download.
The model is pickled as bytes, not a path, so Grain worker processes need no shared filesystem.
"""
import hashlib
import io
import os
from typing import Callable, Iterable, Sequence

import numpy as np
import sentencepiece as spm

from videogen import workdir as workdir_lib
from videogen.text.tokenizer import EOS, PAD, UNK, pad_and_truncate

MODEL_FILENAME = workdir_lib.TOKENIZER_FILE


def _load(model_proto: bytes, source: str) -> spm.SentencePieceProcessor:
  """Parses a serialized model and checks its special ids match T5's (pad 0, eos 1, unk 2)."""
  try:
    sp = spm.SentencePieceProcessor(model_proto=model_proto)
  except Exception as e:  # sentencepiece raises RuntimeError/OSError on a bad proto
    raise ValueError(f"{source} is not a sentencepiece model: {e}") from e
  ids = (sp.pad_id(), sp.eos_id(), sp.unk_id())
  if ids != (PAD, EOS, UNK):
    raise ValueError(f"{source}: special ids (pad, eos, unk) are {ids}; T5 convention needs "
                     f"{(PAD, EOS, UNK)}")
  return sp


class SentencePieceTokenizer:

  def __init__(self, model_path: str, max_length: int):
    if max_length < 1:
      raise ValueError(f"max_length must be >= 1 (room for EOS), got {max_length}")
    model_file = workdir_lib.path(model_path)
    if not model_file.is_file():
      raise FileNotFoundError(f"sentencepiece model not found: {model_path}")
    self._model_proto = model_file.read_bytes()
    self._sp = _load(self._model_proto, model_path)
    self.max_length = max_length

  # Pickle the model bytes (SentencePieceProcessor itself is a SWIG object, and a path may not
  # exist on the worker), then rebuild the processor on the other side.
  def __getstate__(self):
    return {"model_proto": self._model_proto, "max_length": self.max_length}

  def __setstate__(self, state):
    self._model_proto = state["model_proto"]
    self.max_length = state["max_length"]
    self._sp = _load(self._model_proto, "pickled sentencepiece model")

  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  @property
  def fingerprint(self) -> str:
    """Identifies the token ids this tokenizer produces (for embedding caches)."""
    return "sentencepiece:" + hashlib.sha256(self._model_proto).hexdigest()[:16]

  def encode(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Captions → `(tokens, mask)`, both `(N, max_length)`; "" encodes to just EOS (the null
    caption used for classifier-free guidance). Long captions are truncated, keeping EOS."""
    pieces = self._sp.encode(list(captions), out_type=int) if len(captions) else []
    return pad_and_truncate(pieces, self.max_length)

  def decode(self, tokens: Sequence[int]) -> str:
    """Ids → text, skipping pad/EOS so a padded row from `encode` decodes cleanly."""
    return self._sp.decode([int(i) for i in tokens if int(i) not in (PAD, EOS)])

  def unknown(self, captions: Sequence[str]) -> list[str]:
    """The words of `captions` with pieces that encode as <unk>, each once, written as
    `word (piece 'x', ...)`."""
    words = list(dict.fromkeys(w for c in captions for w in c.split()))
    if not words:
      return []
    found = []
    for word, ids, pieces in zip(words, self._sp.encode(words),
                                 self._sp.encode(words, out_type=str)):
      unknown = [piece for i, piece in zip(ids, pieces) if i == UNK]
      if unknown:
        found.append(f"{word} (piece {', '.join(map(repr, unknown))})")
    return found


def train_sentencepiece(sentences: Iterable[str], output_path: str, vocab_size: int = 256) -> str:
  """Trains a BPE model with T5 special ids and writes it to `output_path`.

  BPE, not T5's unigram: on a small caption corpus (the synthetic world has ~100 distinct
  captions) the unigram trainer stops at ~35 character-level pieces, so a 5-word caption
  takes 21 tokens and is truncated; BPE learns the whole words.

  `hard_vocab_limit=False` lets a small corpus yield fewer pieces than `vocab_size` instead of
  failing, so one default works for any caption set."""
  buffer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=buffer, vocab_size=vocab_size,
      pad_id=PAD, eos_id=EOS, unk_id=UNK, bos_id=-1, hard_vocab_limit=False,
      model_type="bpe", minloglevel=2)
  with open(output_path, "wb") as f:
    f.write(buffer.getvalue())
  return output_path


def cached_tokenizer(workdir: str, sentences_fn: Callable[[], Iterable[str]], max_length: int,
                     vocab_size: int = 256) -> SentencePieceTokenizer:
  """Loads `workdir/spiece.model`, training it from `sentences_fn()` first if absent.

  The model is written once (a temp file renamed into place, so a crash never leaves a
  half-written model; a bucket object is whole when it appears) and reused on resume: token
  ids, hence the checkpoint's embeddings, stay valid. `workdir` may be a bucket path."""
  path = workdir_lib.tokenizer_file(workdir)
  if not path.exists():
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{path.name}.{os.getpid()}.tmp"
    with workdir_lib.local_target(tmp) as local:
      train_sentencepiece(sentences_fn(), local, vocab_size)
    tmp.replace(path)
  return SentencePieceTokenizer(path, max_length)
