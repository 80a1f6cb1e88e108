"""The trained network: text input → text context → DiT.

The DiT reads either caption token ids through its own trainable `CaptionEmbedding` (when
`vocab_size > 0`) or a frozen encoder's hidden states `(B, L, D)` (T5; `vocab_size == 0`).
Rows flagged by `drop` are replaced by the null embedding when `null` is "zero" or "learned"
(caption dropout in training, the unconditional branch in sampling); with "empty" the caller
passes the encoded empty prompt instead and `drop` is unused.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from videogen.config import check_choice
from videogen.models.attention import MultiHeadAttention
from videogen.models.dit import DiT, DiTSpec
from videogen.models.embeddings import rope_1d
from videogen.models.layers import LayerNorm, Mlp, constrain


class CaptionEmbedding(nn.Module):
  vocab_size: int
  dim: int

  @nn.compact
  def __call__(self, tokens):
    table = self.param("embedding", nn.with_logical_partitioning(
        nn.initializers.normal(1.0), ("vocab", "text_embed")), (self.vocab_size, self.dim))
    return constrain(table[tokens], ("batch", "text_length", "text_embed"))


class CaptionEncoder(nn.Module):
  """A small transformer trained with the DiT over the caption embedding (GLIDE's text path).
  The table alone gives a bag of words: "a red circle moving left and a blue square moving
  right" reads the same with the directions swapped. Learned positions and self-attention
  let each word state carry its clause, so the DiT's cross-attention can bind a direction
  to an object. Learned positions alone were not enough: trained with the DiT they stayed
  ~1/9 the size of the word vectors and attention stayed order-blind (docs/experiments.md,
  "Binding in two- and three-object prompts"), so attention also rotates q and k by token
  index (RoPE), which lets every head prefer its neighbours from the first step. Even so
  only some seeds learned to carry a clause's colour into its direction word; a residual
  convolution over `conv_width` neighbouring tokens before the blocks does it by position
  on each of the four seeds measured (docs/experiments.md, "A word convolution binds
  clauses"). Pre-LN blocks; padded tokens are masked as keys and read as zeros by the
  convolution."""

  layers: int
  heads: int
  conv_width: int = 0  # a residual convolution over this many neighbouring tokens first; 0 = none

  @nn.compact
  def __call__(self, embedded, mask):
    length, dim = embedded.shape[1:]
    positions = self.param("positions", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("text_length", "text_embed")), (length, dim))
    x = embedded + positions[None]
    if self.conv_width:  # each word state takes in its clause's words by position, not content
      words = LayerNorm(name="norm_conv")(x) * mask[..., None]
      x = x + nn.Conv(dim, (self.conv_width,), padding="SAME", name="conv", kernel_init=(
          nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                       (None, None, "text_embed"))))(words)
    rope = rope_1d(length, dim // self.heads)
    for i in range(self.layers):
      attend = MultiHeadAttention(self.heads, name=f"attn_{i}")
      x = x + attend(LayerNorm(name=f"norm_attn_{i}")(x), context_mask=mask, rope=rope)
      x = x + Mlp(4 * dim, name=f"mlp_{i}")(LayerNorm(name=f"norm_mlp_{i}")(x))
    return constrain(LayerNorm(name="norm_out")(x), ("batch", "text_length", "text_embed"))


class TextToVideo(nn.Module):
  """Denoiser `f(x_bthwc, t, text, text_mask, drop) → tensor shaped like x`."""

  spec: DiTSpec
  vocab_size: int  # 0: `text` is frozen-encoder states, not token ids
  text_dim: int
  null: str = "empty"
  text_length: int = 16
  frame_condition: str = "none"  # FRAME_CONDITIONS: how given frames enter the input
  text_layers: int = 0  # CaptionEncoder blocks over the trainable embedding; 0 = none
  text_conv: int = 0  # CaptionEncoder's word-convolution width; 0 = none
  self_condition: bool = False  # reads its previous x0 estimate as extra input channels

  @nn.compact
  def __call__(self, x_bthwc: jax.Array, t: jax.Array, text: jax.Array, text_mask: jax.Array,
               drop: jax.Array, frames=None, estimate=None, **dit_kwargs) -> jax.Array:
    """`frames`: `(known, mask)` given frames (a `FrameCondition`) for a frame-conditioned
    model; None = none given. `estimate`: a self-conditioned model's previous x0 estimate
    (shaped like `x_bthwc`); None = none yet (zeros). `dit_kwargs`: `cameras=`, and
    `block_residual=` / `return_residual=` of `DiT` (feature caching)."""
    if self.self_condition and estimate is None:
      estimate = jnp.zeros_like(x_bthwc)
    x_bthwc = with_frame_condition(x_bthwc, frames, self.frame_condition)
    if self.self_condition:
      x_bthwc = jnp.concatenate([x_bthwc, estimate.astype(x_bthwc.dtype)], -1)
    if self.vocab_size:
      context = CaptionEmbedding(self.vocab_size, self.text_dim, name="caption")(text)
      if self.text_layers or self.text_conv:
        heads = max(1, self.text_dim // 32)
        context = CaptionEncoder(self.text_layers, heads, self.text_conv,
                                 name="caption_encoder")(context, text_mask)
    else:
      context = constrain(text.astype(jnp.float32), ("batch", "text_length", "text_embed"))
    if self.null != "empty":
      shape = (self.text_length, self.text_dim)
      null = (self.param("null_text", nn.with_logical_partitioning(
          nn.initializers.normal(self.text_dim ** -0.5), ("text_length", "text_embed")), shape)
              if self.null == "learned" else jnp.zeros(shape, jnp.float32))
      context = jnp.where(drop[:, None, None], null[None], context)
      text_mask = jnp.where(drop[:, None], True, text_mask)
    return DiT(self.spec, name="dit")(x_bthwc, t, context, text_mask, **dit_kwargs)


# Trainable frame conditioning (image-to-video, extension, interpolation): given frames and
# their mask join the DiT input as channels. "concat": [x_t, known·mask, mask] (CogVideoX-I2V,
# SVD); "replace": [x_t with the given frames swapped for their clean content, mask]
# (Open-Sora's mask strategy, the mask telling the model which frames are clean).
FRAME_CONDITIONS = ("none", "concat", "replace")


def with_frame_condition(x: jax.Array, frames, kind: str) -> jax.Array:
  if kind == "none":
    return x
  if frames is None:
    known, mask = jnp.zeros_like(x), jnp.zeros((*x.shape[:-1], 1), x.dtype)
  else:
    known, mask = frames
    if known.shape[0] != x.shape[0]:  # the CFG-doubled batch: both halves see the frames
      known, mask = (jnp.concatenate([a, a]) for a in (known, mask))
    mask = jnp.broadcast_to(mask, (*x.shape[:-1], 1)).astype(x.dtype)
    known = jnp.broadcast_to(known, x.shape).astype(x.dtype)
  if kind == "concat":
    return jnp.concatenate([x, known * mask, mask], -1)
  return jnp.concatenate([mask * known + (1 - mask) * x, mask], -1)


def spec_from_config(model: ml_collections.ConfigDict) -> DiTSpec:
  """The `model` section → DiTSpec, which checks its fields (one ConfigError line)."""
  check_choice("model.frame_condition", model.get("frame_condition", "none"), FRAME_CONDITIONS)
  fields = {f.name for f in dataclasses.fields(DiTSpec)}
  values = {k: v for k, v in model.to_dict().items() if k in fields}
  return DiTSpec(**{**values, "patch_size": tuple(model.patch_size)})


def build_model(config: ml_collections.ConfigDict, vocab_size: int,
                text_dim: int | None = None) -> TextToVideo:
  """`vocab_size` 0 builds a DiT that reads `text_dim`-wide frozen-encoder states."""
  # Pad the table so its vocab axis divides any tensor-parallel degree up to 128.
  padded_vocab = -(-vocab_size // 128) * 128
  return TextToVideo(spec_from_config(config.model), padded_vocab,
                     text_dim or config.model.text_dim, config.text.null,
                     config.text.max_length, config.model.get("frame_condition", "none"),
                     config.model.get("text_layers", 0), config.model.get("text_conv", 0),
                     config.model.get("self_condition", False))


def example_inputs(config: ml_collections.ConfigDict, model: TextToVideo, batch: int = 1,
                   latent_shape: tuple[int, ...] | None = None):
  """Dummy `(x, t, text, text_mask, drop)` at the configured clip shape (or the VAE's latent
  `(T, H, W, C)` shape for a latent-space model), for init/eval_shape."""
  data = config.data
  shape = latent_shape or (data.num_frames, data.height, data.width, config.model.channels)
  x = jnp.zeros((batch, *shape), jnp.float32)
  length = config.text.max_length
  text = (jnp.zeros((batch, length), jnp.int32) if model.vocab_size
          else jnp.zeros((batch, length, model.text_dim), jnp.float32))
  return (x, jnp.zeros((batch,), jnp.float32), text, jnp.ones((batch, length), bool),
          jnp.zeros((batch,), bool))


def param_shardings(model: TextToVideo, config, mesh, rules, latent_shape=None):
  """(abstract unboxed params, NamedShardings) for restoring params alone (sampling)."""
  inputs = example_inputs(config, model, latent_shape=latent_shape)
  abstract = jax.eval_shape(lambda k: model.init(k, *inputs)["params"], jax.random.PRNGKey(0))
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, rules)
  return nn.meta.unbox(abstract), shardings
