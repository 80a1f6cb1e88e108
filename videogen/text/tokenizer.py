"""Word-level caption tokenizer with T5 conventions (pad 0, eos 1, unk 2).

It covers the synthetic world's vocabulary; the sentencepiece/T5 tokenizer replaces it when
the text-encoder work lands, keeping `encode(captions) → (tokens, mask)`.
"""
import re
from typing import Sequence

import numpy as np

PAD, EOS, UNK = 0, 1, 2
_SPECIALS = ("<pad>", "</s>", "<unk>")


class WordTokenizer:

  def __init__(self, words: Sequence[str], max_length: int):
    self.vocab = list(_SPECIALS) + sorted(set(w.lower() for w in words))
    self.ids = {w: i for i, w in enumerate(self.vocab)}
    self.max_length = max_length

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  def encode(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Captions → `(tokens, mask)`, both `(N, max_length)`; "" encodes to just EOS (the null
    caption used for classifier-free guidance). Long captions are truncated, keeping EOS."""
    tokens = np.full((len(captions), self.max_length), PAD, np.int32)
    for row, caption in enumerate(captions):
      ids = [self.ids.get(w, UNK) for w in re.findall(r"[a-z0-9]+", caption.lower())]
      ids = ids[:self.max_length - 1] + [EOS]
      tokens[row, :len(ids)] = ids
    return tokens, tokens != PAD

  def decode(self, tokens: Sequence[int]) -> str:
    return " ".join(self.vocab[i] for i in tokens if i not in (PAD, EOS))
