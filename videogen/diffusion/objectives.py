"""Training objectives: ε- and v-prediction on a DDPM schedule, and rectified flow.

Time convention: the DDPM family uses integer t ∈ [0, T); rectified flow uses t ∈ [0, 1]
with x_t = (1 - t)·x0 + t·ε (t = 1 is pure noise) and velocity target ε - x0. The network
always sees `network_time(t)` on a 0…1000 scale.
"""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from videogen.diffusion import schedules

OBJECTIVES = ("eps", "v", "flow")
TIME_SAMPLING = ("uniform", "logit_normal")
# What a flow network outputs: the velocity ε − x0 itself, or the clean x0, turned into a
# velocity before the loss and the sampler (JiT, Li & He 2025: clean data lies near a low-
# dimensional manifold, noise does not, so a small network predicts x0 more easily).
FLOW_PREDICTIONS = ("velocity", "x0")
MIN_X0_TIME = 0.05  # x0 → velocity divides by t: bounded near the clean end, as JiT
# How the squared error is weighted over flow time: "none" = the target's plain MSE; "x0" =
# the velocity error times t², i.e. the clean sample's error. The velocity error of an x0
# network is its x0 error over t, so plain MSE weights the clean end up to 1/t² (400×) above
# the noisy end, where layout and motion are decided; "x0" weights every time alike.
LOSS_WEIGHTINGS = ("none", "x0")


def _bcast(values: jax.Array, like: jax.Array) -> jax.Array:
  return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def _weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
  return jnp.sum(values * weight) / jnp.maximum(jnp.sum(weight), 1.0)


@dataclasses.dataclass(frozen=True)
class Diffusion:
  objective: str = "flow"
  schedule: str = "cosine"
  num_timesteps: int = 1000
  time_sampling: str = "logit_normal"
  logit_mean: float = 0.0
  logit_std: float = 1.0
  shift: float = 1.0  # flow only: t → s·t / (1 + (s - 1)·t), as SD3/Wan; s > 1 favours noise
  prediction: str = "velocity"  # flow only: FLOW_PREDICTIONS
  loss_weighting: str = "none"  # LOSS_WEIGHTINGS ("x0": flow only)
  # Weight of the error's frame-to-frame change beside the error itself. Plain MSE charges a
  # small moving object drawn still for its few pixels only; the change term charges every
  # frame's motion edge again, the gradient difference loss of video prediction.
  frame_difference_weight: float = 0.0

  def __post_init__(self):
    if self.objective not in OBJECTIVES:
      raise ValueError(f"diffusion.objective={self.objective!r}; choose from {OBJECTIVES}")
    if self.time_sampling not in TIME_SAMPLING:
      raise ValueError(f"diffusion.time_sampling={self.time_sampling!r}; "
                       f"choose from {TIME_SAMPLING}")
    if self.prediction not in FLOW_PREDICTIONS or (self.prediction != "velocity"
                                                    and not self.is_flow):
      raise ValueError(f"diffusion.prediction={self.prediction!r}; choose from "
                       f"{FLOW_PREDICTIONS} ('x0' needs objective='flow')")
    if self.loss_weighting not in LOSS_WEIGHTINGS or (self.loss_weighting != "none"
                                                      and not self.is_flow):
      raise ValueError(f"diffusion.loss_weighting={self.loss_weighting!r}; choose from "
                       f"{LOSS_WEIGHTINGS} ('x0' needs objective='flow')")
    if self.frame_difference_weight < 0:
      raise ValueError(f"diffusion.frame_difference_weight={self.frame_difference_weight}; "
                       "must be >= 0")
    if not self.is_flow:
      schedules.alphas_cumprod(self.schedule, self.num_timesteps)  # validates the name

  @property
  def is_flow(self) -> bool:
    return self.objective == "flow"

  def alpha_bar(self, t: jax.Array) -> jax.Array:
    table = jnp.asarray(schedules.alphas_cumprod(self.schedule, self.num_timesteps), jnp.float32)
    return table[t]

  def sample_time(self, key: jax.Array, n: int) -> jax.Array:
    if not self.is_flow:
      return jax.random.randint(key, (n,), 0, self.num_timesteps)
    if self.time_sampling == "uniform":
      t = jax.random.uniform(key, (n,))
    else:
      t = jax.nn.sigmoid(self.logit_mean + self.logit_std * jax.random.normal(key, (n,)))
    return self.shift_time(t)

  def shift_time(self, t: jax.Array) -> jax.Array:
    """Moves flow times toward the noise end. Global layout (where the object is, which way
    it moves) is decided at high noise; the more pixels/frames share a signal, the higher
    the noise level needed to hide it, hence a shift that grows with resolution."""
    return self.shift * t / (1 + (self.shift - 1) * t)

  def network_time(self, t: jax.Array) -> jax.Array:
    return t * 1000.0 if self.is_flow else t.astype(jnp.float32) * (1000.0 / self.num_timesteps)

  def timestep(self, t_net: jax.Array) -> jax.Array:
    """The integer timestep of a network time (`network_time`'s inverse, DDPM family only)."""
    return jnp.round(t_net * self.num_timesteps / 1000.0).astype(jnp.int32)

  def flow_time(self, t_net: jax.Array) -> jax.Array:
    """The flow time t of a network time (`network_time`'s inverse, flow only)."""
    return t_net / 1000.0

  def velocity(self, output: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
    """A flow network's output as the velocity ε − x0 at flow time t: itself, or from an x0
    prediction, v = (x_t − x̂0) / t."""
    if self.prediction == "velocity":
      return output
    return (x_t - output.astype(jnp.float32)) / jnp.maximum(_bcast(t, x_t), MIN_X0_TIME)

  def corrupt(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    if self.is_flow:
      t = _bcast(t, x0)
      return (1 - t) * x0 + t * noise
    ab = _bcast(self.alpha_bar(t), x0)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * noise

  def target(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    if self.objective == "flow":
      return noise - x0
    if self.objective == "eps":
      return noise
    ab = _bcast(self.alpha_bar(t), x0)
    return jnp.sqrt(ab) * noise - jnp.sqrt(1 - ab) * x0

  def loss(self, prediction: jax.Array, x0: jax.Array, noise: jax.Array, t: jax.Array,
           weight: jax.Array | None = None):
    """Mean squared error, plus `frame_difference_weight` × the mean squared frame-to-frame
    change of the error (axis 1 of `(B, T, ...)` clips); `weight` (broadcastable to x0, e.g.
    per frame) averages over the weighted elements only."""
    difference = prediction.astype(jnp.float32) - self.target(x0, noise, t)
    if self.loss_weighting == "x0":
      difference = difference * _bcast(jnp.maximum(t, MIN_X0_TIME), difference)
    weight = jnp.ones((), jnp.float32) if weight is None else weight
    weight = jnp.broadcast_to(weight, difference.shape)
    loss = _weighted_mean(jnp.square(difference), weight)
    if self.frame_difference_weight and difference.ndim == 5 and difference.shape[1] > 1:
      change = jnp.square(difference[:, 1:] - difference[:, :-1])
      loss += self.frame_difference_weight * _weighted_mean(change, weight[:, 1:] * weight[:, :-1])
    return loss

  def x0_estimate(self, output: jax.Array, x_t: jax.Array, t_net: jax.Array) -> jax.Array:
    """The network's output at network time `t_net` (scalar or per example) as its estimate
    of the clean sample: what a self-conditioned model reads back (any objective)."""
    if self.is_flow:
      t = jnp.broadcast_to(self.flow_time(t_net), x_t.shape[:1])
      return x_t - _bcast(t, x_t) * self.velocity(output, x_t, t)
    step = jnp.broadcast_to(self.timestep(t_net), x_t.shape[:1])
    return self.x0_and_eps(output, x_t, step)[0]

  def x0_and_eps(self, prediction: jax.Array, x_t: jax.Array, t: jax.Array):
    """The DDPM-family network output turned into (x0, ε) estimates at integer t."""
    ab = _bcast(self.alpha_bar(t), x_t)
    if self.objective == "eps":
      eps = prediction
      return (x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab), eps
    x0 = jnp.sqrt(ab) * x_t - jnp.sqrt(1 - ab) * prediction
    return x0, jnp.sqrt(1 - ab) * x_t + jnp.sqrt(ab) * prediction


def from_config(diffusion: ml_collections.ConfigDict) -> Diffusion:
  return Diffusion(objective=diffusion.objective, schedule=diffusion.schedule,
                   num_timesteps=diffusion.num_timesteps, time_sampling=diffusion.time_sampling,
                   logit_mean=diffusion.logit_mean, logit_std=diffusion.logit_std,
                   shift=diffusion.shift, prediction=diffusion.prediction,
                   loss_weighting=diffusion.loss_weighting,
                   frame_difference_weight=diffusion.frame_difference_weight)
