"""Samplers behind one `sample(...)`, with classifier-free guidance, frame/region conditions
and transformer feature caching (`guidance.py`, `conditions.py` and `feature_cache.py` beside
this module).

DDPM family (ε / v objectives): `ddpm` (ancestral: DDIM with η = 1, whose noise is exactly
the DDPM posterior's), `ddim` (η from the config, 0 = deterministic) and `dpm_solver++`
(DPM-Solver++(2M), Lu et al. 2022: second-order multistep in log-SNR on x0 predictions).
Rectified flow: `euler` and `heun` (second order, Karras et al. 2022; the last step is Euler),
on a time grid warped by the (optionally resolution-dependent) shift. `euler` with η > 0
(`sample.eta`) is stochastic: DDIM's η on the flow path, η = 1 drawing the DDPM posterior's
noise at every step.

Each sampler is one `lax.fori_loop` inside whatever `jax.jit` calls it: one dispatch per
video, not one per step. `denoise(x, network_time, text) → prediction` is the model closure;
`text` and `null_text` are `(tokens, mask)` pairs (or any pytree the closure understands).
For feature caching the closure also takes `block_residual=` and `return_residual=`
(`videogen.sampling.generator` passes the DiT's); for a self-conditioned model, `estimate=`
(its previous x0 estimate, carried from step to step for each CFG branch).
"""
import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from videogen.diffusion import feature_cache, schedules
from videogen.diffusion.conditions import FrameCondition
from videogen.diffusion.guidance import cfg_batch, guided, reconstruction_guided
from videogen.diffusion.objectives import Diffusion

Denoise = Callable[..., Any]
FLOW_SAMPLERS = ("euler", "heun")
DDPM_SAMPLERS = ("ddpm", "ddim", "dpm_solver++")
SAMPLERS = FLOW_SAMPLERS + DDPM_SAMPLERS


def default_sampler(diffusion: Diffusion) -> str:
  return "euler" if diffusion.is_flow else "ddim"


def check_sampler(diffusion: Diffusion, sampler: str) -> None:
  family = FLOW_SAMPLERS if diffusion.is_flow else DDPM_SAMPLERS
  if sampler not in family:
    raise ValueError(f"sampler {sampler!r} does not fit diffusion.objective="
                     f"{diffusion.objective!r}; choose from {family}")


def check_eta(diffusion: Diffusion, sampler: str, eta: float) -> None:
  """Flow samplers take η only as stochastic Euler steps, 0 ≤ η ≤ 1."""
  if diffusion.is_flow and eta and (sampler != "euler" or eta > 1):
    raise ValueError(f"sample.eta={eta}: stochastic flow steps take the euler sampler and "
                     f"0 <= eta <= 1 (sampler {sampler!r})")


def resolution_shift(shift: float, tokens: int, base_tokens: int) -> float:
  """SD3/Open-Sora style: the flow time shift grows with √(tokens / base_tokens), so a larger
  or longer video spends more steps at high noise, where its layout is decided."""
  return shift * math.sqrt(tokens / base_tokens) if base_tokens else shift


def first_step(steps: int, strength: float) -> int:
  """The step SDEdit starts at: only the last round(strength · steps) steps run (at least one)."""
  return steps - max(1, round(steps * strength))


def flow_times(diffusion: Diffusion, steps: int, shift: float | None = None) -> jax.Array:
  """The flow samplers' `steps + 1` grid times from 1 (noise) to 0, warped by `shift` (None:
  the training shift)."""
  grid = diffusion if shift is None else dataclasses.replace(diffusion, shift=shift)
  return grid.shift_time(jnp.linspace(1.0, 0.0, steps + 1))


def ddim_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
  """Evenly spaced integer timesteps from T-1 down to 0 ("trailing" spacing)."""
  return np.round(np.linspace(num_timesteps - 1, 0, steps)).astype(np.int32)


def log_snr_timesteps(diffusion: Diffusion, steps: int) -> np.ndarray:
  """Integer timesteps from T-1 down to 0 spaced evenly in log-SNR λ = log(α/σ), the grid
  DPM-Solver++ is derived on: an even-in-t grid puts one step of several times the others' λ
  width at the clean end (ᾱ climbs steeply near t = 0), and the multistep extrapolation
  across such unequal steps overshoots."""
  ab = schedules.alphas_cumprod(diffusion.schedule, diffusion.num_timesteps)
  lam = 0.5 * np.log(ab / (1 - ab))  # increasing as t decreases
  targets = np.linspace(lam[-1], lam[0], steps)
  grid = np.clip(np.searchsorted(-lam, -targets), 0, diffusion.num_timesteps - 1)
  # Strictly decreasing (where ᾱ is flat near t = T, several targets hit one timestep).
  grid[0] = diffusion.num_timesteps - 1
  for k in range(1, steps):
    grid[k] = min(grid[k], grid[k - 1] - 1)
  return np.maximum(grid, np.arange(steps)[::-1]).astype(np.int32)


def sample(diffusion: Diffusion, denoise: Denoise, noise: jax.Array, text, null_text, *,
           steps: int, guidance: float, key: jax.Array, sampler: str | None = None,
           eta: float = 0.0, shift: float | None = None, guidance_rescale: float = 0.0,
           guidance_min_noise: float = 0.0,
           condition: FrameCondition | None = None,
           cache: feature_cache.FeatureCache = feature_cache.FeatureCache(),
           init: jax.Array | None = None, strength: float = 1.0,
           reconstruction_guidance: float = 0.0, self_condition: bool = False,
           on_step: Callable[[int], None] | None = None) -> jax.Array:
  """Runs the reverse process from `noise` (x at full noise) and returns the sample.

  `shift` (flow only) warps the time grid toward the noise end; None uses the training
  shift. `guidance_rescale` in [0, 1] (0 = plain CFG). `guidance_min_noise`: guidance only
  at steps whose noise level (flow t, or DDPM t / T) is at least this. `condition` pins
  known frames or regions (kept exactly in the result). `init` with `strength` < 1 is SDEdit: `init` is
  noised to the grid point `strength` of the way from clean to pure noise and only the last
  round(strength · steps) steps run (as diffusers' img2img counts them).
  `reconstruction_guidance` w > 0 also steers the generated part toward agreeing with the
  condition (`guidance.reconstruction_guided`: one extra backward pass through the model per
  evaluation). `self_condition`: `denoise` also reads `estimate=`, the x0 estimate of its
  previous evaluation on the same (conditional or unconditional) batch rows; zeros at the
  first step. `on_step(i)` is called on the host (`jax.debug.callback`) as each step
  finishes on the device: progress bars."""
  sampler = sampler or default_sampler(diffusion)
  check_sampler(diffusion, sampler)
  check_eta(diffusion, sampler, eta)
  batch = noise.shape[0]
  first = 0 if init is None else first_step(steps, strength)

  def predict(x, level_index, t_net, state):
    cache_state, estimate = state

    def velocity_network(x, t, text):  # flow samplers step along velocities
      reading = functools.partial(denoise, estimate=estimate) if self_condition else denoise
      network = feature_cache.cached_network(reading, cache, first)
      out, cache_state_next = network(x, t, text, cache_state, level_index)
      estimate_next = diffusion.x0_estimate(out, x, t) if self_condition else estimate
      out = diffusion.velocity(out, x, diffusion.flow_time(t)) if diffusion.is_flow else out
      return out, (cache_state_next, estimate_next)

    def model(x):
      return guided(velocity_network, x,
                    jnp.full((batch,), t_net, jnp.float32), text, null_text, guidance,
                    guidance_rescale, guidance_min_noise)
    if condition is None or not reconstruction_guidance:
      return model(x)
    return reconstruction_guided(diffusion, model, x, t_net, condition,
                                 reconstruction_guidance)

  network_inputs = cfg_batch(noise, jnp.zeros((batch,), jnp.float32), text, null_text, guidance)
  state = (feature_cache.initial_state(denoise, cache, *network_inputs),
           jnp.zeros_like(network_inputs[0]) if self_condition else ())
  if diffusion.is_flow:
    times = flow_times(diffusion, steps, shift)
    signal, sigma = lambda k: 1 - times[k], lambda k: times[k]
    keep = _keeper(condition, noise, signal, sigma)
    step = _flow_step(sampler, predict, diffusion, times, keep, steps, eta)
    start = noise if init is None else signal(first) * init + sigma(first) * noise
    x = jax.lax.fori_loop(first, steps, _reporting(step, on_step),
                          (keep(start, first), state, key))[0]
  else:
    timesteps = jnp.asarray(log_snr_timesteps(diffusion, steps) if sampler == "dpm_solver++"
                            else ddim_timesteps(diffusion.num_timesteps, steps))
    # ᾱ at each grid point; the point after the last is the clean data (ᾱ = 1).
    alpha_bars = jnp.concatenate([diffusion.alpha_bar(timesteps), jnp.ones((1,))])
    signal, sigma = lambda k: jnp.sqrt(alpha_bars[k]), lambda k: jnp.sqrt(1 - alpha_bars[k])
    keep = _keeper(condition, noise, signal, sigma)
    step = _ddpm_step(sampler, predict, diffusion, timesteps, alpha_bars, keep, steps, first,
                      eta=1.0 if sampler == "ddpm" else eta)
    start = noise if init is None else signal(first) * init + sigma(first) * noise
    x = jax.lax.fori_loop(first, steps, _reporting(step, on_step),
                          (keep(start, first), state, key, noise))[0]
  return x if condition is None else condition.impose(x, condition.known)


def _reporting(step, on_step):
  """`step`, then `on_step(i)` on the host once its result exists (the callback reads one
  element of the new x, so it cannot run before the step's compute)."""
  if on_step is None:
    return step

  def reporting(i, carry):
    carry = step(i, carry)
    jax.debug.callback(lambda i, _: on_step(int(i)), i, carry[0].reshape(-1)[0])
    return carry
  return reporting


def _keeper(condition, noise, signal, sigma):
  """`keep(x, k)`: x with the condition's known part at grid point k's noise level."""
  if condition is None:
    return lambda x, k: x
  return lambda x, k: condition.impose(x, signal(k) * condition.known + sigma(k) * noise)


def _ddim_move(x0, eps, level, next_level, eta, fresh):
  """DDIM's step (Song et al. 2021) from the estimates x0 and ε at the noise level `level` =
  (signal a, noise n), where x = a·x0 + n·ε, to `next_level`: a'·x0 + √(n'² − σ²)·ε + σ·fresh.
  η = 0 is deterministic; η = 1 takes the DDPM posterior's variance, σ² = n'²·(1 − (a·n' /
  (n·a'))²), which is DDPM's on the variance-preserving path and the same formula on the
  flow path (a = 1 - t, n = t)."""
  (a, n), (a_next, n_next) = level, next_level
  kept = a * n_next / (n * a_next)
  sigma = eta * n_next * jnp.sqrt(jnp.maximum(1 - kept ** 2, 0.0))
  return (a_next * x0 + jnp.sqrt(jnp.maximum(n_next ** 2 - sigma ** 2, 0.0)) * eps
          + sigma * fresh)


def _flow_step(sampler, predict, diffusion, times, keep, steps, eta):
  def euler(i, carry):
    x, state, key = carry
    t, s = times[i], times[i + 1]
    velocity, state = predict(x, i, diffusion.network_time(t), state)
    if not eta:
      return x + (s - t) * velocity, state, velocity
    # x = (1 - t)·x0 + t·ε splits into the estimates x0 = x - t·v and ε = x + (1 - t)·v; the
    # Euler step is DDIM's η = 0 step between those levels.
    x0, eps = x - t * velocity, x + (1 - t) * velocity
    fresh = jax.random.normal(jax.random.fold_in(key, i), x.shape)
    return _ddim_move(x0, eps, (1 - t, t), (1 - s, s), eta, fresh), state, velocity

  def step(i, carry):
    x_next, state, velocity = euler(i, carry)
    if sampler == "heun":  # trapezoid with the velocity at the Euler point (not at t = 0)
      def correct(x_next, state):
        v_next, state = predict(x_next, i, diffusion.network_time(times[i + 1]), state)
        return carry[0] + (times[i + 1] - times[i]) * 0.5 * (velocity + v_next), state
      x_next, state = jax.lax.cond(i + 1 < steps, correct, lambda x, s: (x, s), x_next, state)
    return keep(x_next, i + 1), state, carry[2]

  return step


def _ddpm_step(sampler, predict, diffusion, timesteps, alpha_bars, keep, steps, first, eta):
  def x0_at(x, i, state):
    t = jnp.full((x.shape[0],), timesteps[i])
    out, state = predict(x, i, diffusion.network_time(timesteps[i]), state)
    x0, eps = diffusion.x0_and_eps(out, x, t)
    return x0, eps, state

  def ddim(i, carry):
    x, state, key, previous_x0 = carry
    key, noise_key = jax.random.split(key)
    x0, eps, state = x0_at(x, i, state)
    level = lambda ab: (jnp.sqrt(ab), jnp.sqrt(1 - ab))  # noqa: E731
    x = _ddim_move(x0, eps, level(alpha_bars[i]), level(alpha_bars[i + 1]), eta,
                   jax.random.normal(noise_key, x.shape))
    return keep(x, i + 1), state, key, x0

  def dpm_solver(i, carry):
    x, state, key, previous_x0 = carry
    x0, _, state = x0_at(x, i, state)
    lam = lambda k: 0.5 * jnp.log(alpha_bars[k] / (1 - alpha_bars[k]))  # log(α/σ)  # noqa
    h = lam(i + 1) - lam(i)
    ratio = (lam(i) - lam(jnp.maximum(i - 1, 0))) / h
    # Second order from the previous x0 (first order on the first step).
    data = jnp.where(i > first, (1 + 0.5 / ratio) * x0 - (0.5 / ratio) * previous_x0, x0)
    sigma_ratio = jnp.sqrt((1 - alpha_bars[i + 1]) / (1 - alpha_bars[i]))
    x_next = sigma_ratio * x - jnp.sqrt(alpha_bars[i + 1]) * jnp.expm1(-h) * data
    # The last step lands on ᾱ = 1 (σ = 0, λ = ∞): take the x0 prediction (lower-order final).
    x_next = jnp.where(i + 1 < steps, x_next, x0)
    return keep(x_next, i + 1), state, key, x0

  return dpm_solver if sampler == "dpm_solver++" else ddim
