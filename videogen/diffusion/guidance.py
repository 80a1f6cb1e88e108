"""Guidance: steering a network's prediction at sampling time.

Classifier-free guidance combines the conditional and unconditional (null or negative
prompt) predictions of one batched call, optionally with guidance rescale. Reconstruction
guidance steers the generated part of a frame-conditioned sample toward agreeing with the
known part. Pure maths on `denoise(x, network_time, text)` outputs; the samplers
(`videogen.diffusion.samplers`) call both once per model evaluation.
"""
from typing import Callable

import jax
import jax.numpy as jnp

from videogen.diffusion.conditions import FrameCondition
from videogen.diffusion.objectives import Diffusion


def cfg_batch(x, t_net, text, null_text, guidance: float):
  """The network's inputs `(x, t_net, text)` under guidance g: the conditional and the
  unconditional halves stacked into one batch, or (g = 1, no guidance) the conditional alone."""
  if guidance == 1.0:
    return x, t_net, text
  both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), text, null_text)
  return jnp.concatenate([x, x]), jnp.concatenate([t_net, t_net]), both


def rescale_guidance(guided_out: jax.Array, cond: jax.Array, rescale: float) -> jax.Array:
  """Guidance rescale (Lin et al. 2023): pull the guided prediction's per-example std back
  toward the conditional one's, which strong guidance inflates (over-saturation)."""
  axes = tuple(range(1, cond.ndim))
  ratio = cond.std(axes, keepdims=True) / (guided_out.std(axes, keepdims=True) + 1e-8)
  return rescale * guided_out * ratio + (1.0 - rescale) * guided_out


def guided(denoise: Callable, x, t_net, text, null_text, guidance: float, rescale: float = 0.0,
           min_noise: float = 0.0):
  """CFG: uncond + g·(cond − uncond), both halves in one batched call; optional rescale.
  `min_noise` > 0 limits guidance to noise levels `t_net / 1000` ≥ it (guidance in an
  interval, Kynkäänniemi et al. 2024): below, the conditional prediction alone.
  A `denoise` that returns `(prediction, aux)` gets `(guided prediction, aux)` back."""
  if guidance == 1.0:
    return denoise(x, t_net, text)
  out = denoise(*cfg_batch(x, t_net, text, null_text, guidance))
  prediction, aux = out if isinstance(out, tuple) else (out, None)
  cond, uncond = jnp.split(prediction, 2)
  if min_noise:
    guidance = jnp.where(t_net / 1000.0 >= min_noise, guidance, 1.0)
    guidance = guidance.reshape(guidance.shape + (1,) * (cond.ndim - 1))
  combined = uncond + guidance * (cond - uncond)
  combined = rescale_guidance(combined, cond, rescale) if rescale else combined
  return (combined, aux) if isinstance(out, tuple) else combined


def reconstruction_guided(diffusion: Diffusion, model, x, t_net, condition: FrameCondition,
                          weight: float):
  """Reconstruction guidance (Ho et al. 2022): `model(x) → (prediction, state)` re-expressed
  for the x0 estimate x̂0 − (w·α_t/2)·∇ₓ‖m·(x̂0(x) − known)‖², one extra backward pass
  through the model. Replacing the known part alone keeps it exact but leaves the rest only
  loosely coupled to it (seams)."""
  if diffusion.is_flow:
    t = diffusion.flow_time(t_net)
    signal, to_x0 = 1.0 - t, lambda out, x: x - t * out
    from_x0_shift = lambda out, d: out - d / t  # v = (x − x0)/t  # noqa: E731
  else:
    ab = diffusion.alpha_bar(diffusion.timestep(t_net))
    signal = jnp.sqrt(ab)
    to_x0 = lambda out, x: diffusion.x0_estimate(out, x, t_net)  # noqa: E731
    scale = (jnp.sqrt(ab) if diffusion.objective == "eps" else 1.0) / jnp.sqrt(1 - ab)
    from_x0_shift = lambda out, d: out - scale * d  # noqa: E731

  def mismatch(x):
    out, state = model(x)
    error = condition.mask * (to_x0(out, x) - condition.known)
    return jnp.sum(jnp.square(error)), (out, state)

  gradient, (out, state) = jax.grad(mismatch, has_aux=True)(x)
  return from_x0_shift(out, -0.5 * weight * signal * gradient), state
