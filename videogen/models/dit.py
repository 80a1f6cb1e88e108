"""Spacetime diffusion transformer in three layouts that share one set of blocks.

`DiT(x_bthwc, t, context, context_mask)` predicts a tensor shaped like `x_bthwc`. It does not
care whether `x` holds pixels or VAE latents; `context` is any `(B, L, Dc)` text encoding.

    joint       (Sora, Wan) full spatiotemporal self-attention over all video tokens, text by
                cross-attention, AdaLN-Zero.
    expert      (CogVideoX) text and video tokens in one sequence under full 3D attention, each
                modality with its own ("expert") adaptive LayerNorm; text dropped at the end.
    factorized  (Open-Sora STDiT) each of `depth` layers is a spatial block (attention within
                a frame) then a temporal block (across frames at one position), both with
                text cross-attention.

`adaln="single"` (PixArt-α, Open-Sora, Wan) replaces each block's modulation MLP with one
shared projection of the timestep embedding plus a learned per-block table. `token_adaln`
(joint and factorized) adds a per-token term to each block's MLP modulation, read from that
token's cross-attention output: each video token is modulated by the caption words it attends
to, not only by the caption's mean. Positions (3D RoPE or sin-cos) come from the runtime
(T, H, W), so one set of weights runs at any shape.
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from videogen.config import ConfigError, check_choice
from videogen.models import camera, embeddings
from videogen.models.attention import (BACKENDS, QK_NORMS, SEQUENCE_PARALLEL,
                                       MultiHeadAttention)
from videogen.models.layers import Dense, LayerNorm, Mlp, constrain, modulate, per_token

LAYOUTS = ("joint", "expert", "factorized")
ADALN = ("per_block", "single")
TEXT_PROJECTIONS = ("linear", "mlp")
POS_EMBEDS = ("rope", "sincos")
DTYPES = ("float32", "bfloat16")
# Primitives of fused attention kernels whose outputs are their backward's residuals (cuDNN:
# output and softmax statistics). Unnamed inside jax, so a policy can only match them by name.
_ATTENTION_KERNELS = frozenset({"dot_product_attention_fwd_wrapper",
                                "dot_product_attention_fwd"})


def _saves_attention_kernel(primitive, *_, **__) -> bool:
  return primitive.name in _ATTENTION_KERNELS


# Activation checkpointing of each block (`model.remat_policy`): what the backward pass may
# keep instead of recomputing. Names refer to `checkpoint_name` tags in attention.py/layers.py.
# `save_attention_kernel` keeps the flash kernel's residuals, so the backward never reruns the
# forward kernel (on GPU the attention forward is ~25% of a step's time at 6,750 tokens).
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "save_dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "save_attention_out": jax.checkpoint_policies.save_only_these_names("attention_out"),
    "save_qkv_and_attention_out": jax.checkpoint_policies.save_only_these_names(
        "query", "key", "value", "attention_out"),
    "save_attention_kernel": _saves_attention_kernel,
    "save_dots_and_attention_kernel": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable, _saves_attention_kernel),
    # Keep matmul outputs in host memory between passes (GPU/TPU; needs pinned_host memory).
    "offload_dots": jax.checkpoint_policies.offload_dot_with_no_batch_dims(
        "device", "pinned_host"),
}


@dataclasses.dataclass(frozen=True)
class DiTSpec:
  """Hyper-parameters of the DiT; built from the `model` config section."""

  width: int = 128
  depth: int = 4                   # blocks; for `factorized`, (spatial, temporal) pairs
  num_heads: int = 4
  mlp_ratio: float = 4.0
  patch_size: tuple[int, int, int] = (1, 4, 4)
  channels: int = 3
  layout: str = "joint"
  adaln: str = "per_block"         # "per_block" | "single"
  pos_embed: str = "rope"          # "rope" | "sincos"
  rope_split: str = "cogvideox"    # how head channels split over (t, h, w)
  qk_norm: str = "rms"             # see attention.QK_NORMS
  text_projection: str = "linear"  # context → width: "linear" | "mlp" (Wan)
  pooled_text: bool = True         # also condition AdaLN on the mean text embedding
  token_adaln: bool = False        # per-token MLP modulation from the token's cross-attention
  head_mlp_ratio: float = 0.0      # a GELU MLP of this width ratio before the output; 0 = linear
  time_frequency_dim: int = 256    # sinusoidal timestep features
  time_embed_dim: int = 0          # timestep embedding width; 0 = width (CogVideoX: 512)
  norm_eps: float = 1e-6
  attention_backend: str = "xla"
  sequence_parallel: str = "all_gather"  # | "ulysses" | "ring" (attention.SEQUENCE_PARALLEL)
  dtype: str = "float32"           # compute dtype; parameters stay f32
  scan_layers: bool = True
  remat_policy: str = "none"
  lora_rank: int = 0               # LoRA adapters on every attention projection; 0 = none
  lora_alpha: float = 0.0          # update scale alpha/rank; 0 = rank (scale 1)
  camera: bool = False             # a Plücker-ray camera adapter on the tokens (camera.py)
  registers: int = 0               # learned tokens appended to the sequence (joint layout)

  @property
  def head_dim(self) -> int:
    return self.width // self.num_heads

  @property
  def cond_dim(self) -> int:
    return self.time_embed_dim or self.width

  def __post_init__(self):
    """Every field the `model` section sets, as one ConfigError line naming the key."""
    for name, allowed in (("layout", LAYOUTS), ("adaln", ADALN),
                          ("rope_split", embeddings.ROPE_SPLITS), ("qk_norm", QK_NORMS),
                          ("sequence_parallel", SEQUENCE_PARALLEL),
                          ("attention_backend", BACKENDS), ("text_projection", TEXT_PROJECTIONS),
                          ("pos_embed", POS_EMBEDS), ("dtype", DTYPES),
                          ("remat_policy", tuple(REMAT_POLICIES))):
      check_choice(f"model.{name}", getattr(self, name), allowed)
    if self.adaln == "single" and (self.layout == "expert" or self.time_embed_dim):
      raise ConfigError("model.adaln='single' needs model.layout joint or factorized and "
                        "model.time_embed_dim=0")
    if self.token_adaln and self.layout == "expert":
      raise ConfigError("model.token_adaln reads each block's text cross-attention, which "
                        "model.layout='expert' does not have (text is in the sequence)")
    if self.registers and self.layout != "joint":
      raise ConfigError(f"model.registers needs model.layout='joint' (got {self.layout!r}): "
                        f"factorized attention groups and expert text have no place for them")
    if self.width % self.num_heads:
      raise ConfigError(f"model.width={self.width} is not divisible by "
                        f"model.num_heads={self.num_heads}")


class Modulation(nn.Module):
  """`chunks` per-example `(B, width)` modulation vectors (shift/scale/gate…) from `cond`.

  per_block: `Dense(silu(cond))`, zero-initialised (AdaLN-Zero: every gate starts at 0).
  single: `cond` is the shared projection `(B, chunks·width)`; add this block's learned table
  (zero-initialised too, so both start as identity blocks)."""

  spec: DiTSpec
  chunks: int

  @nn.compact
  def __call__(self, cond: jax.Array) -> list[jax.Array]:
    spec, width = self.spec, self.spec.width
    if spec.adaln == "single":
      table = self.param("scale_shift_table", nn.with_logical_partitioning(
          nn.initializers.zeros, (None, "embed")), (self.chunks, width), jnp.float32)
      mod = cond.reshape(cond.shape[0], self.chunks, width) + table[None].astype(cond.dtype)
    else:
      mod = Dense(self.chunks * width, ("embed", "mlp"), dtype=jnp.dtype(spec.dtype),
                  kernel_init=nn.initializers.zeros, name="linear")(nn.silu(cond))
      mod = mod.reshape(cond.shape[0], self.chunks, width)
    return [mod[:, i] for i in range(self.chunks)]


def _attention(spec: DiTSpec, name: str) -> MultiHeadAttention:
  return MultiHeadAttention(spec.num_heads, spec.attention_backend, jnp.dtype(spec.dtype),
                            qk_norm=spec.qk_norm, sequence_parallel=spec.sequence_parallel,
                            lora_rank=spec.lora_rank, lora_alpha=spec.lora_alpha, name=name)


def _regroup(x, grid, attend):
  """`(B, T·H·W, D)` → the attention groups: per frame `(B·T, H·W, D)`, per position
  `(B·H·W, T, D)`, or unchanged for full attention."""
  if attend == "all":
    return x
  b, _, d = x.shape
  t, hw = grid[0], grid[1] * grid[2]
  if attend == "space":
    return x.reshape(b * t, hw, d)
  return x.reshape(b, t, hw, d).transpose(0, 2, 1, 3).reshape(b * hw, t, d)


def _ungroup(x, grid, batch, attend):
  if attend == "all":
    return x
  t, hw = grid[0], grid[1] * grid[2]
  d = x.shape[-1]
  if attend == "space":
    return x.reshape(batch, t * hw, d)
  return x.reshape(batch, hw, t, d).transpose(0, 2, 1, 3).reshape(batch, t * hw, d)


class DiTBlock(nn.Module):
  """AdaLN-Zero block: self-attention (over all tokens, within frames, or across frames),
  text cross-attention, MLP. The joint layout stacks these; factorized alternates them."""

  spec: DiTSpec
  attend: str = "all"  # "all" | "space" | "time"
  grid: tuple[int, int, int] | None = None  # the token grid; needed to regroup space/time

  @nn.compact
  def __call__(self, x, cond, context, context_mask, rope):
    spec, dtype, grid = self.spec, jnp.dtype(self.spec.dtype), self.grid
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = Modulation(spec, 6, name="adaln")(cond)
    h = modulate(LayerNorm(use_scale=False, epsilon=spec.norm_eps, name="norm1")(x),
                 shift_a, scale_a)
    groups = _regroup(h, grid, self.attend)
    attended = _attention(spec, "self_attn")(groups, rope=rope)
    x = x + gate_a[:, None] * _ungroup(attended, grid, x.shape[0], self.attend)
    x = constrain(x, ("batch", "length", "embed"))

    cross = _attention(spec, "cross_attn")
    read = cross(LayerNorm(epsilon=spec.norm_eps, name="norm2")(x), context, context_mask)
    x = x + read

    if spec.token_adaln:  # zero-initialised: starts as the per-example modulation
      token = Dense(3 * spec.width, ("embed", "mlp"), dtype=dtype,
                    kernel_init=nn.initializers.zeros, name="token_adaln")(nn.silu(read))
      shift_m, scale_m, gate_m = (m[:, None] + d for m, d in
                                  zip((shift_m, scale_m, gate_m), jnp.split(token, 3, -1)))
    h = modulate(LayerNorm(use_scale=False, epsilon=spec.norm_eps, name="norm3")(x),
                 shift_m, scale_m)
    x = x + per_token(gate_m) * Mlp(round(spec.width * spec.mlp_ratio), dtype, name="mlp")(h)
    return constrain(x, ("batch", "length", "embed"))


class FactorizedBlock(nn.Module):
  """STDiT layer: a spatial block, then a temporal block."""

  spec: DiTSpec
  grid: tuple[int, int, int] | None = None

  @nn.compact
  def __call__(self, x, cond, context, context_mask, rope):
    space_rope, time_rope = rope
    x = DiTBlock(self.spec, "space", self.grid, name="spatial")(x, cond, context, context_mask,
                                                                 space_rope)
    return DiTBlock(self.spec, "time", self.grid, name="temporal")(x, cond, context,
                                                                    context_mask, time_rope)


class ExpertBlock(nn.Module):
  """CogVideoX block: one sequence [video; text] under full attention and a shared MLP, with
  separate ("expert") modulation and gates for the text and the video tokens. (CogVideoX
  puts text first; attention does not care about token order, and text last keeps the key
  mask a prefix, which is what the cuDNN kernel takes.)"""

  spec: DiTSpec

  def _expert_norm(self, name, x, text, cond):
    eps = self.spec.norm_eps
    shift, scale, gate, t_shift, t_scale, t_gate = Modulation(self.spec, 6,
                                                              name=f"{name}_adaln")(cond)
    norm = LayerNorm(epsilon=eps, name=f"{name}_norm")
    return (modulate(norm(x), shift, scale), modulate(norm(text), t_shift, t_scale),
            gate, t_gate)

  @nn.compact
  def __call__(self, carry, cond, mask, rope):
    x, text = carry
    spec, dtype = self.spec, jnp.dtype(self.spec.dtype)
    length = x.shape[1]
    h, h_text, gate, t_gate = self._expert_norm("norm1", x, text, cond)
    both = jnp.concatenate([h, h_text], axis=1)
    out = _attention(spec, "attn")(both, context_mask=mask, rope=rope)
    x = x + gate[:, None] * out[:, :length]
    text = text + t_gate[:, None] * out[:, length:]

    h, h_text, gate, t_gate = self._expert_norm("norm2", x, text, cond)
    out = Mlp(round(spec.width * spec.mlp_ratio), dtype, name="mlp")(
        jnp.concatenate([h, h_text], axis=1))
    x = constrain(x + gate[:, None] * out[:, :length], ("batch", "length", "embed"))
    text = constrain(text + t_gate[:, None] * out[:, length:], ("batch", "text_length", "embed"))
    return x, text


@functools.cache
def _scannable(block: type) -> type:
  """`block` with the `(carry, *broadcast) → (carry, None)` signature `nn.scan` wants."""

  class Scanned(block):
    def __call__(self, carry, *args):
      return super().__call__(carry, *args), None

  Scanned.__name__ = f"Scanned{block.__name__}"
  return Scanned


def _stack(spec: DiTSpec, block: type, fields: dict, carry, *args):
  """`depth` blocks `block(spec, **fields)`: `nn.scan` over stacked params (compile time
  independent of depth) or an unrolled loop, each optionally rematerialised by the configured
  policy. `fields` are static (shapes), `args` are broadcast to every block."""
  policy = REMAT_POLICIES[spec.remat_policy]
  if spec.scan_layers:
    unit = _scannable(block)
    if spec.remat_policy != "none":
      unit = nn.remat(unit, policy=policy, prevent_cse=False)
    stack = nn.scan(unit, variable_axes={"params": 0}, split_rngs={"params": True},
                    in_axes=(nn.broadcast,) * len(args), length=spec.depth,
                    metadata_params={nn.PARTITION_NAME: "layers"})
    carry, _ = stack(spec, **fields, name="blocks")(carry, *args)
    return carry
  unit = block if spec.remat_policy == "none" else nn.remat(block, policy=policy)
  for i in range(spec.depth):
    carry = unit(spec, **fields, name=f"block_{i}")(carry, *args)
  return carry


class DiT(nn.Module):
  spec: DiTSpec

  @nn.compact
  def __call__(self, x_bthwc, t, context, context_mask, block_residual=None,
               return_residual: bool = False, cameras=None):
    """`block_residual` (the block stack's output − input from an earlier call) skips the
    blocks (sampler feature caching); `return_residual` also returns this call's.
    `cameras` `(B, T, 12)` per frame of `x` (`spec.camera`; None = a static camera). The
    output has `spec.channels` channels; the input may carry more (frame conditioning)."""
    spec, dtype = self.spec, jnp.dtype(self.spec.dtype)
    _, frames, height, width, _ = x_bthwc.shape
    channels = spec.channels
    grid = (frames // spec.patch_size[0], height // spec.patch_size[1],
            width // spec.patch_size[2])

    tokens = embeddings.patchify(x_bthwc, spec.patch_size)
    x = Dense(spec.width, ("patch", "embed"), dtype=dtype, name="patch_embed")(tokens)
    if spec.pos_embed == "sincos":
      x = x + embeddings.sincos_3d(grid, spec.width).astype(dtype)
    if spec.camera:
      if cameras is None:
        cameras = jnp.broadcast_to(camera.named_path("static", frames), (x.shape[0], frames, 12))
      x = x + camera.CameraAdapter(spec.width, dtype, name="camera")(cameras, grid, frames)
    x = constrain(x, ("batch", "length", "embed"))

    temb = embeddings.TimestepEmbedding(spec.cond_dim, spec.time_frequency_dim, dtype=dtype,
                                        name="t_embed")(t)
    text = self._project_text(context)
    if spec.pooled_text:
      weights = context_mask[..., None].astype(jnp.float32)
      pooled = (context * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
      temb = temb + Dense(spec.cond_dim, ("text_embed", "embed"), dtype=dtype,
                          name="pooled_proj")(pooled)
    temb = constrain(temb, ("batch", "embed"))
    # adaLN-single: one projection of the timestep embedding, shared by every block.
    cond = temb if spec.adaln == "per_block" else Dense(
        6 * spec.width, ("embed", "mlp"), dtype=dtype, kernel_init=nn.initializers.zeros,
        name="t_block")(nn.silu(temb))

    if block_residual is None:
      h = self._blocks(x, cond, text, context_mask, grid)
    else:
      h = x + block_residual.astype(x.dtype)
    residual = h - x
    h = self._final_layer(h, temb)
    patch_dim = spec.patch_size[0] * spec.patch_size[1] * spec.patch_size[2] * channels
    in_axis = "embed"
    if spec.head_mlp_ratio:  # a patch of many frames is more than `width` linear features draw
      h = nn.gelu(Dense(int(spec.head_mlp_ratio * spec.width), ("embed", "mlp"), dtype=dtype,
                        name="final_mlp")(h), approximate=True)
      in_axis = "mlp"
    h = Dense(patch_dim, (in_axis, "patch"), dtype=dtype, kernel_init=nn.initializers.zeros,
              name="final_proj")(h)
    out = embeddings.unpatchify(h.astype(jnp.float32), grid, spec.patch_size, channels)
    return (out, residual) if return_residual else out

  def _project_text(self, context):
    spec, dtype = self.spec, jnp.dtype(self.spec.dtype)
    if spec.text_projection == "mlp":  # PixArt-α / Wan caption projection
      h = Dense(spec.width, ("text_embed", "embed"), dtype=dtype, name="context_proj")(context)
      context = nn.gelu(h, approximate=True)
      text = Dense(spec.width, ("embed", "mlp"), dtype=dtype, name="context_proj2")(context)
    else:
      text = Dense(spec.width, ("text_embed", "embed"), dtype=dtype, name="context_proj")(context)
    return constrain(text, ("batch", "text_length", "embed"))

  def _rope(self, grid, trailing=0):
    spec = self.spec
    if spec.pos_embed != "rope":
      return None
    return embeddings.rope_3d(grid, spec.head_dim, split=spec.rope_split, trailing=trailing)

  def _blocks(self, x, cond, text, context_mask, grid):
    spec = self.spec
    if spec.layout == "joint" and spec.registers:
      return self._blocks_with_registers(x, cond, text, context_mask, grid)
    if spec.layout == "joint":
      return _stack(spec, DiTBlock, {}, x, cond, text, context_mask, self._rope(grid))
    if spec.layout == "factorized":
      rope = (self._rope((1, grid[1], grid[2])), self._rope((grid[0], 1, 1)))
      return _stack(spec, FactorizedBlock, {"grid": grid}, x, cond, text, context_mask, rope)
    # expert: text tokens join the sequence (identity rotation for them), masked where padded.
    mask = jnp.concatenate([jnp.ones(x.shape[:2], bool), context_mask], axis=1)
    x, _ = _stack(spec, ExpertBlock, {}, (x, text), cond, mask,
                  self._rope(grid, trailing=text.shape[1]))
    return x

  def _blocks_with_registers(self, x, cond, text, context_mask, grid):
    """Learned tokens without a position (identity rotation) join the video tokens through
    the blocks and are dropped before the head: memory that no patch has to hold (Darcet et
    al. 2024, "Vision Transformers Need Registers")."""
    spec = self.spec
    registers = self.param("registers", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), (None, "embed")), (spec.registers, spec.width),
        jnp.float32)
    registers = jnp.broadcast_to(registers.astype(x.dtype), (x.shape[0], *registers.shape))
    h = _stack(spec, DiTBlock, {}, jnp.concatenate([x, registers], axis=1), cond, text,
               context_mask, self._rope(grid, trailing=spec.registers))
    return h[:, :x.shape[1]]

  def _final_layer(self, x, temb):
    spec, dtype = self.spec, jnp.dtype(self.spec.dtype)
    if spec.layout == "expert":  # CogVideoX normalises twice: norm_final, then AdaLN
      x = LayerNorm(epsilon=spec.norm_eps, name="final_norm_pre")(x)
    if spec.adaln == "single":
      table = self.param("final_scale_shift_table", nn.with_logical_partitioning(
          nn.initializers.zeros, (None, "embed")), (2, spec.width), jnp.float32)
      shift, scale = table[0] + temb, table[1] + temb
    else:
      shift, scale = jnp.split(
          Dense(2 * spec.width, ("embed", "mlp"), dtype=dtype, kernel_init=nn.initializers.zeros,
                name="final_adaln")(nn.silu(temb)), 2, axis=-1)
    norm = LayerNorm(use_scale=spec.layout == "expert", epsilon=spec.norm_eps, name="final_norm")
    return modulate(norm(x), shift, scale)
