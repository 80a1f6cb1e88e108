"""Spacetime diffusion transformer: 3D patches, AdaLN-Zero blocks, 3D RoPE or sin-cos.

`DiT(x_bthwc, t, context, context_mask)` predicts a tensor shaped like `x_bthwc`. It does not
care whether `x` holds pixels or VAE latents; `context` is any `(B, L, Dc)` text encoding.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from videogen.models import embeddings
from videogen.models.attention import MultiHeadAttention
from videogen.models.layers import Dense, LayerNorm, Mlp, constrain, modulate

LAYOUTS = ("joint",)
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class DiTSpec:
  """Hyper-parameters of the DiT; built from the `model` config section."""

  width: int = 128
  depth: int = 4
  num_heads: int = 4
  mlp_ratio: float = 4.0
  patch_size: tuple[int, int, int] = (1, 4, 4)
  channels: int = 3
  layout: str = "joint"
  pos_embed: str = "rope"          # "rope" | "sincos"
  pooled_text: bool = True         # also condition AdaLN on the mean text embedding
  attention_backend: str = "xla"
  dtype: str = "float32"           # compute dtype; parameters stay f32
  scan_layers: bool = True
  remat_policy: str = "none"

  @property
  def head_dim(self) -> int:
    return self.width // self.num_heads


class JointBlock(nn.Module):
  """AdaLN-Zero block: full spatiotemporal self-attention, text cross-attention, MLP."""

  spec: DiTSpec

  @nn.compact
  def __call__(self, x, cond, context, context_mask, rope):
    spec, dtype = self.spec, jnp.dtype(self.spec.dtype)
    # Zero-initialised modulation: every gate starts at 0, so each block starts as identity.
    mod = Dense(6 * spec.width, ("embed", "mlp"), dtype=dtype, kernel_init=nn.initializers.zeros,
                name="adaln")(nn.silu(cond))
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = jnp.split(mod, 6, axis=-1)

    attn = MultiHeadAttention(spec.num_heads, spec.attention_backend, dtype, name="self_attn")
    h = modulate(LayerNorm(use_scale=False, name="norm1")(x), shift_a, scale_a)
    x = x + gate_a[:, None] * attn(h, rope=rope)
    x = constrain(x, ("batch", "length", "embed"))

    cross = MultiHeadAttention(spec.num_heads, spec.attention_backend, dtype, name="cross_attn")
    x = x + cross(LayerNorm(name="norm2")(x), context, context_mask)

    h = modulate(LayerNorm(use_scale=False, name="norm3")(x), shift_m, scale_m)
    x = x + gate_m[:, None] * Mlp(int(spec.width * spec.mlp_ratio), dtype, name="mlp")(h)
    return constrain(x, ("batch", "length", "embed"))


class ScannedBlock(JointBlock):
  """`JointBlock` with the (carry, output) signature `nn.scan` wants."""

  def __call__(self, x, cond, context, context_mask, rope):
    return super().__call__(x, cond, context, context_mask, rope), None


class DiT(nn.Module):
  spec: DiTSpec

  @nn.compact
  def __call__(self, x_bthwc, t, context, context_mask):
    spec, dtype = self.spec, jnp.dtype(self.spec.dtype)
    if spec.layout not in LAYOUTS:
      raise ValueError(f"model.layout={spec.layout!r} is not implemented; expected {LAYOUTS}")
    _, frames, height, width, channels = x_bthwc.shape
    grid = (frames // spec.patch_size[0], height // spec.patch_size[1],
            width // spec.patch_size[2])

    tokens = embeddings.patchify(x_bthwc, spec.patch_size)
    x = Dense(spec.width, ("patch", "embed"), dtype=dtype, name="patch_embed")(tokens)
    if spec.pos_embed == "sincos":
      x = x + embeddings.sincos_3d(grid, spec.width).astype(dtype)
    rope = embeddings.rope_3d(grid, spec.head_dim) if spec.pos_embed == "rope" else None
    x = constrain(x, ("batch", "length", "embed"))

    cond = embeddings.TimestepEmbedding(spec.width, dtype=dtype, name="t_embed")(t)
    text = Dense(spec.width, ("text_embed", "embed"), dtype=dtype, name="context_proj")(context)
    text = constrain(text, ("batch", "text_length", "embed"))
    if spec.pooled_text:
      weights = context_mask[..., None].astype(jnp.float32)
      pooled = (context * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
      cond = cond + Dense(spec.width, ("text_embed", "embed"), dtype=dtype,
                          name="pooled_proj")(pooled)

    cond = constrain(cond, ("batch", "embed"))
    x = self._blocks(x, cond, text, context_mask, rope)

    shift, scale = jnp.split(
        Dense(2 * spec.width, ("embed", "mlp"), dtype=dtype, kernel_init=nn.initializers.zeros,
              name="final_adaln")(nn.silu(cond)), 2, axis=-1)
    x = modulate(LayerNorm(use_scale=False, name="final_norm")(x), shift, scale)
    patch_dim = spec.patch_size[0] * spec.patch_size[1] * spec.patch_size[2] * channels
    x = Dense(patch_dim, ("embed", "patch"), dtype=dtype, kernel_init=nn.initializers.zeros,
              name="final_proj")(x)
    return embeddings.unpatchify(x.astype(jnp.float32), grid, spec.patch_size, channels)

  def _blocks(self, x, cond, text, context_mask, rope):
    spec = self.spec
    policy = REMAT_POLICIES[spec.remat_policy]
    if spec.scan_layers:
      block = ScannedBlock
      if spec.remat_policy != "none":
        block = nn.remat(block, policy=policy, prevent_cse=False)
      stack = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                      in_axes=(nn.broadcast,) * 4, length=spec.depth,
                      metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = stack(spec, name="blocks")(x, cond, text, context_mask, rope)
      return x
    block = JointBlock if spec.remat_policy == "none" else nn.remat(JointBlock, policy=policy)
    for i in range(spec.depth):
      x = block(spec, name=f"block_{i}")(x, cond, text, context_mask, rope)
    return x
