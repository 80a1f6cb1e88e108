"""Every sampler on Gaussian data, where the optimal denoiser and the probability-flow ODE's
end point are known in closed form: errors shrink with steps, second-order samplers faster;
the stochastic samplers (DDPM, flow Euler with η) draw the right distribution. Plus
frame/region conditions and feature caching."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import perturbed
from videogen.diffusion import conditions, feature_cache, samplers
from videogen.diffusion.objectives import Diffusion

SHAPE = (2, 4, 4, 4, 3)  # (B, T, H, W, C)
MEAN = jnp.linspace(-0.6, 0.6, 4 * 4 * 4 * 3).reshape(1, 4, 4, 4, 3)
STD = jnp.linspace(0.2, 0.8, 4 * 4 * 4 * 3)[::-1].reshape(1, 4, 4, 4, 3)
TEXT = (jnp.zeros((2, 4), jnp.int32), jnp.ones((2, 4), bool))


def gaussian_denoiser(diffusion, mean=MEAN, std=STD):
  """The exact network output for data ~ N(mean, std²) per element."""
  def denoise(x, t_net, text):
    if diffusion.is_flow:
      t = (t_net / 1000.0)[:, None, None, None, None]
      var = (1 - t) ** 2 * std ** 2 + t ** 2
      resid = x - (1 - t) * mean
      x0 = mean + (1 - t) * std ** 2 / var * resid
      return t / var * resid - x0
    step = jnp.round(t_net * diffusion.num_timesteps / 1000.0).astype(jnp.int32)
    ab = diffusion.alpha_bar(step)[:, None, None, None, None]
    var = ab * std ** 2 + 1 - ab
    resid = x - jnp.sqrt(ab) * mean
    eps = jnp.sqrt(1 - ab) / var * resid
    x0 = mean + jnp.sqrt(ab) * std ** 2 / var * resid
    return eps if diffusion.objective == "eps" else jnp.sqrt(ab) * eps - jnp.sqrt(1 - ab) * x0
  return denoise


def exact_end(diffusion, noise):
  """Where the probability-flow ODE takes `noise`: it keeps the standardised value."""
  if diffusion.is_flow:
    return MEAN + STD * noise
  ab = diffusion.alpha_bar(diffusion.num_timesteps - 1)
  return MEAN + STD * (noise - jnp.sqrt(ab) * MEAN) / jnp.sqrt(ab * STD ** 2 + 1 - ab)


def run(diffusion, sampler, steps, noise, **kwargs):
  fn = jax.jit(lambda n: samplers.sample(diffusion, gaussian_denoiser(diffusion), n, TEXT, TEXT,
                                         steps=steps, guidance=1.0, key=jax.random.PRNGKey(1),
                                         sampler=sampler, **kwargs))
  return fn(noise)


@pytest.mark.parametrize("objective,sampler,order", [
    ("flow", "euler", 1), ("flow", "heun", 2), ("eps", "ddim", 1), ("v", "ddim", 1),
    ("eps", "dpm_solver++", 2), ("v", "dpm_solver++", 2)])
def test_deterministic_samplers_converge_to_the_exact_ode_solution(objective, sampler, order):
  diffusion = Diffusion(objective=objective, shift=3.0 if objective == "flow" else 1.0)
  noise = jax.random.normal(jax.random.PRNGKey(0), SHAPE)
  want = exact_end(diffusion, noise)
  errors = [float(jnp.abs(run(diffusion, sampler, n, noise) - want).max()) for n in (16, 64)]
  # 4× the steps: a first-order error falls ~4×, a second-order one ~16×.
  assert errors[1] < errors[0] / (2.5 if order == 1 else 8), errors
  assert errors[1] < (0.1 if order == 1 else 0.02), errors


def test_second_order_samplers_beat_first_order_at_equal_steps():
  noise = jax.random.normal(jax.random.PRNGKey(0), SHAPE)
  for objective, first, second in [("flow", "euler", "heun"), ("eps", "ddim", "dpm_solver++")]:
    diffusion = Diffusion(objective=objective)
    want = exact_end(diffusion, noise)
    error = lambda s: float(jnp.abs(run(diffusion, s, 10, noise) - want).max())  # noqa: E731
    assert error(second) < 0.5 * error(first)


@pytest.mark.parametrize("objective,sampler,eta", [
    ("eps", "ddpm", 0.0), ("flow", "euler", 1.0), ("flow", "euler", 0.5)])
def test_stochastic_samplers_draw_the_data_distribution(objective, sampler, eta):
  diffusion = Diffusion(objective=objective)  # (first order: the bias halves with 2× steps)
  noise = jax.random.normal(jax.random.PRNGKey(0), (512, 4, 4, 4, 3))
  fn = jax.jit(lambda n: samplers.sample(
      diffusion, gaussian_denoiser(diffusion), n, (jnp.zeros((512, 1)),) * 2,
      (jnp.zeros((512, 1)),) * 2, steps=100, guidance=1.0, key=jax.random.PRNGKey(3),
      sampler=sampler, eta=eta))
  out = fn(noise)
  assert float(jnp.abs(out.mean(0) - MEAN[0]).mean()) < 0.02
  assert float(jnp.abs(out.std(0) - STD[0]).mean()) < 0.03
  # Stochastic: not the deterministic ODE end point.
  assert float(jnp.abs(out - exact_end(diffusion, noise)).mean()) > 0.05


def test_sampler_family_mismatch_is_a_clear_error():
  with pytest.raises(ValueError, match="does not fit diffusion.objective='flow'"):
    samplers.check_sampler(Diffusion(objective="flow"), "ddim")
  flow = Diffusion(objective="flow")
  for sampler, eta in (("heun", 0.5), ("euler", 1.5)):
    with pytest.raises(ValueError, match=f"sample.eta={eta}: stochastic flow steps take"):
      run(flow, sampler, 4, jnp.zeros(SHAPE), eta=eta)


def test_resolution_shift_grows_with_tokens():
  assert samplers.resolution_shift(3.0, 1024, 0) == 3.0
  assert samplers.resolution_shift(3.0, 4096, 1024) == pytest.approx(6.0)


@pytest.mark.parametrize("objective,sampler", [("flow", "heun"), ("eps", "dpm_solver++"),
                                               ("eps", "ddpm")])
def test_conditions_keep_known_frames_and_regions_exactly(objective, sampler):
  diffusion = Diffusion(objective=objective)
  noise = jax.random.normal(jax.random.PRNGKey(0), SHAPE)
  frames = jnp.full((2, 1, 4, 4, 3), 0.7)
  first = conditions.first_frames(frames, SHAPE)
  out = run(diffusion, sampler, 6, noise, condition=first)
  np.testing.assert_array_equal(out[:, :1], frames)
  keys = conditions.keyframes(jnp.stack([frames[:, 0], -frames[:, 0]], 1), [0, 3], SHAPE)
  out = run(diffusion, sampler, 6, noise, condition=keys)
  np.testing.assert_array_equal(out[:, 3], -frames[:, 0])
  keep = jnp.zeros((4, 4)).at[:, :2].set(1.0)
  video = jax.random.uniform(jax.random.PRNGKey(5), SHAPE)
  out = run(diffusion, sampler, 6, noise, condition=conditions.region(video, keep))
  np.testing.assert_array_equal(out[:, :, :, :2], video[:, :, :, :2])
  assert float(jnp.abs(out[:, :, :, 2:] - video[:, :, :, 2:]).max()) > 0.1


def test_condition_shapes_are_checked():
  with pytest.raises(ValueError, match="cannot sit at frames"):
    conditions.keyframes(jnp.zeros((2, 1, 4, 4, 3)), [4], SHAPE)
  with pytest.raises(ValueError, match="the sample is"):
    conditions.first_frames(jnp.zeros((2, 1, 8, 8, 3)), SHAPE)


@pytest.mark.parametrize("objective,sampler", [("flow", "euler"), ("eps", "ddim")])
def test_sdedit_strength_runs_the_tail_of_the_schedule_from_the_noised_input(objective,
                                                                           sampler):
  diffusion = Diffusion(objective=objective)
  noise = jax.random.normal(jax.random.PRNGKey(0), SHAPE)
  video = jax.random.uniform(jax.random.PRNGKey(2), SHAPE, minval=-1, maxval=1)
  np.testing.assert_allclose(run(diffusion, sampler, 10, noise, init=video, strength=1.0),
                             run(diffusion, sampler, 10, noise), atol=1e-4)  # ᾱ_T ≈ 0, not 0
  distance = [float(jnp.abs(run(diffusion, sampler, 10, noise, init=video, strength=s)
                            - video).mean()) for s in (0.2, 0.5, 0.9)]
  assert distance[0] < distance[1] < distance[2], distance


def test_feature_cache_every_step_is_exact_and_skipping_drifts_a_little():
  from videogen.models.dit import DiT, DiTSpec
  spec = DiTSpec(width=32, depth=2, num_heads=2, patch_size=(1, 2, 2), channels=3)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 2, 4, 4, 3))
  context, mask = jnp.ones((2, 3, 8)), jnp.ones((2, 3), bool)
  params = DiT(spec).init(jax.random.PRNGKey(1), x, jnp.zeros(2), context, mask)["params"]
  params = perturbed(nn_unbox(params), 0.2, seed=3)

  def denoise(x, t, text, **cache):
    return DiT(spec).apply({"params": params}, x, t, *text, **cache)

  def draw(cache):
    return jax.jit(lambda n: samplers.sample(
        Diffusion(), denoise, n, (context, mask), (context, mask), steps=8, guidance=2.0,
        key=jax.random.PRNGKey(0), cache=cache))(x)

  plain = draw(feature_cache.FeatureCache())
  np.testing.assert_allclose(draw(feature_cache.FeatureCache("every", every=1)), plain, atol=1e-5)
  np.testing.assert_allclose(draw(feature_cache.FeatureCache("threshold", threshold=0.0)), plain,
                             atol=1e-5)
  drift = float(jnp.abs(draw(feature_cache.FeatureCache("every", every=2)) - plain).mean())
  assert 0 < drift < 0.5 * float(jnp.abs(plain).mean())


def test_self_conditioning_carries_each_guidance_branch_its_own_estimate():
  """Under guidance the conditional and unconditional rows each read back the x0 estimate of
  their own previous evaluation (zeros first): the sampler equals a step-by-step reference."""
  diffusion, steps, guidance = Diffusion(shift=2.0), 6, 3.0
  exact = gaussian_denoiser(diffusion)
  cond, null = (jnp.ones((2, 4), jnp.int32), TEXT[1]), TEXT

  def denoise(x, t_net, text, estimate):  # the text's token value scales the estimate's pull
    return exact(x, t_net, text) + 0.3 * text[0][:, :1, None, None, None] * estimate

  noise = jax.random.normal(jax.random.PRNGKey(0), SHAPE)
  got = jax.jit(lambda n: samplers.sample(
      diffusion, denoise, n, cond, null, steps=steps, guidance=guidance,
      key=jax.random.PRNGKey(1), self_condition=True))(noise)

  times = samplers.flow_times(diffusion, steps)
  x, estimates = noise, [jnp.zeros(SHAPE), jnp.zeros(SHAPE)]
  for i in range(steps):
    t_net = jnp.full((SHAPE[0],), diffusion.network_time(times[i]))
    outs = [denoise(x, t_net, text, e) for text, e in zip((cond, null), estimates)]
    estimates = [diffusion.x0_estimate(out, x, t_net) for out in outs]
    velocity = outs[1] + guidance * (outs[0] - outs[1])
    x = x + (times[i + 1] - times[i]) * velocity
  np.testing.assert_allclose(got, x, atol=1e-5)
  ignoring = jax.jit(lambda n: samplers.sample(
      diffusion, lambda x, t, text, estimate: exact(x, t, text), n, cond, null, steps=steps,
      guidance=guidance, key=jax.random.PRNGKey(1), self_condition=True))(noise)
  plain = jax.jit(lambda n: samplers.sample(diffusion, exact, n, cond, null, steps=steps,
                                            guidance=guidance, key=jax.random.PRNGKey(1)))(noise)
  np.testing.assert_array_equal(ignoring, plain)
  assert float(jnp.abs(got - plain).max()) > 0.05  # the estimates did reach the network


def nn_unbox(tree):
  import flax.linen as nn
  return nn.unbox(tree)


def ar1_flow_denoiser(frames: int, rho: float = 0.95):
  """Exact flow velocity for videos whose every pixel is an AR(1) sequence over frames
  (covariance ρ^|i−j|): a data distribution with real temporal coherence."""
  cov = rho ** np.abs(np.subtract.outer(np.arange(frames), np.arange(frames)))
  eigenvalues, vectors = (jnp.asarray(a, jnp.float32) for a in np.linalg.eigh(cov))

  def denoise(x, t_net, text):
    t = (t_net / 1000.0)[:, None]
    inverse = 1.0 / ((1 - t) ** 2 * eigenvalues + t ** 2)           # (B, T) eigenbasis
    gain = (t - (1 - t) * eigenvalues) * inverse
    coords = jnp.einsum("ts,bs...->bt...", vectors.T, x)
    return jnp.einsum("ts,bs...->bt...", vectors, gain[:, :, None, None, None] * coords)
  return denoise


def test_extension_and_interpolation_seams_are_as_smooth_as_the_clips_themselves():
  from videogen.sampling.control import extend_samples, interpolate_samples
  shape = (4, 8, 4, 4, 3)
  denoise = ar1_flow_denoiser(shape[1])

  def drawer(weight):
    def draw(condition, k):
      noise = jax.random.normal(jax.random.PRNGKey(10 + k), shape)
      return samplers.sample(Diffusion(), denoise, noise, TEXT, TEXT, steps=24, guidance=1.0,
                             key=jax.random.PRNGKey(0), sampler="heun", condition=condition,
                             reconstruction_guidance=weight)
    return draw

  def steps_between_frames(x):  # mean |x[k+1] − x[k]| per frame transition
    return np.abs(np.diff(np.asarray(x), axis=1)).mean(axis=(0, 2, 3, 4))

  def seams_and_own(weight):
    long = extend_samples(drawer(weight), shape, 20, overlap=2)
    assert long.shape[1] >= 20
    jumps = steps_between_frames(long)
    return jumps[[shape[1] - 1, 2 * shape[1] - 3]], jumps[:shape[1] - 1]

  seams, own = seams_and_own(8.0)
  assert seams.max() <= own.max(), (seams, own)
  loose, _ = seams_and_own(0.0)  # replacement alone: exact known frames, loose seam
  assert loose.min() > 1.5 * own.max(), (loose, own)
  hierarchical = interpolate_samples(drawer(8.0), shape, 3)
  assert hierarchical.shape[1] == 2 * (shape[1] - 1) + 1
  assert steps_between_frames(hierarchical).max() <= 1.2 * own.max()
