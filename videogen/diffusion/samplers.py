"""Samplers: Euler for rectified flow, DDIM (η) for the DDPM family, with classifier-free
guidance. Each is one `lax.fori_loop` inside whatever `jax.jit` calls it: one dispatch per
video, not one per step.

`denoise(x, network_time, text) → prediction` is the model closure; `text` and `null_text`
are `(tokens, mask)` pairs (or any pytree the closure understands).
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from videogen.diffusion.objectives import Diffusion

Denoise = Callable[[jax.Array, jax.Array, Any], jax.Array]


def rescale_guidance(guided_out: jax.Array, cond: jax.Array, rescale: float) -> jax.Array:
  """Guidance rescale (Lin et al. 2023): pull the guided prediction's per-example std back
  toward the conditional one's, which strong guidance inflates (over-saturation)."""
  axes = tuple(range(1, cond.ndim))
  ratio = cond.std(axes, keepdims=True) / (guided_out.std(axes, keepdims=True) + 1e-8)
  return rescale * guided_out * ratio + (1.0 - rescale) * guided_out


def guided(denoise: Denoise, x, t_net, text, null_text, guidance: float, rescale: float = 0.0):
  """CFG: uncond + g·(cond − uncond), both halves in one batched call; optional rescale."""
  if guidance == 1.0:
    return denoise(x, t_net, text)
  both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), text, null_text)
  out = denoise(jnp.concatenate([x, x]), jnp.concatenate([t_net, t_net]), both)
  cond, uncond = jnp.split(out, 2)
  combined = uncond + guidance * (cond - uncond)
  return rescale_guidance(combined, cond, rescale) if rescale else combined


def ddim_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
  """Evenly spaced integer timesteps from T-1 down to 0 ("trailing" spacing)."""
  return np.round(np.linspace(num_timesteps - 1, 0, steps)).astype(np.int32)


def sample(diffusion: Diffusion, denoise: Denoise, noise: jax.Array, text, null_text, *,
           steps: int, guidance: float, key: jax.Array, eta: float = 0.0,
           shift: float | None = None, guidance_rescale: float = 0.0) -> jax.Array:
  """Runs the reverse process from `noise` (x at t = T) and returns x0 estimates.

  `shift` (flow only) warps the time grid toward the noise end; None uses the training
  shift. `guidance_rescale` in [0, 1] (0 = plain CFG)."""
  batch = noise.shape[0]

  def predict(x, t_net):
    return guided(denoise, x, jnp.full((batch,), t_net, jnp.float32), text, null_text, guidance,
                  guidance_rescale)

  if diffusion.is_flow:
    grid = diffusion if shift is None else dataclasses.replace(diffusion, shift=shift)
    times = grid.shift_time(jnp.linspace(1.0, 0.0, steps + 1))

    def euler_step(i, x):
      velocity = predict(x, diffusion.network_time(times[i]))
      return x + (times[i + 1] - times[i]) * velocity

    return jax.lax.fori_loop(0, steps, euler_step, noise)

  timesteps = jnp.asarray(ddim_timesteps(diffusion.num_timesteps, steps))

  def ddim_step(i, carry):
    x, key = carry
    key, noise_key = jax.random.split(key)
    t = jnp.full((batch,), timesteps[i])
    x0, eps = diffusion.x0_and_eps(predict(x, diffusion.network_time(timesteps[i])), x, t)
    ab = diffusion.alpha_bar(timesteps[i])
    ab_prev = jnp.where(i + 1 < steps, diffusion.alpha_bar(timesteps[jnp.minimum(i + 1, steps - 1)]),
                        1.0)
    sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    direction = jnp.sqrt(jnp.maximum(1 - ab_prev - sigma ** 2, 0.0)) * eps
    x = jnp.sqrt(ab_prev) * x0 + direction + sigma * jax.random.normal(noise_key, x.shape)
    return x, key

  x, _ = jax.lax.fori_loop(0, steps, ddim_step, (noise, key))
  return x
