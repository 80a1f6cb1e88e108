"""T5 v1.1 / UMT5 text encoder (encoder stack only) in Flax linen.

Matches HF `T5EncoderModel` / `UMT5EncoderModel(...).last_hidden_state`. T5 conventions:
RMS norms without mean subtraction or bias (computed in f32), no biases anywhere, attention
logits *not* scaled by 1/sqrt(d_kv) (T5 folds that into its init), a learned bias per
bidirectional relative-position bucket added to the logits, and a (gated) feed-forward
`wo(act(wi_0 x) * wi_1 x)`. T5 v1.1 computes the position bias in layer 0 only and shares
it; UMT5 gives every layer its own (`per_layer_position_bias`).
"""
import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from videogen.models.layers import RMSNorm, constrain, param

ACTIVATIONS = {
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "relu": nn.relu,
    "silu": nn.silu,
    "swish": nn.silu,
}


@dataclass(frozen=True)
class T5Spec:
  vocab_size: int
  d_model: int
  d_kv: int
  d_ff: int
  num_layers: int
  num_heads: int
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  per_layer_position_bias: bool = False  # False: T5 v1.1 (layer 0's bias shared); True: UMT5
  dense_act: str = "gelu_new"
  is_gated: bool = True  # wo(act(wi_0 x) * wi_1 x); False: wo(act(wi x))
  layer_norm_epsilon: float = 1e-6
  dtype: str = "float32"  # compute dtype; parameters are always f32


PRESETS = {
    "tiny": T5Spec(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, relative_attention_max_distance=16),
    "t5-v1_1-xxl": T5Spec(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                          num_heads=64),
    "umt5-xxl": T5Spec(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                       num_heads=64, per_layer_position_bias=True),
}


def spec_from_hf_config(cfg: dict) -> T5Spec:
  """HF `T5Config` / `UMT5Config` dict (config.json) → T5Spec."""
  model_type = cfg.get("model_type", "t5")
  if model_type not in ("t5", "umt5"):
    raise ValueError(f"model_type={model_type!r} is not supported (want 't5' or 'umt5')")
  # HF defaults: T5Config feed_forward_proj="relu", UMT5Config "gated-gelu".
  proj = cfg.get("feed_forward_proj", "gated-gelu" if model_type == "umt5" else "relu")
  if not isinstance(proj, str):
    raise ValueError(f"feed_forward_proj={proj!r} is not supported")
  parts = proj.split("-")
  is_gated = parts[0] == "gated"
  act = parts[-1]
  if len(parts) > 2 or (len(parts) == 2 and not is_gated):
    raise ValueError(f"feed_forward_proj={proj!r} is not supported")
  if proj == "gated-gelu":  # transformers maps this exact name to gelu_new (tanh); "gelu" and
    act = "gelu_new"         # every other name keep their ACT2FN meaning ("gelu" = exact erf)
  if act not in ACTIVATIONS:
    raise ValueError(f"feed_forward_proj={proj!r} is not supported (activation {act!r})")
  def count(key: str, default: int) -> int:  # a config.json is data: whole, positive, bounded
    value = cfg.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2 ** 31:
      raise ValueError(f"{key}={value!r} must be a whole number in [1, 2**31)")
    return value

  epsilon = cfg.get("layer_norm_epsilon", 1e-6)
  if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not 0 < epsilon < 1:
    raise ValueError(f"layer_norm_epsilon={epsilon!r} must be in (0, 1)")
  return T5Spec(
      vocab_size=count("vocab_size", 32128), d_model=count("d_model", 512),
      d_kv=count("d_kv", 64), d_ff=count("d_ff", 2048), num_layers=count("num_layers", 6),
      num_heads=count("num_heads", 8),
      relative_attention_num_buckets=count("relative_attention_num_buckets", 32),
      relative_attention_max_distance=count("relative_attention_max_distance", 128),
      per_layer_position_bias=model_type == "umt5", dense_act=act, is_gated=is_gated,
      layer_norm_epsilon=float(epsilon))


def relative_position_bucket(relative_position: jax.Array, num_buckets: int,
                             max_distance: int) -> jax.Array:
  """HF `_relative_position_bucket(bidirectional=True)`; `relative_position = key - query`."""
  num_buckets //= 2
  buckets = (relative_position > 0).astype(jnp.int32) * num_buckets
  n = jnp.abs(relative_position)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  large = max_exact + (
      jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact)
      / math.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return buckets + jnp.where(is_small, n, large)


class RelativePositionBias(nn.Module):
  spec: T5Spec

  @nn.compact
  def __call__(self, q_len: int, k_len: int) -> jax.Array:
    """→ `(1, heads, q_len, k_len)` f32."""
    s = self.spec
    table = param(self, "embedding", nn.initializers.normal(1.0),
                   (s.relative_attention_num_buckets, s.num_heads), ("relpos_buckets", "heads"))
    rel = jnp.arange(k_len)[None, :] - jnp.arange(q_len)[:, None]
    buckets = relative_position_bucket(rel, s.relative_attention_num_buckets,
                                       s.relative_attention_max_distance)
    return jnp.transpose(table[buckets], (2, 0, 1))[None]


class T5Attention(nn.Module):
  spec: T5Spec

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
    s = self.spec
    dtype = jnp.dtype(s.dtype)
    init = nn.initializers.normal((s.d_model * s.d_kv) ** -0.5)

    def heads(name):
      kernel = param(self, name, init, (s.d_model, s.num_heads, s.d_kv),
                      ("embed", "heads", "kv"))
      y = jnp.einsum("bld,dhk->blhk", x.astype(dtype), kernel.astype(dtype))
      return constrain(y, ("batch", "text_length", "heads", "kv"))

    q, k, v = heads("q_kernel"), heads("k_kernel"), heads("v_kernel")
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) + bias
    weights = jax.nn.softmax(logits, axis=-1).astype(dtype)
    out = constrain(jnp.einsum("bhqk,bkhd->bqhd", weights, v),
                    ("batch", "text_length", "heads", "kv"))
    o = param(self, "o_kernel", nn.initializers.normal((s.num_heads * s.d_kv) ** -0.5),
               (s.num_heads, s.d_kv, s.d_model), ("heads", "kv", "embed"))
    return jnp.einsum("blhk,hkd->bld", out, o.astype(dtype))


class T5FeedForward(nn.Module):
  spec: T5Spec

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = self.spec
    dtype = jnp.dtype(s.dtype)
    act = ACTIVATIONS[s.dense_act]
    x = x.astype(dtype)

    def dense(name, shape, axes, h):
      kernel = param(self, name, nn.initializers.normal(shape[0] ** -0.5), shape, axes)
      return jnp.einsum("...i,io->...o", h, kernel.astype(dtype))

    if s.is_gated:
      h = act(dense("wi_0", (s.d_model, s.d_ff), ("embed", "mlp"), x)) * dense(
          "wi_1", (s.d_model, s.d_ff), ("embed", "mlp"), x)
    else:
      h = act(dense("wi", (s.d_model, s.d_ff), ("embed", "mlp"), x))
    h = constrain(h, ("batch", "text_length", "mlp"))
    return dense("wo", (s.d_ff, s.d_model), ("mlp", "embed"), h)


class T5Block(nn.Module):
  spec: T5Spec

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
    eps = self.spec.layer_norm_epsilon
    h = RMSNorm("embed", eps, name="attention_norm")(x)
    x = x + T5Attention(self.spec, name="attention")(h, bias).astype(x.dtype)
    x = constrain(x, ("batch", "text_length", "embed"))
    h = RMSNorm("embed", eps, name="mlp_norm")(x)
    x = x + T5FeedForward(self.spec, name="mlp")(h).astype(x.dtype)
    return constrain(x, ("batch", "text_length", "embed"))


class T5Encoder(nn.Module):
  """`(tokens (B, L) int32, mask (B, L) bool)` → last hidden state `(B, L, d_model)`."""

  spec: T5Spec

  @nn.compact
  def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    s = self.spec
    dtype = jnp.dtype(s.dtype)
    table = param(self, "embedding", nn.initializers.normal(1.0), (s.vocab_size, s.d_model),
                   ("vocab", "embed"))
    x = constrain(table.astype(dtype)[tokens], ("batch", "text_length", "embed"))
    length = tokens.shape[1]
    key_bias = jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :]
    bias = None
    for i in range(s.num_layers):
      if bias is None or s.per_layer_position_bias:
        position = RelativePositionBias(s, name=f"relative_bias_{i}" if s.per_layer_position_bias
                                        else "relative_bias")(length, length)
        bias = position + key_bias
      x = T5Block(s, name=f"layers_{i}")(x, bias)
    x = RMSNorm("embed", s.layer_norm_epsilon, name="final_norm")(x)
    return constrain(x, ("batch", "text_length", "embed"))


def abstract_params(spec: T5Spec):
  """The parameter tree as ShapeDtypeStructs (boxed with logical names), no allocation."""
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  mask = jax.ShapeDtypeStruct((1, 1), jnp.bool_)
  return jax.eval_shape(lambda t, m: T5Encoder(spec).init(jax.random.key(0), t, m),
                        tokens, mask)["params"]


def param_count(spec: T5Spec) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nn.unbox(abstract_params(spec))))


