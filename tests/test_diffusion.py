import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.diffusion import guidance, samplers, schedules
from videogen.diffusion.objectives import Diffusion


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedules_decrease_from_signal_to_noise(schedule):
  ab = schedules.alphas_cumprod(schedule, 1000)
  assert ab[0] > 0.99 and ab[-1] < 0.01
  assert np.all(np.diff(ab) < 0)


@pytest.mark.parametrize("objective", ["eps", "v"])
def test_ddpm_targets_invert_to_x0_and_noise(objective):
  diffusion = Diffusion(objective=objective)
  x0, noise = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 2, 4, 4, 3))
  t = jnp.array([3, 2, 500, 999])[:3]
  x0, noise = x0[:3], noise[:3]
  x_t = diffusion.corrupt(x0, noise, t)
  x0_hat, eps_hat = diffusion.x0_and_eps(diffusion.target(x0, noise, t), x_t, t)
  np.testing.assert_allclose(x0_hat, x0, atol=2e-3)
  np.testing.assert_allclose(eps_hat, noise, atol=2e-3)


@pytest.mark.parametrize("objective,prediction", [
    ("flow", "velocity"), ("flow", "x0"), ("eps", "velocity"), ("v", "velocity")])
def test_x0_estimate_reads_the_clean_sample_from_an_exact_output(objective, prediction):
  """What a self-conditioned model reads back: the exact network output at each network time
  (flow's velocity or x0, DDPM's ε or v) turns into the clean sample."""
  diffusion = Diffusion(objective=objective, prediction=prediction)
  x0, noise = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 2, 4, 4, 3))
  t = jnp.array([0.1, 0.5, 0.9]) if diffusion.is_flow else jnp.array([3, 500, 990])
  x_t = diffusion.corrupt(x0, noise, t)
  output = x0 if prediction == "x0" else diffusion.target(x0, noise, t)
  np.testing.assert_allclose(diffusion.x0_estimate(output, x_t, diffusion.network_time(t)), x0,
                             atol=2e-3)


def test_flow_path_and_velocity():
  diffusion = Diffusion(objective="flow")
  x0, noise = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 2, 4, 4, 3))
  t = jnp.array([0.0, 0.3, 0.7, 1.0])
  x_t = diffusion.corrupt(x0, noise, t)
  np.testing.assert_allclose(x_t[0], x0[0])
  np.testing.assert_allclose(x_t[3], noise[3])
  # Moving along the velocity for time t returns to x0.
  np.testing.assert_allclose(x_t - t[:, None, None, None, None] * diffusion.target(x0, noise, t),
                             x0, atol=1e-6)
  ts = diffusion.sample_time(jax.random.PRNGKey(1), 10000)
  assert 0 < float(ts.min()) and float(ts.max()) < 1 and abs(float(ts.mean()) - 0.5) < 0.02


def test_x0_prediction_is_scored_as_the_velocity_it_implies():
  """An exact x0 prediction implies the exact velocity; one off by d costs (d / t)², as the
  velocity (x_t − x̂0) / t it implies is off by d / t."""
  diffusion = Diffusion(objective="flow", prediction="x0")
  x0, noise = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 2, 4, 4, 3))
  t = jnp.array([0.01, 0.3, 0.7, 1.0])
  x_t = diffusion.corrupt(x0, noise, t)
  exact = diffusion.velocity(x0, x_t, t)
  np.testing.assert_allclose(exact[1:], diffusion.target(x0, noise, t)[1:], atol=1e-5)
  off = diffusion.velocity(x0 + 0.1, x_t, t)
  for i in (1, 2, 3):
    error = float(diffusion.loss(off[i:i + 1], x0[i:i + 1], noise[i:i + 1], t[i:i + 1]))
    assert error == pytest.approx((0.1 / float(t[i])) ** 2, rel=1e-3)
  with pytest.raises(ValueError, match="prediction"):
    Diffusion(objective="eps", prediction="x0")


def test_x0_loss_weighting_scores_the_clean_sample_error_at_every_time():
  """With loss_weighting="x0" an x0 prediction off by d costs d² at every t (not (d / t)²),
  and only per-sample: the batch mean is the mean of those."""
  diffusion = Diffusion(objective="flow", prediction="x0", loss_weighting="x0")
  x0, noise = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 2, 4, 4, 3))
  t = jnp.array([0.1, 0.4, 0.9])
  off = diffusion.velocity(x0 + 0.1, diffusion.corrupt(x0, noise, t), t)
  assert float(diffusion.loss(off, x0, noise, t)) == pytest.approx(0.01, rel=1e-3)
  with pytest.raises(ValueError, match="loss_weighting"):
    Diffusion(objective="v", loss_weighting="x0")


def test_frame_difference_loss_charges_only_an_error_that_changes_from_frame_to_frame():
  """The same error in every frame costs nothing extra; an error that flips sign from frame
  to frame costs its squared change, over the frame pairs that `weight` keeps."""
  plain = Diffusion(objective="flow", prediction="x0")
  motion = Diffusion(objective="flow", prediction="x0", frame_difference_weight=1.0)
  x0, noise = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 4, 4, 4, 3))
  t = jnp.array([0.5, 0.5])
  x_t = plain.corrupt(x0, noise, t)
  steady = plain.velocity(x0 + 0.1, x_t, t)  # velocity error 0.1 / 0.5 = 0.2 everywhere
  flicker_x0 = x0 + 0.1 * jnp.array([1.0, -1.0, 1.0, -1.0])[None, :, None, None, None]
  flicker = plain.velocity(flicker_x0, x_t, t)  # ±0.2: a change of 0.4 between frames
  assert float(motion.loss(steady, x0, noise, t)) == pytest.approx(0.04, rel=1e-4)
  assert float(plain.loss(flicker, x0, noise, t)) == pytest.approx(0.04, rel=1e-4)
  assert float(motion.loss(flicker, x0, noise, t)) == pytest.approx(0.04 + 0.16, rel=1e-4)
  later_frames = jnp.array([0.0, 1.0, 1.0, 1.0])[None, :, None, None, None]
  flicker_tail = flicker.at[:, 2:].set(steady[:, 2:])  # changes only between frames 0-1, 1-2
  assert float(motion.loss(flicker_tail, x0, noise, t, later_frames)) == pytest.approx(
      0.04 + 0.16 / 2, rel=1e-4)  # of the kept pairs (1-2, 2-3), only 1-2 changes
  with pytest.raises(ValueError, match="frame_difference_weight"):
    Diffusion(frame_difference_weight=-1.0)


def _oracle(diffusion, data_point):
  """The exact denoiser for a distribution concentrated on one point."""
  def denoise(x, t_net, text):
    del text
    if diffusion.prediction == "x0":
      return jnp.broadcast_to(data_point, x.shape)
    if diffusion.is_flow:
      t = (t_net / 1000.0)[:, None, None, None, None]
      return (x - data_point) / t
    t = jnp.round(t_net * diffusion.num_timesteps / 1000.0).astype(jnp.int32)
    ab = diffusion.alpha_bar(t)[:, None, None, None, None]
    eps = (x - jnp.sqrt(ab) * data_point) / jnp.sqrt(1 - ab)
    return eps if diffusion.objective == "eps" else jnp.sqrt(ab) * eps - jnp.sqrt(1 - ab) * data_point
  return denoise


@pytest.mark.parametrize("objective,eta,shift,prediction", [
    ("flow", 0.0, 1.0, "velocity"), ("flow", 0.0, 3.0, "velocity"), ("flow", 0.0, 3.0, "x0"),
    ("eps", 0.0, 1.0, "velocity"), ("v", 0.0, 1.0, "velocity"), ("eps", 1.0, 1.0, "velocity")])
def test_sampler_with_exact_denoiser_lands_on_the_data(objective, eta, shift, prediction):
  diffusion = Diffusion(objective=objective, shift=shift, prediction=prediction)
  data_point = jnp.linspace(-0.8, 0.8, 2 * 4 * 4 * 3).reshape(1, 2, 4, 4, 3)
  noise = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 4, 4, 3))
  text = (jnp.zeros((2, 4), jnp.int32), jnp.ones((2, 4), bool))
  run = jax.jit(lambda n, k: samplers.sample(diffusion, _oracle(diffusion, data_point), n, text,
                                             text, steps=12, guidance=1.0, key=k, eta=eta))
  out = run(noise, jax.random.PRNGKey(1))
  np.testing.assert_allclose(out, jnp.broadcast_to(data_point, out.shape), atol=5e-3)


def test_classifier_free_guidance_extrapolates_from_unconditional():
  """uncond + g·(cond − uncond); with min_noise 0.8, in one batch, the example at noise level
  0.9 is guided and the one at 0.5 gets the conditional prediction alone."""
  def denoise(x, t, text):
    tokens, _ = text
    return x * 0 + tokens[:, :1, None, None, None].astype(jnp.float32)
  x = jnp.zeros((2, 1, 1, 1, 1))
  cond = (jnp.full((2, 3), 3), jnp.ones((2, 3), bool))
  uncond = (jnp.full((2, 3), 1), jnp.ones((2, 3), bool))
  out = guidance.guided(denoise, x, jnp.zeros(2), cond, uncond, guidance=4.0)
  np.testing.assert_allclose(out, 1 + 4.0 * (3 - 1))
  t_net = jnp.array([900.0, 500.0])
  out = guidance.guided(denoise, x, t_net, cond, uncond, guidance=4.0, min_noise=0.8)
  np.testing.assert_allclose(out.ravel(), [1 + 4.0 * (3 - 1), 3.0])


def test_time_shift_keeps_the_ends_and_moves_toward_noise():
  diffusion = Diffusion(shift=3.0)
  t = jnp.linspace(0, 1, 11)
  shifted = diffusion.shift_time(t)
  assert float(shifted[0]) == 0.0 and float(shifted[-1]) == pytest.approx(1.0)
  assert bool(jnp.all(shifted[1:-1] > t[1:-1])) and bool(jnp.all(jnp.diff(shifted) > 0))
  samples = diffusion.sample_time(jax.random.PRNGKey(0), 10000)
  assert float(jnp.mean(samples > 0.85)) > 0.2  # vs ~4% unshifted


def test_guidance_rescale_restores_the_conditional_std():
  cond = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 6, 6, 3)), jnp.float32)
  uncond = 0.5 * cond + 0.1
  denoise = lambda x, t, text: jnp.concatenate([cond, uncond])  # one call: [cond; null]
  x, t = jnp.zeros_like(cond), jnp.zeros((2,))
  plain = guidance.guided(denoise, x, t, jnp.ones((2,)), jnp.zeros((2,)), 7.0)
  full = guidance.guided(denoise, x, t, jnp.ones((2,)), jnp.zeros((2,)), 7.0, rescale=1.0)
  half = guidance.guided(denoise, x, t, jnp.ones((2,)), jnp.zeros((2,)), 7.0, rescale=0.5)
  axes = (1, 2, 3, 4)
  assert float(plain.std(axes).min()) > 2 * float(cond.std(axes).max())  # inflated by CFG
  np.testing.assert_allclose(full.std(axes), cond.std(axes), rtol=1e-5)
  np.testing.assert_allclose(half, 0.5 * (plain + full), rtol=1e-5, atol=1e-6)
