"""Dense layers, norms and MLPs whose parameters carry logical axis names.

Projections are written as `self.param` + `einsum` rather than `nn.DenseGeneral`:
DenseGeneral with >2-D kernels and logical partitioning breaks under `jax.set_mesh`
(flax #3676), and the einsum form is what MaxText uses too.
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype
Initializer = Callable[..., jax.Array]

default_kernel_init = nn.initializers.xavier_uniform()


def param(module: nn.Module, name: str, init: Initializer, shape, axes, dtype=jnp.float32):
  """`module.param(name, ...)` whose value carries the logical axis names `axes`."""
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """Shards an activation by logical axis names (a no-op outside a mesh)."""
  return nn.with_logical_constraint(x, tuple(names))


class Dense(nn.Module):
  """`y = x @ W + b` over the last axis, with logical names for W's two axes."""

  features: int
  kernel_axes: tuple[str | None, str | None]
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  kernel_init: Initializer = default_kernel_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
        (x.shape[-1], self.features), jnp.float32)
    y = jnp.einsum("...i,io->...o", x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      bias = self.param(
          "bias", nn.with_logical_partitioning(nn.initializers.zeros, self.kernel_axes[1:]),
          (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


class LayerNorm(nn.Module):
  """LayerNorm computed in f32; `use_scale=False` for AdaLN, where modulation supplies it."""

  use_scale: bool = True
  epsilon: float = 1e-6
  axis: str = "embed"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = x.dtype
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    if self.use_scale:
      scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, (self.axis,)),
                         (x.shape[-1],), jnp.float32)
      bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, (self.axis,)),
                        (x.shape[-1],), jnp.float32)
      y = y * scale + bias
    return y.astype(dtype)


class RMSNorm(nn.Module):
  """RMS normalisation over the last axis (f32), with a learned scale named `axis`."""

  axis: str = "embed"
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.epsilon)
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, (self.axis,)),
                       (x.shape[-1],), jnp.float32)
    return (y * scale).astype(x.dtype)


class Mlp(nn.Module):
  """Transformer feed-forward: Dense → GELU(tanh) → Dense, hidden axis sharded as `mlp`."""

  hidden: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = Dense(self.hidden, ("embed", "mlp"), dtype=self.dtype, name="fc1")(x)
    h = constrain(nn.gelu(h, approximate=True), ("batch", "length", "mlp"))
    return Dense(x.shape[-1], ("mlp", "embed"), dtype=self.dtype, name="fc2")(h)


def per_token(values: jax.Array) -> jax.Array:
  """Per-example `(B, D)` values as `(B, 1, D)`, to broadcast over tokens; per-token
  `(B, L, D)` ones as they are."""
  return values if values.ndim == 3 else values[:, None]


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
  """AdaLN modulation of `(B, L, D)` tokens; shift/scale per example `(B, D)` or per token."""
  return x * (1 + per_token(scale)) + per_token(shift)
