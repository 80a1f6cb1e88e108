"""Captions → the DiT's text input, as `config.text` chooses.

    tokenizer  "words": the synthetic world's word vocabulary.
               "sentencepiece": `text.tokenizer_path` (any T5 `spiece.model`), or, when empty,
               a model trained in-process on the source's captions and cached in the run
               directory as `spiece.model` (exports carry it).
    encoder    "embedding": a trainable table inside the DiT, which then reads token ids.
               "t5": a frozen T5 / UMT5 encoder whose last hidden state the DiT reads:
               `text.t5.checkpoint` (an HF folder), or, when empty, a randomly initialised
               `text.t5.preset` (seeded; for tests and the offline demo). It runs inside the
               jitted train step, or its outputs come pre-computed from
               `python -m videogen.encode_text` (`text.embeddings_path`).
    null       the caption-dropout target, and the unconditional branch of guidance when no
               negative prompt is given: "empty" (the encoded empty prompt, CogVideoX/Wan),
               "zero", or "learned" (a trained `(L, D)` embedding, PixArt/Open-Sora).

The frozen encoder's params enter jitted programs as arguments with their own shardings (like
the frozen VAE's), in the encoder's compute dtype.
"""
import dataclasses
import os
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from videogen import workdir as workdir_lib
from videogen.config import ConfigError, check_choice

from videogen.formats.t5 import load_t5, read_hf_config
from videogen.text.sentencepiece_tokenizer import (MODEL_FILENAME, SentencePieceTokenizer,
                                                   cached_tokenizer)
from videogen.text.t5 import PRESETS, T5Encoder, T5Spec, abstract_params, spec_from_hf_config
from videogen.text.tokenizer import WordTokenizer

TOKENIZERS = ("words", "sentencepiece")
ENCODERS = ("embedding", "t5")
NULLS = ("empty", "zero", "learned")
# Captions of the source's that training trains the in-process sentencepiece model on.
TOKENIZER_TRAINING_CAPTIONS = 2000


def tokenizer_from_config(config: ml_collections.ConfigDict, run_dir: str | None = None,
                          vocabulary: tuple[str, ...] | None = None,
                          training_captions: Callable[[], list[str]] | None = None):
  """The configured tokenizer. What it learns from the data comes from the caller (text
  imports no data): `vocabulary`, the "words" tokenizer's word list (the synthetic world's,
  `data.synthetic.VOCABULARY`), and `training_captions`, which returns the captions a
  workdir-cached sentencepiece model is trained on (once; `TOKENIZER_TRAINING_CAPTIONS` of the
  source's, in training) when it is missing. Without it, that model's absence is a
  FileNotFoundError naming the path."""
  text = config.text
  if text.tokenizer == "words":
    if vocabulary is None:
      raise ValueError("text.tokenizer='words' needs the synthetic world's word list: pass "
                       "vocabulary=videogen.data.synthetic.VOCABULARY")
    return WordTokenizer(vocabulary, text.max_length)
  if text.tokenizer_path:
    return SentencePieceTokenizer(text.tokenizer_path, text.max_length)
  if run_dir is None:
    raise FileNotFoundError("text.tokenizer='sentencepiece' with no text.tokenizer_path needs "
                            "the run directory that holds spiece.model")
  if training_captions is not None:
    return cached_tokenizer(run_dir, training_captions, text.max_length)
  path = workdir_lib.tokenizer_file(run_dir)
  if not path.is_file():
    raise FileNotFoundError(f"{run_dir} has no {MODEL_FILENAME} (the run's tokenizer); set "
                            f"text.tokenizer_path or train in this directory first")
  return SentencePieceTokenizer(path, text.max_length)


def check_config(text: ml_collections.ConfigDict) -> None:
  """The `text` section's choices and the keys that must agree; else one ConfigError line."""
  check_choice("text.tokenizer", text.tokenizer, TOKENIZERS)
  check_choice("text.encoder", text.encoder, ENCODERS)
  check_choice("text.null", text.null, NULLS)
  check_choice("text.t5.dtype", text.t5.dtype, ("float32", "bfloat16"))
  if text.max_length < 1:
    raise ConfigError(f"text.max_length={text.max_length} must be >= 1 (room for EOS)")
  if text.embeddings_path and text.encoder != "t5":
    raise ConfigError("text.embeddings_path holds frozen-encoder outputs: set text.encoder='t5'")
  if text.tokenizer == "words" and text.encoder == "t5" and text.t5.checkpoint:
    raise ConfigError("a T5 checkpoint needs its own tokenizer: set text.tokenizer="
                      "'sentencepiece' and text.tokenizer_path to its spiece.model")


def run_files(config: ml_collections.ConfigDict) -> list[str]:
  """Files the text path keeps in the run directory, which an export must carry."""
  if config.text.tokenizer == "sentencepiece" and not config.text.tokenizer_path:
    return [MODEL_FILENAME]
  return []


def t5_spec(text: ml_collections.ConfigDict, vocab_size: int) -> T5Spec:
  """The frozen encoder's shape: from the checkpoint's config.json, or the preset (its vocab
  widened to cover the tokenizer, rounded up to 128 so it shards)."""
  t5 = text.t5
  if t5.checkpoint:
    spec = spec_from_hf_config(read_hf_config(t5.checkpoint)[1])
    if vocab_size > spec.vocab_size:
      raise ValueError(f"the tokenizer has {vocab_size} ids but the T5 at "
                       f"{t5.checkpoint!r} embeds {spec.vocab_size}: use its spiece.model")
  else:
    if t5.preset not in PRESETS:
      raise ValueError(f"text.t5.preset={t5.preset!r} is not one of {tuple(PRESETS)}")
    spec = PRESETS[t5.preset]
    spec = dataclasses.replace(spec, vocab_size=max(spec.vocab_size, -(-vocab_size // 128) * 128))
  return dataclasses.replace(spec, dtype=t5.dtype)


def encode_tokens(model: T5Encoder, params, tokens: jax.Array, mask: jax.Array) -> jax.Array:
  """T5 hidden states `(B, L, D)` f32 with padded positions zeroed, so they equal what an
  embedding cache (which stores valid positions only) returns."""
  states = model.apply({"params": params}, tokens, mask).astype(jnp.float32)
  return states * mask[..., None]


@dataclasses.dataclass
class FrozenTextEncoder:
  model: T5Encoder
  params: dict  # on the mesh, in the compute dtype

  @classmethod
  def load(cls, text: ml_collections.ConfigDict, vocab_size: int, mesh, rules
           ) -> "FrozenTextEncoder":
    spec = t5_spec(text, vocab_size)
    model = T5Encoder(spec)
    dtype = jnp.dtype(spec.dtype)
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract_params(spec)), mesh,
                                            rules)
    if text.t5.checkpoint:
      _, host = load_t5(text.t5.checkpoint)
      params = jax.tree.map(lambda x, s: jax.device_put(x.astype(dtype), s), host, shardings)
    else:
      def init(key):
        tokens = jnp.zeros((1, 1), jnp.int32)
        boxed = model.init(key, tokens, tokens == 0)["params"]
        return jax.tree.map(lambda p: p.astype(dtype), nn.unbox(boxed))

      with jax.set_mesh(mesh):  # created sharded, never whole on one device
        params = jax.jit(init, out_shardings=shardings)(jax.random.key(text.t5.seed))
    return cls(model, params)

  @property
  def dim(self) -> int:
    return self.model.spec.d_model


@dataclasses.dataclass
class TextConditioning:
  """The caption path of one config: tokenizer, optional frozen encoder, null choice."""

  text: ml_collections.ConfigDict  # config.text
  tokenizer: WordTokenizer | SentencePieceTokenizer
  encoder: FrozenTextEncoder | None
  embedding_dim: int  # config.model.text_dim: the width of the DiT's own table
  mesh: jax.sharding.Mesh | None = None
  rules: tuple = ()
  _encode: object = dataclasses.field(default=None, repr=False)

  @classmethod
  def create(cls, config: ml_collections.ConfigDict, run_dir: str | None, mesh, rules,
             vocabulary: tuple[str, ...] | None = None,
             training_captions: Callable[[], list[str]] | None = None) -> "TextConditioning":
    """`vocabulary` and `training_captions` as `tokenizer_from_config` takes them."""
    tokenizer = tokenizer_from_config(config, run_dir, vocabulary, training_captions)
    encoder = None
    if config.text.encoder == "t5":
      encoder = FrozenTextEncoder.load(config.text, tokenizer.vocab_size, mesh, rules)
    return cls(config.text, tokenizer, encoder, config.model.text_dim, mesh, tuple(rules))

  @property
  def model_vocab_size(self) -> int:
    """The DiT's own embedding table size; 0 when it reads a frozen encoder's states."""
    return 0 if self.encoder else self.tokenizer.vocab_size

  @property
  def dim(self) -> int:
    """Width of the per-token text features the DiT reads."""
    return self.encoder.dim if self.encoder else self.embedding_dim

  def fingerprint(self) -> dict:
    """What determines the DiT's text input; an embedding cache must match it."""
    t5 = self.text.t5
    return {"tokenizer": self.tokenizer.fingerprint, "max_length": self.text.max_length,
            "encoder": self.text.encoder, "t5_checkpoint": os.path.abspath(t5.checkpoint)
            if t5.checkpoint else "", "t5_preset": "" if t5.checkpoint else t5.preset,
            "t5_seed": t5.seed, "t5_dtype": t5.dtype}

  def encode(self, captions: list[str]) -> tuple[jax.Array, jax.Array]:
    """Captions → `(text, mask)` as the DiT reads them: token ids, or encoder states."""
    tokens, mask = self.tokenizer.encode(captions)
    if self.encoder is None:
      return jnp.asarray(tokens), jnp.asarray(mask)
    if self._encode is None:
      def encode(params, tokens, mask):
        with nn.logical_axis_rules(self.rules):
          return encode_tokens(self.encoder.model, params, tokens, mask)
      self._encode = jax.jit(encode)
    with jax.set_mesh(self.mesh):
      return self._encode(self.encoder.params, tokens, mask), jnp.asarray(mask)

  def conditional(self, prompts: list[str]):
    """The `(text, mask, drop)` triple the DiT is called with for these prompts."""
    text, mask = self.encode(prompts)
    return text, mask, jnp.zeros((len(prompts),), bool)

  def unconditional(self, n: int, negative_prompt: str = ""):
    """The guidance branch: the negative prompt if given, else the configured null."""
    if negative_prompt or self.text.null == "empty":
      return self.conditional([negative_prompt] * n)
    text, mask, _ = self.conditional([""] * n)  # replaced by the DiT's null embedding
    return text, mask, jnp.ones((n,), bool)

  def null_text(self):
    """For caption dropout with null="empty": the encoded empty prompt `(1, L[, D])` and its
    mask, substituted for dropped rows; None when the DiT owns its null embedding."""
    return self.encode([""]) if self.text.null == "empty" else None
