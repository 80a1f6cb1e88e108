"""The one attention function every layout calls, with a backend switch.

Layout is BTNH: q `(B, Lq, H, Dh)`, k and v `(B, Lk, H, Dh)`; `key_mask` `(B, Lk)` is True
where a key may be attended to. Every mask the models build is a prefix (valid keys first,
padding last): the cuDNN kernel takes it as a per-sequence key length.
"""
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name
from jax.sharding import PartitionSpec as P

from videogen.models.layers import LayerNorm, RMSNorm, constrain
from videogen.models.lora import LoRA

# xla: jax.nn.dot_product_attention's XLA path; cudnn: its cuDNN flash kernel (GPU);
# reference: plain einsums; blockwise: flash-style online softmax over key blocks in pure JAX
# (memory O(queries × block) instead of O(queries × keys), on any backend).
# splash: the Pallas splash-attention TPU kernel (MaxText's), padding as segment ids.
BACKENDS = ("xla", "cudnn", "reference", "blockwise", "splash")
SPLASH_BLOCK = 128
# Keys per blockwise step: on CPU, tiles of 128 keys × all queries stay nearer the cache
# (7% less CPU time per vs-pytorch-dit train step than 512); accelerators prefer larger matmuls.
KEY_BLOCK = {"cpu": 128}
DEFAULT_KEY_BLOCK = 512
# How self-attention runs when the token axis ("length") is sharded over the `sequence` mesh
# axis: "all_gather" leaves it to XLA (k and v gathered to every shard); "ulysses"
# (DeepSpeed-Ulysses) re-shards q, k, v from sequence to heads with one all-to-all, attends
# over the whole sequence locally for its heads, and all-to-alls back.
# "ring": each device keeps its query block and passes key/value blocks around the `sequence`
# axis (`ppermute` under `shard_map`), accumulating with the flash recurrence: no device ever
# holds all keys.
SEQUENCE_PARALLEL = ("all_gather", "ulysses", "ring")
# Normalisation of q and k before the logits: per head (RMS: ours and Open-Sora; LayerNorm:
# CogVideoX), across all heads at once (RMS: Wan), or none.
QK_NORMS = ("rms", "layer", "rms_across_heads", "none")


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                          key_mask: jax.Array | None = None,
                          backend: str = "xla") -> jax.Array:
  """Softmax attention; `backend` picks the kernel, all compute the same function."""
  if backend == "reference":
    return _reference_attention(q, k, v, key_mask)
  if backend == "blockwise":
    return blockwise_attention(q, k, v, key_mask)
  if backend == "splash":
    return _per_shard(splash_attention, q, k, v, key_mask)
  if backend not in BACKENDS:
    raise ValueError(f"model.attention_backend={backend!r}; expected one of {BACKENDS}")
  if key_mask is None:
    return jax.nn.dot_product_attention(q, k, v, implementation=backend)
  if backend == "cudnn":  # its mask must be (Lq, Lk)-shaped; a key length is what it wants
    return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=key_lengths(key_mask),
                                        implementation=backend)
  return jax.nn.dot_product_attention(q, k, v, mask=key_mask[:, None, None, :],
                                      implementation=backend)


def _per_shard(attend, q, k, v, key_mask):
  """`attend` on each device's (batch, heads) shard under `shard_map`: a Mosaic kernel is
  not partitioned by XLA. Tokens are whole on every shard (gathered if sharded)."""
  if jax.sharding.get_abstract_mesh().empty:
    return attend(q, k, v, key_mask)
  batch, _, heads, _ = nn.logical_to_mesh_axes(("batch", "length", "heads", "kv"))
  tokens = P(batch, None, heads, None)
  mask = jnp.ones(k.shape[:2], bool) if key_mask is None else key_mask
  return jax.shard_map(attend, in_specs=(tokens, tokens, tokens, P(batch, None)),
                       out_specs=tokens, check_vma=False)(q, k, v, mask)


def splash_attention(q, k, v, key_mask=None, block: int = SPLASH_BLOCK,
                     interpret: bool | None = None):
  """The Pallas splash-attention kernel: compiled on TPU; elsewhere (`interpret` None or
  True) the Pallas interpreter runs it, slowly (tests).
  Sequences are padded to whole blocks; padded and masked keys get their own segment id,
  so no query attends to them, and padded queries are dropped."""
  # Pallas's TPU kernels load only when chosen: about 0.6 s added to every model import.
  from jax.experimental.pallas.ops.tpu.splash_attention import (
      splash_attention_kernel as splash, splash_attention_mask as masks)
  b, lq, heads, dim = q.shape
  lk = k.shape[1]
  pad = lambda x, n: jnp.pad(x, ((0, 0), (0, -n % block), (0, 0), (0, 0)))  # noqa: E731
  heads_first = lambda x: x.transpose(0, 2, 1, 3)  # noqa: E731  (B, H, L, Dh)
  q = heads_first(pad(q * jnp.asarray(dim ** -0.5, q.dtype), lq))
  k, v = heads_first(pad(k, lk)), heads_first(pad(v, lk))
  valid = jnp.ones((b, lk), bool) if key_mask is None else key_mask
  valid = jnp.pad(valid, ((0, 0), (0, k.shape[2] - lk)))
  segments = splash.SegmentIds(q=jnp.zeros((b, q.shape[2]), jnp.int32),
                               kv=jnp.where(valid, 0, 1).astype(jnp.int32))
  kernel = splash.make_splash_mha(
      masks.MultiHeadMask([masks.FullMask((q.shape[2], k.shape[2]))] * heads),
      block_sizes=splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                                    block_q_dkv=block, block_kv_dkv=block,
                                    block_kv_dkv_compute=block, block_q_dq=block,
                                    block_kv_dq=block),
      head_shards=1, q_seq_shards=1,
      interpret=jax.default_backend() != "tpu" if interpret is None else interpret)
  out = jax.vmap(kernel)(q, k, v, segment_ids=segments)
  return out.transpose(0, 2, 1, 3)[:, :lq]


def key_lengths(key_mask: jax.Array) -> jax.Array:
  """A prefix key mask `(B, Lk)` as valid-key counts `(B,)` (at least one: an all-padding row
  attends to its first key rather than to nothing)."""
  return jnp.maximum(key_mask.sum(-1, dtype=jnp.int32), 1)


def _reference_attention(q, k, v, key_mask):
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
  if key_mask is not None:
    logits = jnp.where(key_mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


def blockwise_attention(q, k, v, key_mask=None, block: int | None = None):
  """Softmax attention computed one key block at a time with a running max and sum (the
  flash-attention recurrence) under `lax.scan`; the backward pass (FlashAttention-2's) keeps
  only the output and the per-query max and sum and recomputes each block's scores: neither
  pass holds the full `(Lq, Lk)` score matrix."""
  b, lk = k.shape[:2]
  block = min(block or KEY_BLOCK.get(jax.default_backend(), DEFAULT_KEY_BLOCK), lk)
  pad = -lk % block
  mask = jnp.ones((b, lk), bool) if key_mask is None else key_mask
  if pad:
    k, v = (jnp.pad(a, ((0, 0), (0, pad), (0, 0), (0, 0))) for a in (k, v))
    mask = jnp.pad(mask, ((0, 0), (0, pad)))
  # Heads-first (B, H, L, Dh) inside: the per-block products are then plain batched matmuls,
  # with no per-block transposes of q, k or v.
  heads_first = lambda a: a.swapaxes(1, 2)  # noqa: E731
  out = _blockwise(heads_first(q), heads_first(k), heads_first(v), mask, block)
  return heads_first(out)


def _key_blocks(block, *arrays):
  """Each `(B, H, Lk, …)` or `(B, Lk)` array as `(Lk/block, …)` blocks for `lax.scan`."""
  def split(a):
    axis = 1 if a.ndim == 2 else 2
    a = a.reshape(*a.shape[:axis], -1, block, *a.shape[axis + 1:])
    return jnp.moveaxis(a, axis, 0)
  return tuple(split(a) for a in arrays)


def _from_key_blocks(a):
  """`(blocks, B, H, block, Dh)` → `(B, H, Lk, Dh)`."""
  a = jnp.moveaxis(a, 0, 2)
  return a.reshape(*a.shape[:2], -1, a.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _blockwise(q, k, v, mask, block):
  return _blockwise_forward(q, k, v, mask, block)[0]


def _block_logits(q, kb, mb, keys_first=False):
  """Scaled f32 logits of `q` (B, H, Lq, Dh) against one key block, masked keys at the
  lowest float: (B, H, Lq, block), or (B, H, block, Lq) with `keys_first`."""
  scale = q.shape[-1] ** -0.5
  if keys_first:
    logits = jnp.einsum("bhkd,bhqd->bhkq", kb, q, preferred_element_type=jnp.float32)
    return jnp.where(mb[:, None, :, None], logits * scale, jnp.finfo(jnp.float32).min)
  logits = jnp.einsum("bhqd,bhkd->bhqk", q, kb, preferred_element_type=jnp.float32)
  return jnp.where(mb[:, None, None, :], logits * scale, jnp.finfo(jnp.float32).min)


def _online_softmax_init(q, v):
  """The running max, sum and weighted values of `q` (B, H, Lq, Dh) before any key block."""
  b, h, lq, _ = q.shape
  return (jnp.full((b, h, lq), jnp.finfo(jnp.float32).min, jnp.float32),
          jnp.zeros((b, h, lq), jnp.float32), jnp.zeros((b, h, lq, v.shape[-1]), jnp.float32))


def _online_softmax_step(carry, q, kb, vb, mb):
  """One key block of the flash-attention recurrence (heads-first; blockwise and ring
  attention both run it): rescale what came before to the new running max, add this block."""
  running_max, total, acc = carry
  logits = _block_logits(q, kb, mb)
  new_max = jnp.maximum(running_max, logits.max(-1))
  weights = jnp.exp(logits - new_max[..., None])
  correction = jnp.exp(running_max - new_max)
  update = jnp.einsum("bhqk,bhkd->bhqd", weights.astype(vb.dtype), vb,
                      preferred_element_type=jnp.float32)
  return (new_max, total * correction + weights.sum(-1), acc * correction[..., None] + update)


def _blockwise_forward(q, k, v, mask, block):
  step = lambda carry, xs: (_online_softmax_step(carry, q, *xs), None)  # noqa: E731
  (row_max, total, acc), _ = jax.lax.scan(step, _online_softmax_init(q, v),
                                          _key_blocks(block, k, v, mask))
  inv_total = 1.0 / total
  out = acc * inv_total[..., None]
  # The max and 1/sum (not their log-sum-exp) rebuild the weights exactly, even in a row
  # whose keys are all masked.
  return out.astype(q.dtype), (q, k, v, mask, out, row_max, inv_total)


def _blockwise_backward(block, residuals, d_out):
  q, k, v, mask, out, row_max, inv_total = residuals
  scale = q.shape[-1] ** -0.5
  # Tiles are (keys, queries): three of the four products then contract a trailing axis.
  delta = (d_out.astype(jnp.float32) * out).sum(-1)[:, :, None, :]  # rowsum(dO·O)

  def step(dq, xs):
    kb, vb, mb = xs
    weights = (jnp.exp(_block_logits(q, kb, mb, keys_first=True) - row_max[:, :, None, :])
               * inv_total[:, :, None, :])
    dv = jnp.einsum("bhkq,bhqd->bhkd", weights.astype(d_out.dtype), d_out,
                    preferred_element_type=jnp.float32)
    d_weights = jnp.einsum("bhkd,bhqd->bhkq", vb, d_out, preferred_element_type=jnp.float32)
    d_logits = (weights * (d_weights - delta)).astype(q.dtype)
    dk = jnp.einsum("bhkq,bhqd->bhkd", d_logits, q, preferred_element_type=jnp.float32)
    dq = dq + jnp.einsum("bhkq,bhkd->bhqd", d_logits, kb, preferred_element_type=jnp.float32)
    return dq, ((dk * scale).astype(k.dtype), dv.astype(v.dtype))

  dq, (dk, dv) = jax.lax.scan(step, jnp.zeros(q.shape, jnp.float32),
                              _key_blocks(block, k, v, mask))
  return ((dq * scale).astype(q.dtype), _from_key_blocks(dk), _from_key_blocks(dv), None)


_blockwise.defvjp(_blockwise_forward, _blockwise_backward)


def ring_attention(q, k, v, key_mask, batch_spec, heads_spec, axis: str = "sequence"):
  """Self-attention with q, k, v sharded along tokens over mesh axis `axis` (of the mesh
  set by `jax.set_mesh`). `batch_spec`/`heads_spec`: the mesh axes of those dimensions."""
  mask = jnp.ones(k.shape[:2], bool) if key_mask is None else key_mask
  mesh = jax.sharding.get_abstract_mesh()
  batch_axes = (batch_spec,) if isinstance(batch_spec, str) else tuple(batch_spec or ())
  if q.shape[0] % math.prod(mesh.shape[a] for a in batch_axes):
    batch_spec = None  # e.g. init's batch of one: replicate the batch inside the ring
  tokens = P(batch_spec, axis, heads_spec, None)

  def local(q, k, v, mask):
    size = jax.lax.axis_size(axis)
    ring = [(i, (i + 1) % size) for i in range(size)]
    q, k, v = (a.swapaxes(1, 2) for a in (q, k, v))  # heads-first, as the recurrence wants

    def step(carry, _):
      flash, (kb, vb, mb) = carry
      flash = _online_softmax_step(flash, q, kb, vb, mb)
      return (flash, jax.lax.ppermute((kb, vb, mb), axis, ring)), None

    ((_, total, acc), _), _ = jax.lax.scan(
        jax.checkpoint(step), (_online_softmax_init(q, v), (k, v, mask)), None, length=size)
    return (acc / total[..., None]).astype(q.dtype).swapaxes(1, 2)

  return jax.shard_map(local, in_specs=(tokens, tokens, tokens, P(batch_spec, axis)),
                       out_specs=tokens, check_vma=False)(q, k, v, mask)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates pairs (x[2i], x[2i+1]) of `x` `(B, L, H, Dh)` by angles given as `(L, Dh/2)`."""
  x32 = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
  x_even, x_odd = x32[..., 0], x32[..., 1]
  cos, sin = cos[None, :, None, :], sin[None, :, None, :]
  rotated = jnp.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], axis=-1)
  return rotated.reshape(x.shape).astype(x.dtype)


def _mesh_has(axis: str) -> bool:
  mesh = jax.sharding.get_abstract_mesh()
  return not mesh.empty and axis in mesh.axis_names and mesh.shape[axis] > 1


class RMSNormAcrossHeads(nn.Module):
  """RMS over all heads' channels of a `(B, L, H, Dh)` tensor, scale `(H, Dh)` (Wan)."""

  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.square(x32).mean((-2, -1), keepdims=True) + self.epsilon)
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones,
                                                             ("heads", "kv")),
                       x.shape[-2:], jnp.float32)
    return (y * scale).astype(x.dtype)


def qk_normalizer(kind: str, name: str):
  if kind == "rms":  # RMS-normalised q/k keep attention logits bounded in bf16.
    return RMSNorm("kv", name=name)
  if kind == "layer":
    return LayerNorm(axis="kv", name=name)
  if kind == "rms_across_heads":
    return RMSNormAcrossHeads(name=name)
  if kind == "none":
    return lambda x: x
  raise ValueError(f"model.qk_norm={kind!r}; expected one of {QK_NORMS}")


class MultiHeadAttention(nn.Module):
  """Self- or cross-attention (cross when `context` is given) with optional RoPE on q and k.

  Projections keep heads as their own axis — kernels `(embed, heads, kv)` and
  `(heads, kv, embed)`, as MaxText does — so no reshape splits or merges a sharded heads axis,
  and the layout matches per-head checkpoint formats. `lora_rank > 0` adds a LoRA adapter
  (videogen/models/lora.py) to each of the four projections.
  """

  num_heads: int
  backend: str = "xla"
  dtype: jnp.dtype = jnp.float32
  qk_norm: str = "rms"
  sequence_parallel: str = "all_gather"  # see SEQUENCE_PARALLEL
  lora_rank: int = 0
  lora_alpha: float = 0.0

  def _kernel(self, name, shape, axes):
    return self.param(name, nn.with_logical_partitioning(nn.initializers.xavier_uniform(
        in_axis=0 if axes[0] == "embed" else (0, 1),
        out_axis=(1, 2) if axes[0] == "embed" else 2), axes), shape, jnp.float32)

  def _bias(self, name, shape, axes):
    return self.param(name, nn.with_logical_partitioning(nn.initializers.zeros, axes), shape,
                      jnp.float32)

  def _lora(self, name, inputs, features, in_axes, out_axes):
    """The projection `name`'s adapter update, or 0 without adapters."""
    if not self.lora_rank:
      return 0
    return LoRA(features, in_axes, out_axes, self.lora_rank, self.lora_alpha, self.dtype,
                name=f"{name}_lora")(inputs)

  def _heads(self, name, inputs, head_dim):
    dim = inputs.shape[-1]
    kernel = self._kernel(f"{name}_kernel", (dim, self.num_heads, head_dim),
                          ("embed", "heads", "kv"))
    bias = self._bias(f"{name}_bias", (self.num_heads, head_dim), ("heads", "kv"))
    y = jnp.einsum("bld,dhk->blhk", inputs.astype(self.dtype), kernel.astype(self.dtype))
    y = y + self._lora(name, inputs, (self.num_heads, head_dim), ("embed",), ("heads", "kv"))
    return constrain(y + bias.astype(self.dtype), ("batch", "length", "heads", "kv"))

  @nn.compact
  def __call__(self, x, context=None, context_mask=None, rope=None):
    dim = x.shape[-1]
    head_dim = dim // self.num_heads
    kv_input = x if context is None else context
    q, k, v = (self._heads("query", x, head_dim), self._heads("key", kv_input, head_dim),
               self._heads("value", kv_input, head_dim))
    q = qk_normalizer(self.qk_norm, "query_norm")(q)
    k = qk_normalizer(self.qk_norm, "key_norm")(k)
    if rope is not None:
      q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    q, k, v = (checkpoint_name(a, n) for a, n in ((q, "query"), (k, "key"), (v, "value")))
    if self.sequence_parallel == "ulysses" and context is None:
      q, k, v = (constrain(a, ("batch", None, "heads_sequence", "kv")) for a in (q, k, v))
    if self.sequence_parallel == "ring" and context is None and _mesh_has("sequence"):
      batch_axes, _, heads_axes, _ = nn.logical_to_mesh_axes(("batch", "length", "heads", "kv"))
      out = ring_attention(q, k, v, context_mask, batch_axes, heads_axes)
    else:
      out = dot_product_attention(q, k, v, context_mask, self.backend)
    out = checkpoint_name(constrain(out, ("batch", "length", "heads", "kv")), "attention_out")
    kernel = self._kernel("out_kernel", (self.num_heads, head_dim, dim), ("heads", "kv", "embed"))
    bias = self._bias("out_bias", (dim,), ("embed",))
    y = jnp.einsum("blhk,hkd->bld", out.astype(self.dtype), kernel.astype(self.dtype))
    y = y + self._lora("out", out, (dim,), ("heads", "kv"), ("embed",))
    return y + bias.astype(self.dtype)
