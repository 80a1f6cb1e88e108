"""CLIP's byte-level BPE tokenizer, read from an HF folder's `vocab.json` + `merges.txt`.

It produces the ids of `transformers.CLIPTokenizer` (the `tokenizers`-backed one of
transformers 5) without importing transformers, `regex` or `ftfy`:
  1. special tokens written in the text (`<|startoftext|>`, `<|endoftext|>`, the pad token)
     are split out first as those tokens: so with pad `!`, as HF does, every `!` in a caption
     is the pad id, not BPE's `!</w>`;
  2. the rest is NFC-normalised and lower-cased character by character (as Rust's
     `char::to_lowercase`: a final capital sigma becomes σ, not Python's contextual ς);
  3. it splits into CLIP's pieces, the regex
     `'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+` written as a scan over
     Unicode categories (whitespace only separates, so collapsing it changes nothing);
  4. each piece becomes GPT-2's printable byte characters with `</w>` on the last one, merged
     pair by pair in `merges.txt` rank order; a symbol outside the vocabulary is the unknown
     token (`<|endoftext|>`);
  5. `<|startoftext|> ids <|endoftext|>` is truncated to `max_length` (keeping the end
     token) and padded with the pad token (`<|endoftext|>` for OpenAI's checkpoints, `!` for
     some others: read from `special_tokens_map.json` / `tokenizer_config.json`).
"""
import json
import os
import re
import unicodedata
from typing import Sequence

import numpy as np

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
# Python's str.isspace also counts the information separators U+001C..U+001F; `\s` does not.
_NOT_SPACE = frozenset("\x1c\x1d\x1e\x1f")


def bytes_to_unicode() -> dict[int, str]:
  """GPT-2's byte → printable character table (printable Latin-1 bytes map to themselves)."""
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
               + list(range(ord("®"), ord("ÿ") + 1)))
  table, extra = {}, 0
  for b in range(256):
    if b in printable:
      table[b] = chr(b)
    else:
      table[b] = chr(256 + extra)
      extra += 1
  return table


def _kind(ch: str) -> str:
  """' ' whitespace, 'L' letter, 'N' number, 'P' anything else."""
  if ch.isspace() and ch not in _NOT_SPACE:
    return " "
  major = unicodedata.category(ch)[0]
  return major if major in "LN" else "P"


def normalize(text: str) -> str:
  return "".join(c.lower() for c in unicodedata.normalize("NFC", text))


def pre_tokenize(text: str) -> list[str]:
  """Normalised text → CLIP's pieces: contractions, letter runs, single digits, runs of other
  non-space characters (the regex's alternatives, tried in its order at each position)."""
  pieces, i = [], 0
  while i < len(text):
    kind = _kind(text[i])
    if kind == " ":
      i += 1
      continue
    contraction = next((c for c in CONTRACTIONS if text.startswith(c, i)), None)
    if contraction or kind == "N":
      end = i + len(contraction or text[i])
    else:
      end = i + 1
      while end < len(text) and _kind(text[end]) == kind:
        end += 1
    pieces.append(text[i:end])
    i = end
  return pieces


def read_merges(path: str) -> list[tuple[str, str]]:
  with open(path, encoding="utf-8") as f:
    lines = [line.rstrip("\n") for line in f]
  return [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]


def _pad_token(folder: str) -> str:
  for name in ("special_tokens_map.json", "tokenizer_config.json"):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      with open(path, encoding="utf-8") as f:
        pad = json.load(f).get("pad_token")
      if pad:
        return pad["content"] if isinstance(pad, dict) else pad
  return EOS


class ClipTokenizer:
  """`encode(captions) → (tokens, mask)`, both `(N, max_length)`, as the other tokenizers."""

  def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]],
               max_length: int = 77, pad_token: str = EOS):
    for token in (BOS, EOS, pad_token):
      if token not in vocab:
        raise ValueError(f"CLIP vocabulary lacks {token!r}")
    if max_length < 2:
      raise ValueError(f"max_length must be >= 2 (start and end tokens), got {max_length}")
    self.vocab = vocab
    self.ranks = {tuple(pair): rank for rank, pair in enumerate(merges)}
    self.max_length = max_length
    self.bos, self.eos, self.pad = vocab[BOS], vocab[EOS], vocab[pad_token]
    self._byte_chars = bytes_to_unicode()
    self._specials = {t: vocab[t] for t in (BOS, EOS, pad_token)}
    self._special_split = re.compile(
        "(" + "|".join(re.escape(t) for t in sorted(self._specials, key=len, reverse=True)) + ")")
    self._cache: dict[str, list[int]] = {}

  @classmethod
  def load(cls, folder, max_length: int = 77) -> "ClipTokenizer":
    """An HF CLIP folder's (or its `tokenizer/` subfolder's) `vocab.json` + `merges.txt`."""
    folder = os.fspath(folder)
    if not os.path.isfile(os.path.join(folder, "vocab.json")) and os.path.isfile(
        os.path.join(folder, "tokenizer", "vocab.json")):
      folder = os.path.join(folder, "tokenizer")
    paths = [os.path.join(folder, n) for n in ("vocab.json", "merges.txt")]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
      raise FileNotFoundError(f"CLIP tokenizer files missing: {', '.join(missing)} (an HF CLIP "
                              f"folder holds vocab.json and merges.txt)")
    with open(paths[0], encoding="utf-8") as f:
      vocab = json.load(f)
    return cls(vocab, read_merges(paths[1]), max_length, _pad_token(folder))

  def _bpe(self, piece: str) -> list[int]:
    if piece in self._cache:
      return self._cache[piece]
    word = [self._byte_chars[b] for b in piece.encode("utf-8")]
    word[-1] += "</w>"
    while len(word) > 1:
      pairs = list(zip(word, word[1:]))
      best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
      if best not in self.ranks:
        break
      merged, i = [], 0
      while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == best:
          merged.append(word[i] + word[i + 1])
          i += 2
        else:
          merged.append(word[i])
          i += 1
      word = merged
    ids = [self.vocab.get(symbol, self.eos) for symbol in word]  # unknown → <|endoftext|>
    self._cache[piece] = ids
    return ids

  def ids(self, text: str) -> list[int]:
    """One caption's ids, without the start/end tokens."""
    out = []
    for part in self._special_split.split(text):
      if part in self._specials:
        out.append(self._specials[part])
      else:
        for piece in pre_tokenize(normalize(part)):
          out.extend(self._bpe(piece))
    return out

  def encode(self, captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Captions → `(tokens int32, mask bool)`, both `(N, max_length)`: start token, at most
    `max_length - 2` caption ids, end token, then padding (mask False)."""
    tokens = np.full((len(captions), self.max_length), self.pad, np.int32)
    mask = np.zeros((len(captions), self.max_length), bool)
    for row, caption in enumerate(captions):
      ids = [self.bos] + self.ids(caption)[:self.max_length - 2] + [self.eos]
      tokens[row, :len(ids)] = ids
      mask[row, :len(ids)] = True
    return tokens, mask
