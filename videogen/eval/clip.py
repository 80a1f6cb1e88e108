"""CLIP image and text encoders in Flax linen: the model behind the CLIP score
(`videogen/eval/clip_score.py`); `videogen/formats/clip.py` imports transformers' weights.

Matches HF `CLIPModel.get_image_features` / `get_text_features` / `logits_per_image`:
  vision: patches (a stride-`patch` conv, written as a matmul over flattened patches) after a
    class token, learned positions, a pre-LayerNorm, pre-LN blocks, LayerNorm of the class
    token's state, `visual_projection`;
  text: token + learned positions, causal pre-LN blocks, a final LayerNorm, the state at the
    end token (the first `eos_token_id`, or for old configs with `eos_token_id == 2` the
    highest id, as HF does), `text_projection`.
Blocks use `hidden_act` (OpenAI's `quick_gelu`, or `gelu` for e.g. LAION's). Right padding
needs no mask: under the causal mask no position before the end token sees it.
"""
import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from videogen.models.layers import Dense, LayerNorm, constrain, param

# The pixel statistics OpenAI's CLIPs were trained with: the default normalisation.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
}


@dataclass(frozen=True)
class TowerSpec:
  """One transformer stack (the image or the text tower)."""
  width: int
  mlp_dim: int
  num_layers: int
  num_heads: int
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class ClipSpec:
  vision: TowerSpec
  text: TowerSpec
  image_size: int = 224
  patch_size: int = 32
  vocab_size: int = 49408
  max_length: int = 77  # text max_position_embeddings
  eos_token_id: int = 49407
  projection_dim: int = 512


PRESETS = {
    "vit-b-32": ClipSpec(TowerSpec(768, 3072, 12, 12), TowerSpec(512, 2048, 12, 8)),
    "vit-l-14": ClipSpec(TowerSpec(1024, 4096, 24, 16), TowerSpec(768, 3072, 12, 12),
                         patch_size=14, projection_dim=768),
}

class Attention(nn.Module):
  spec: TowerSpec
  causal: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = self.spec
    head_dim = s.width // s.num_heads
    init = nn.initializers.normal(s.width ** -0.5)

    def heads(name):  # (B, L, D) → (B, L, H, Dh)
      kernel = param(self, f"{name}_kernel", init, (s.width, s.num_heads, head_dim),
                      ("embed", "heads", "kv"))
      bias = param(self, f"{name}_bias", nn.initializers.zeros, (s.num_heads, head_dim),
                    ("heads", "kv"))
      return jnp.einsum("bld,dhk->blhk", x, kernel) + bias

    out = jax.nn.dot_product_attention(heads("q"), heads("k"), heads("v"),
                                       is_causal=self.causal)
    kernel = param(self, "out_kernel", init, (s.num_heads, head_dim, s.width),
                    ("heads", "kv", "embed"))
    bias = param(self, "out_bias", nn.initializers.zeros, (s.width,), ("embed",))
    return jnp.einsum("blhk,hkd->bld", out, kernel) + bias


class Block(nn.Module):
  """Pre-LN: x + attn(ln1 x), then x + fc2(act(fc1(ln2 x)))."""
  spec: TowerSpec
  causal: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = self.spec
    h = LayerNorm(epsilon=s.layer_norm_eps, name="attention_norm")(x)
    x = x + Attention(s, self.causal, name="attention")(h)
    h = LayerNorm(epsilon=s.layer_norm_eps, name="mlp_norm")(x)
    h = ACTIVATIONS[s.hidden_act](Dense(s.mlp_dim, ("embed", "mlp"), name="fc1")(h))
    x = x + Dense(s.width, ("mlp", "embed"), name="fc2")(h)
    return constrain(x, ("batch", None, "embed"))


def _encoder(spec: TowerSpec, x: jax.Array, causal: bool) -> jax.Array:
  for i in range(spec.num_layers):
    x = Block(spec, causal, name=f"layers_{i}")(x)
  return x


def _projection(module, x: jax.Array, projection_dim: int) -> jax.Array:
  kernel = param(module, "projection", nn.initializers.normal(x.shape[-1] ** -0.5),
                  (x.shape[-1], projection_dim), ("embed", None))
  return x @ kernel


class VisionTower(nn.Module):
  """Normalised pixels `(N, S, S, 3)` → image embeddings `(N, projection_dim)`."""
  spec: ClipSpec

  @nn.compact
  def __call__(self, pixels: jax.Array) -> jax.Array:
    s, v = self.spec, self.spec.vision
    n, p, grid = pixels.shape[0], s.patch_size, s.image_size // s.patch_size
    if pixels.shape[1:] != (s.image_size, s.image_size, 3):
      raise ValueError(f"CLIP pixels have shape {pixels.shape[1:]}; the model wants "
                       f"{(s.image_size, s.image_size, 3)} (see `preprocess`)")
    patches = pixels.reshape(n, grid, p, grid, p, 3).transpose(0, 1, 3, 2, 4, 5).reshape(
        n, grid * grid, p * p * 3)  # each patch flattened as (row, column, channel)
    kernel = param(self, "patch_kernel", nn.initializers.lecun_normal(), (p * p * 3, v.width),
                    ("patch", "embed"))
    cls = param(self, "class_embedding", nn.initializers.normal(v.width ** -0.5), (v.width,),
                 ("embed",))
    positions = param(self, "position_embedding", nn.initializers.normal(0.02),
                       (grid * grid + 1, v.width), (None, "embed"))
    x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, v.width)), patches @ kernel], axis=1)
    x = LayerNorm(epsilon=v.layer_norm_eps, name="pre_norm")(x + positions)
    x = _encoder(v, x, causal=False)
    pooled = LayerNorm(epsilon=v.layer_norm_eps, name="post_norm")(x[:, 0])
    return _projection(self, pooled, s.projection_dim)


def end_token_index(tokens: jax.Array, eos_token_id: int) -> jax.Array:
  """HF CLIPTextModel's pooling position: the first `eos_token_id`, or, for configs from before
  transformers #24773 (`eos_token_id == 2`), the highest id (OpenAI's end token is the last
  of the vocabulary)."""
  if eos_token_id == 2:
    return jnp.argmax(tokens, axis=-1)
  return jnp.argmax(tokens == eos_token_id, axis=-1)


class TextTower(nn.Module):
  """Token ids `(N, L)`, `L <= max_length`, start/end tokens included → text embeddings
  `(N, projection_dim)`."""
  spec: ClipSpec

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    s, t = self.spec, self.spec.text
    if tokens.shape[1] > s.max_length:
      raise ValueError(f"{tokens.shape[1]} text tokens; CLIP takes at most {s.max_length}")
    table = param(self, "token_embedding", nn.initializers.normal(0.02),
                   (s.vocab_size, t.width), ("vocab", "embed"))
    positions = param(self, "position_embedding", nn.initializers.normal(0.01),
                       (s.max_length, t.width), (None, "embed"))
    x = table[tokens] + positions[:tokens.shape[1]]
    x = _encoder(t, x, causal=True)
    x = LayerNorm(epsilon=t.layer_norm_eps, name="final_norm")(x)
    pooled = x[jnp.arange(x.shape[0]), end_token_index(tokens, s.eos_token_id)]
    return _projection(self, pooled, s.projection_dim)


def unit(x: jax.Array) -> jax.Array:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


class ClipModel(nn.Module):
  """`encode_image(pixels)`, `encode_text(tokens)` (unnormalised, as HF's `get_*_features`),
  and `__call__(pixels, tokens)` → logits_per_image `(N_images, N_texts)`."""
  spec: ClipSpec

  def setup(self):
    self.vision = VisionTower(self.spec)
    self.text = TextTower(self.spec)
    self.logit_scale = param(self, "logit_scale", nn.initializers.constant(math.log(1 / 0.07)),
                              (), ())

  def encode_image(self, pixels: jax.Array) -> jax.Array:
    return self.vision(pixels)

  def encode_text(self, tokens: jax.Array) -> jax.Array:
    return self.text(tokens)

  def __call__(self, pixels: jax.Array, tokens: jax.Array) -> jax.Array:
    cos = unit(self.encode_image(pixels)) @ unit(self.encode_text(tokens)).T
    return cos * jnp.exp(self.logit_scale)


def abstract_params(spec: ClipSpec):
  """The parameter tree as ShapeDtypeStructs (boxed with logical names), no allocation."""
  pixels = jax.ShapeDtypeStruct((1, spec.image_size, spec.image_size, 3), jnp.float32)
  tokens = jax.ShapeDtypeStruct((1, spec.max_length), jnp.int32)
  return jax.eval_shape(lambda x, t: ClipModel(spec).init(jax.random.key(0), x, t),
                        pixels, tokens)["params"]


def param_count(spec: ClipSpec) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nn.unbox(abstract_params(spec))))
