"""Prompt words a model's tokenizer encodes as <unk> are named (sampling warns once with them;
the CLI path is in test_cli.py's sampling test)."""
from conftest import tiny_config
from videogen.sampling.generator import unknown_words_warning
from videogen.text.sentencepiece_tokenizer import SentencePieceTokenizer, train_sentencepiece
from videogen.text.tokenizer import UNK, WordTokenizer


def test_word_tokenizer_names_each_unknown_word_once():
  tokenizer = WordTokenizer(["a", "red", "circle"], max_length=8)
  assert tokenizer.unknown(["a Pink circle", "a pink dragon, red"]) == ["pink", "dragon"]
  assert tokenizer.unknown(["a red circle", ""]) == []


def test_sentencepiece_names_the_words_with_unknown_pieces(tmp_path):
  path = train_sentencepiece(["a red circle moving right", "a blue square moving up"] * 20,
                             str(tmp_path / "spiece.model"))
  tokenizer = SentencePieceTokenizer(path, max_length=16)
  tokens, _ = tokenizer.encode(["a red é circle"])
  assert UNK in tokens  # the premise: é is not a piece of this model
  assert tokenizer.unknown(["a red circle moving up"]) == []
  unknown = tokenizer.unknown(["a red é circle", "a 龍 moving"])
  assert unknown == ["é (piece 'é')", "龍 (piece '龍')"]
  config = tiny_config(**{"text.tokenizer": "sentencepiece", "data.source": "videos"})
  line = unknown_words_warning(config, tokenizer, unknown)
  assert line.startswith("warning: the model's sentencepiece tokenizer (trained on the run's "
                         f"captions, {tokenizer.vocab_size} pieces) has no piece for: é")
  assert "\n" not in line and "training captions" not in line  # no grammar for real video
