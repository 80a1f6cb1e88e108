"""The trained network: caption tokens → text context → DiT.

`CaptionEmbedding` is the small trainable stand-in for a frozen T5 encoder. It produces the
same `(context, context_mask)` interface the T5 encoder will, so the DiT never changes.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from videogen.models.dit import DiT, DiTSpec
from videogen.models.layers import constrain


class CaptionEmbedding(nn.Module):
  vocab_size: int
  dim: int

  @nn.compact
  def __call__(self, tokens):
    table = self.param("embedding", nn.with_logical_partitioning(
        nn.initializers.normal(1.0), ("vocab", "text_embed")), (self.vocab_size, self.dim))
    return constrain(table[tokens], ("batch", "text_length", "text_embed"))


class TextToVideo(nn.Module):
  """Denoiser `f(x_bthwc, t, tokens, token_mask) → tensor shaped like x`."""

  spec: DiTSpec
  vocab_size: int
  text_dim: int

  @nn.compact
  def __call__(self, x_bthwc: jax.Array, t: jax.Array, tokens: jax.Array,
               token_mask: jax.Array) -> jax.Array:
    context = CaptionEmbedding(self.vocab_size, self.text_dim, name="caption")(tokens)
    return DiT(self.spec, name="dit")(x_bthwc, t, context, token_mask)


def spec_from_config(model: ml_collections.ConfigDict) -> DiTSpec:
  return DiTSpec(
      width=model.width, depth=model.depth, num_heads=model.num_heads,
      mlp_ratio=model.mlp_ratio, patch_size=tuple(model.patch_size), channels=model.channels,
      layout=model.layout, pos_embed=model.pos_embed, pooled_text=model.pooled_text,
      attention_backend=model.attention_backend, dtype=model.dtype,
      scan_layers=model.scan_layers, remat_policy=model.remat_policy)


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> TextToVideo:
  # Pad the table so its vocab axis divides any tensor-parallel degree up to 128.
  padded_vocab = -(-vocab_size // 128) * 128
  return TextToVideo(spec_from_config(config.model), padded_vocab, config.model.text_dim)


def example_inputs(config: ml_collections.ConfigDict, batch: int = 1,
                   latent_shape: tuple[int, ...] | None = None):
  """Dummy `(x, t, tokens, token_mask)` at the configured clip shape (or the VAE's latent
  `(T, H, W, C)` shape for a latent-space model), for init/eval_shape."""
  data, model = config.data, config.model
  shape = latent_shape or (data.num_frames, data.height, data.width, model.channels)
  x = jnp.zeros((batch, *shape), jnp.float32)
  tokens = jnp.zeros((batch, config.text.max_length), jnp.int32)
  return x, jnp.zeros((batch,), jnp.float32), tokens, tokens > 0


def param_shardings(model: TextToVideo, config, mesh, rules, latent_shape=None):
  """(abstract unboxed params, NamedShardings) for restoring params alone (sampling)."""
  inputs = example_inputs(config, latent_shape=latent_shape)
  abstract = jax.eval_shape(lambda k: model.init(k, *inputs)["params"], jax.random.PRNGKey(0))
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, rules)
  return nn.meta.unbox(abstract), shardings
