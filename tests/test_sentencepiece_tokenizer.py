"""SentencePieceTokenizer: T5 conventions, truncation, pickling and the workdir cache."""
import io
import pickle

import numpy as np
import pytest
import sentencepiece as spm

from videogen.data import synthetic, synthetic_grammar
from videogen.text.sentencepiece_tokenizer import (EOS, PAD, SentencePieceTokenizer,
                                                   cached_tokenizer, train_sentencepiece)

MAX_LENGTH = 32


def _captions() -> list[str]:
  """Every synthetic caption form × colour × shape × direction (a few hundred sentences)."""
  return [form.format(colour=c, shape=s, direction=d, bounces=b)
          for form in synthetic.CAPTION_FORMS.values() for c in synthetic_grammar.COLOURS
          for s in synthetic_grammar.SHAPES for d in synthetic_grammar.DIRECTIONS
          for b in ("one", "two")]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  return train_sentencepiece(_captions(), str(tmp_path_factory.mktemp("spm") / "spiece.model"))


@pytest.fixture(scope="module")
def tok(model_path):
  return SentencePieceTokenizer(model_path, MAX_LENGTH)


def test_encode_shape_eos_and_padding(tok):
  tokens, mask = tok.encode(["a red circle moving left", "a blue square moves to the up"])
  assert tokens.shape == mask.shape == (2, MAX_LENGTH)
  assert tokens.dtype == np.int32 and mask.dtype == np.bool_
  assert 0 < tok.vocab_size <= 256 and tokens.max() < tok.vocab_size
  for row, m in zip(tokens, mask):
    n = int(m.sum())
    assert m[:n].all() and not m[n:].any()  # mask is a prefix of real tokens incl. EOS
    assert row[n - 1] == EOS and (row[:n - 1] != EOS).all() and (row[:n - 1] != PAD).all()
    assert (row[n:] == PAD).all()


def test_empty_caption_is_just_eos(tok):
  tokens, mask = tok.encode([""])
  assert tokens[0].tolist() == [EOS] + [PAD] * (MAX_LENGTH - 1)
  assert mask[0].tolist() == [True] + [False] * (MAX_LENGTH - 1)


def test_truncation_keeps_eos(model_path):
  short = SentencePieceTokenizer(model_path, 4)
  caption = "a red circle moving left bouncing two times " * 5
  tokens, mask = short.encode([caption])
  full, _ = SentencePieceTokenizer(model_path, 256).encode([caption])
  assert mask.all() and tokens[0, -1] == EOS
  assert tokens[0, :-1].tolist() == full[0, :3].tolist()


def test_decode_round_trip(tok):
  caption = "a purple triangle moving down bouncing two times"
  tokens, _ = tok.encode([caption])
  assert tok.decode(tokens[0]) == caption


def test_pickle_round_trip(tok):
  captions = ["a red circle moving left", "", "a cyan square moves to the right"]
  clone = pickle.loads(pickle.dumps(tok))
  assert clone.vocab_size == tok.vocab_size and clone.max_length == tok.max_length
  for a, b in zip(tok.encode(captions), clone.encode(captions)):
    np.testing.assert_array_equal(a, b)


def test_cached_tokenizer_trains_once(tmp_path):
  calls = []

  def sentences():
    calls.append(1)
    return _captions()

  def fail():
    raise AssertionError("cached model must be reused, not retrained")

  first = cached_tokenizer(str(tmp_path), sentences, MAX_LENGTH)
  second = cached_tokenizer(str(tmp_path), fail, MAX_LENGTH)
  assert calls == [1]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["spiece.model"]  # no temp file left
  captions = ["a green triangle moving up", ""]
  for a, b in zip(first.encode(captions), second.encode(captions)):
    np.testing.assert_array_equal(a, b)


def test_missing_file(tmp_path):
  path = str(tmp_path / "nope" / "spiece.model")
  with pytest.raises(FileNotFoundError, match="nope"):
    SentencePieceTokenizer(path, MAX_LENGTH)


def test_not_a_sentencepiece_model(tmp_path):
  path = tmp_path / "spiece.model"
  path.write_bytes(b"this is not a protobuf \x00\xff\x13")
  with pytest.raises(ValueError, match="not a sentencepiece model"):
    SentencePieceTokenizer(str(path), MAX_LENGTH)


def test_rejects_non_t5_special_ids(tmp_path):
  buffer = io.BytesIO()  # default sentencepiece ids: unk 0, bos 1, eos 2, no pad
  spm.SentencePieceTrainer.train(sentence_iterator=iter(_captions()), model_writer=buffer,
                                 vocab_size=64, hard_vocab_limit=False, minloglevel=2)
  path = tmp_path / "spiece.model"
  path.write_bytes(buffer.getvalue())
  with pytest.raises(ValueError, match="T5 convention"):
    SentencePieceTokenizer(str(path), MAX_LENGTH)
