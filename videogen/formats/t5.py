"""Imports HF `T5EncoderModel` / `UMT5EncoderModel` (or full T5) weights into `T5Encoder`.

Conversion walks the expected HF key set for the spec, moves each tensor onto our tree (torch
Linear weights are `(out, in)`, so transposed; q/k/v split heads as `(d_model, heads, d_kv)`,
o as `(heads, d_kv, d_model)`) and fails on any missing or leftover key. Decoder / lm_head
weights of a full T5 checkpoint are ignored. Files are read by `videogen.formats.weight_files`'
non-unpickling readers.
"""
import os

import flax.linen as nn
import jax
import numpy as np

from videogen.formats.weight_files import (TRANSFORMERS_WEIGHT_FILES, _listing, load_state_dict,
                                           model_folder, parse_json)
from videogen.text.t5 import T5Spec, abstract_params, spec_from_hf_config

_EMBEDDING_KEYS = ("shared.weight", "encoder.embed_tokens.weight")
# Keys a full (encoder-decoder) checkpoint carries that an encoder does not use.
_IGNORED_PREFIXES = ("decoder.", "lm_head.")


def _f32(value) -> np.ndarray:
  return np.asarray(value, dtype=np.float32)


def convert_state_dict(state_dict: dict[str, np.ndarray], spec: T5Spec) -> dict:
  """HF state dict → `T5Encoder` params (`{"embedding": ..., "layers_0": ...}`, unboxed f32)."""
  remaining = {k: v for k, v in state_dict.items() if not k.startswith(_IGNORED_PREFIXES)}
  s = spec

  def take(key, shape):
    if key not in remaining:
      raise ValueError(f"T5 state dict lacks {key!r} (spec {s})")
    value = _f32(remaining.pop(key))
    if value.shape != shape:
      raise ValueError(f"{key}: shape {value.shape}, expected {shape}")
    return value

  present = [k for k in _EMBEDDING_KEYS if k in remaining]
  if not present:
    raise ValueError(f"T5 state dict lacks the embedding ({' or '.join(_EMBEDDING_KEYS)})")
  embedding = take(present[0], (s.vocab_size, s.d_model))
  for key in present[1:]:  # the tied copy, if saved too
    take(key, (s.vocab_size, s.d_model))
  params = {"embedding": embedding}
  inner = s.num_heads * s.d_kv

  def bias_params(i):
    key = f"encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight"
    return {"embedding": take(key, (s.relative_attention_num_buckets, s.num_heads))}

  for i in range(s.num_layers):
    prefix = f"encoder.block.{i}.layer"
    attn = f"{prefix}.0.SelfAttention"
    if s.per_layer_position_bias:
      params[f"relative_bias_{i}"] = bias_params(i)
    elif i == 0:
      params["relative_bias"] = bias_params(0)
    attention = {
        f"{n}_kernel": take(f"{attn}.{n}.weight", (inner, s.d_model)).T.reshape(
            s.d_model, s.num_heads, s.d_kv) for n in ("q", "k", "v")}
    attention["o_kernel"] = take(f"{attn}.o.weight", (s.d_model, inner)).T.reshape(
        s.num_heads, s.d_kv, s.d_model)
    ff = f"{prefix}.1.DenseReluDense"
    names = ("wi_0", "wi_1") if s.is_gated else ("wi",)
    mlp = {n: take(f"{ff}.{n}.weight", (s.d_ff, s.d_model)).T for n in names}
    mlp["wo"] = take(f"{ff}.wo.weight", (s.d_model, s.d_ff)).T
    params[f"layers_{i}"] = {
        "attention_norm": {"scale": take(f"{prefix}.0.layer_norm.weight", (s.d_model,))},
        "attention": attention,
        "mlp_norm": {"scale": take(f"{prefix}.1.layer_norm.weight", (s.d_model,))},
        "mlp": mlp,
    }
  params["final_norm"] = {"scale": take("encoder.final_layer_norm.weight", (s.d_model,))}
  if remaining:
    raise ValueError(f"T5 state dict has {len(remaining)} unexpected keys: "
                     f"{_listing(remaining)}")
  _check_tree(params, spec)
  return params


def _check_tree(params: dict, spec: T5Spec) -> None:
  expected = jax.tree.map(lambda x: x.shape, nn.unbox(abstract_params(spec)))
  got = jax.tree.map(lambda x: x.shape, params)
  if expected != got:
    raise AssertionError(f"converted tree does not match T5Encoder({spec})")


def read_state_dict(path) -> dict[str, np.ndarray]:
  """A weights file, or an HF folder's `model.safetensors[.index.json]` / `pytorch_model.bin`."""
  return load_state_dict(path, TRANSFORMERS_WEIGHT_FILES)


def read_hf_config(path) -> tuple[str, dict]:
  """(folder, parsed config.json) of an HF T5/UMT5 model: `path` itself, a weights file's
  folder, or a pipeline's `text_encoder/` subfolder."""
  folder = model_folder(os.fspath(path), "text_encoder")
  config_path = os.path.join(folder, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"no config.json in {folder} (want an HF T5EncoderModel / "
                            f"UMT5EncoderModel folder)")
  with open(config_path, "rb") as f:
    config = parse_json(f.read(), config_path)
  if not isinstance(config, dict):
    raise ValueError(f"{config_path} is not a JSON object")
  return folder, config


def load_t5(path) -> tuple[T5Spec, dict]:
  """An HF T5/UMT5 folder (config.json + weights; a `text_encoder/` subfolder of a pipeline
  also works) → (T5Spec, params)."""
  folder, config = read_hf_config(path)
  spec = spec_from_hf_config(config)
  weights = path if not os.path.isdir(path) else folder
  return spec, convert_state_dict(read_state_dict(weights), spec)
