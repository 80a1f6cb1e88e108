"""Word-level caption tokenizer with T5 conventions (pad 0, eos 1, unk 2), and the padding
and truncation rule every tokenizer shares.

It covers the synthetic world's vocabulary (`text.tokenizer="words"`); the sentencepiece
tokenizer has the same `encode(captions) → (tokens, mask)` interface.
"""
import hashlib
import re
import warnings
from typing import Sequence

import numpy as np

PAD, EOS, UNK = 0, 1, 2
_SPECIALS = ("<pad>", "</s>", "<unk>")


def pad_and_truncate(id_lists: Sequence[Sequence[int]], max_length: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Token-id lists → `(tokens, mask)`, both `(N, max_length)`: each list ends in EOS, is
  padded with PAD, and a longer one keeps its first `max_length - 1` ids (with a warning)."""
  tokens = np.full((len(id_lists), max_length), PAD, np.int32)
  for row, ids in enumerate(id_lists):
    if len(ids) >= max_length:
      # One warning per max_length (Python dedupes identical warnings), not one per caption.
      warnings.warn(f"a caption longer than text.max_length={max_length} tokens was "
                    f"truncated to its first {max_length - 1} tokens + EOS", stacklevel=3)
    ids = list(ids[:max_length - 1]) + [EOS]
    tokens[row, :len(ids)] = ids
  return tokens, tokens != PAD


class WordTokenizer:

  def __init__(self, words: Sequence[str], max_length: int):
    self.vocab = list(_SPECIALS) + sorted(set(w.lower() for w in words))
    self.ids = {w: i for i, w in enumerate(self.vocab)}
    self.max_length = max_length

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  @property
  def fingerprint(self) -> str:
    """Identifies the token ids this tokenizer produces (for embedding caches)."""
    return "words:" + hashlib.sha256(" ".join(self.vocab).encode()).hexdigest()[:16]

  def encode(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Captions → `(tokens, mask)`, both `(N, max_length)`; "" encodes to just EOS (the null
    caption used for classifier-free guidance). Long captions are truncated, keeping EOS."""
    return pad_and_truncate([[self.ids.get(w, UNK) for w in re.findall(r"[a-z0-9]+", c.lower())]
                             for c in captions], self.max_length)

  def decode(self, tokens: Sequence[int]) -> str:
    return " ".join(self.vocab[i] for i in tokens if i not in (PAD, EOS))

  def unknown(self, captions: Sequence[str]) -> list[str]:
    """The words of `captions` that encode as <unk>, each once, in order of appearance."""
    words = (w for c in captions for w in re.findall(r"[a-z0-9]+", c.lower()))
    return list(dict.fromkeys(w for w in words if w not in self.ids))


class TokenFeatures:
  """Captions → the batch's `tokens` and `token_mask` (picklable for Grain workers)."""

  def __init__(self, tokenizer):
    self.tokenizer = tokenizer

  def __call__(self, captions: Sequence[str]) -> dict[str, np.ndarray]:
    tokens, mask = self.tokenizer.encode(captions)
    return {"tokens": tokens, "token_mask": mask}
