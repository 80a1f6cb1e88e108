"""Feature caching across sampling steps: the DiT's block-stack residual from one step reused
at the next ones (FORA/TeaCache style), and the policies that say when to recompute it.

The samplers (`videogen.diffusion.samplers`) wrap their model closure with
`cached_network`; the closure takes `block_residual=` and `return_residual=` (the DiT's).
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

CACHE_POLICIES = ("none", "every", "threshold")


@dataclasses.dataclass(frozen=True)
class FeatureCache:
  """Reuse of the DiT's block-stack residual (output − input of the blocks, FORA/TeaCache
  style) across adjacent steps: the patch embedding, conditioning and final layer still run
  every step, the blocks only when the policy says. `every`: recompute on every k-th step.
  `threshold`: recompute once the noisy input has moved by more than `threshold` (mean
  relative L1) since the last full evaluation."""
  policy: str = "none"
  every: int = 2
  threshold: float = 0.05

  def __post_init__(self):
    if self.policy not in CACHE_POLICIES:
      raise ValueError(f"sample.cache.policy={self.policy!r} is not one of {CACHE_POLICIES}")


def cached_network(denoise: Callable, cache: FeatureCache, first: int):
  """`network(x, t, text, state, i) → (prediction, state)`: the model call under `cache`,
  whose first step is `first`. `state` = (block residual, input at its last full
  evaluation)."""

  def full(x, t, text, state):
    out, residual = denoise(x, t, text, return_residual=True)
    return out, (residual, x)

  def reuse(x, t, text, state):
    residual, _ = state
    out, _ = denoise(x, t, text, block_residual=residual, return_residual=True)
    return out, state

  def network(x, t, text, state, i):
    if cache.policy == "none":
      return denoise(x, t, text), state
    if cache.policy == "every":
      recompute = (i - first) % cache.every == 0
    else:
      reference = state[1]
      change = jnp.mean(jnp.abs(x - reference)) / (jnp.mean(jnp.abs(reference)) + 1e-8)
      recompute = (i == first) | (change > cache.threshold)
    return jax.lax.cond(recompute, full, reuse, x, t, text, state)

  return network


def initial_state(denoise: Callable, cache: FeatureCache, x, t, text):
  """The state `cached_network` starts from, zeros shaped for the network's inputs
  `(x, t, text)` (the CFG-stacked batch under guidance); () without a cache."""
  if cache.policy == "none":
    return ()
  _, residual = jax.eval_shape(lambda x, t, text: denoise(x, t, text, return_residual=True),
                               x, t, text)
  return jnp.zeros(residual.shape, residual.dtype), jnp.zeros_like(x)
