"""VAE losses, metrics and the 3D PatchGAN discriminator."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from videogen.vae import losses
from videogen.vae.discriminator import PatchDiscriminator3D


# Test data comes from numpy: jax.random's threefry compiles slowly on CPU.
def _video(seed, shape=(2, 3, 16, 16, 3)):
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), jnp.float32)


def test_reconstruction_loss():
  x, y = jnp.zeros((2, 3)), jnp.array([[1.0, -2.0, 0.0], [0.0, 0.0, 3.0]])
  assert float(losses.reconstruction_loss(x, y, "l1")) == pytest.approx(1.0)
  assert float(losses.reconstruction_loss(x, y, "l2")) == pytest.approx(14 / 6)
  with pytest.raises(ValueError):
    losses.reconstruction_loss(x, y, "huber")


def test_psnr_matches_hand_computation_and_identical_is_inf():
  x, y = _video(0), _video(1)
  mse = np.mean((np.asarray(x) - np.asarray(y)) ** 2, axis=(1, 2, 3, 4))
  got = losses.psnr(x, y)
  assert got.shape == (2,)
  np.testing.assert_allclose(got, 10 * np.log10(4.0 / mse), rtol=1e-5)
  same = losses.psnr(x, x)
  assert np.all(np.isposinf(same))  # documented: mse = 0 → +inf


def _ssim_reference(x, y, data_range=2.0):
  """Direct 2D windowed sums over one (H, W) frame, float64, no separability."""
  g = np.exp(-0.5 * (np.arange(11) - 5.0) ** 2 / 1.5 ** 2)
  window = np.outer(g, g) / np.outer(g, g).sum()
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  h, w = x.shape
  values = []
  for i in range(h - 10):
    for j in range(w - 10):
      px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
      mx, my = np.sum(window * px), np.sum(window * py)
      vx = np.sum(window * (px - mx) ** 2)
      vy = np.sum(window * (py - my) ** 2)
      cxy = np.sum(window * (px - mx) * (py - my))
      values.append((2 * mx * my + c1) * (2 * cxy + c2)
                    / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
  return np.mean(values)


def test_ssim_matches_direct_reference():
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (17, 19))
  y = np.clip(x + 0.3 * rng.standard_normal(x.shape), -1, 1)
  got = losses.ssim(jnp.asarray(x, jnp.float32)[None, None, :, :, None],
                    jnp.asarray(y, jnp.float32)[None, None, :, :, None])
  assert got.shape == (1,)
  np.testing.assert_allclose(float(got[0]), _ssim_reference(x, y), atol=1e-5)


def test_ssim_averages_frames_and_channels():
  x, y = _video(2, (1, 2, 12, 12, 3)), _video(3, (1, 2, 12, 12, 3))
  xn, yn = np.asarray(x, np.float64), np.asarray(y, np.float64)
  expected = np.mean([_ssim_reference(xn[0, t, :, :, c], yn[0, t, :, :, c])
                      for t in range(2) for c in range(3)])
  np.testing.assert_allclose(float(losses.ssim(x, y)[0]), expected, atol=1e-5)


def test_ssim_identity_symmetry_and_monotone_in_noise():
  x = _video(4)
  np.testing.assert_allclose(losses.ssim(x, x), 1.0, atol=1e-6)
  y = _video(5)
  np.testing.assert_allclose(losses.ssim(x, y), losses.ssim(y, x), atol=1e-6)
  noise = jnp.asarray(np.random.default_rng(6).standard_normal(x.shape), jnp.float32)
  scores = [float(losses.ssim(x, jnp.clip(x + s * noise, -1, 1)).mean())
            for s in (0.05, 0.2, 0.6)]
  assert scores[0] > scores[1] > scores[2]


def test_ssim_small_frames_use_smaller_odd_window():
  assert losses.ssim_window_size(64, 64) == 11
  assert losses.ssim_window_size(8, 16) == 7
  assert losses.ssim_window_size(1, 1) == 1
  x = _video(7, (1, 1, 6, 8, 3))
  assert losses.ssim(x, _video(8, (1, 1, 6, 8, 3))).shape == (1,)
  np.testing.assert_allclose(losses.ssim(x, x), 1.0, atol=1e-6)


def test_kl_loss():
  zeros = jnp.zeros((2, 3, 4))
  assert float(losses.kl_loss(zeros, zeros)) == 0.0
  mean, logvar = jnp.full((4,), 2.0), jnp.full((4,), np.log(0.5))
  expected = 0.5 * (4.0 + 0.5 - 1.0 - np.log(0.5))
  assert float(losses.kl_loss(mean, logvar)) == pytest.approx(expected, rel=1e-6)
  mean = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4)), jnp.float32)
  grad = jax.grad(losses.kl_loss)(mean, zeros)
  np.testing.assert_allclose(grad, mean / mean.size, rtol=1e-6)


def test_hinge_and_generator_losses():
  two = jnp.full((2, 3), 2.0)
  assert float(losses.hinge_discriminator_loss(two, -two)) == 0.0
  assert float(losses.hinge_discriminator_loss(0 * two, 0 * two)) == pytest.approx(1.0)
  # real 0.5 → relu(0.5) = 0.5; fake -3 → 0: half of 0.5.
  assert float(losses.hinge_discriminator_loss(0.25 * two, -1.5 * two)) == pytest.approx(0.25)
  assert float(losses.generator_adversarial_loss(jnp.array([1.0, 3.0]))) == -2.0


def test_adaptive_weight():
  assert float(losses.adaptive_weight(jnp.float32(2.0), jnp.float32(4.0))) == pytest.approx(
      2.0 / (4.0 + 1e-4))
  assert float(losses.adaptive_weight(jnp.float32(1.0), jnp.float32(0.0))) == 1e4
  assert float(losses.adaptive_weight(jnp.float32(1.0), jnp.float32(0.0), 10.0)) == 10.0
  assert float(losses.adaptive_weight(jnp.float32(0.0), jnp.float32(1.0))) == 0.0
  grad = jax.grad(lambda r: losses.adaptive_weight(r, jnp.float32(1.0)))(jnp.float32(2.0))
  assert float(grad) == 0.0  # stop_gradient


def test_last_layer_grad_norm():
  kernel = jnp.array([[1.0, -2.0], [3.0, 0.5]])
  # d/dk of sum(k²) is 2k.
  norm = losses.last_layer_grad_norm(lambda k: jnp.sum(k ** 2), kernel)
  np.testing.assert_allclose(norm, 2 * np.linalg.norm(np.asarray(kernel)), rtol=1e-6)


def _init_shapes(model, shape):
  """`init_with_output` traced abstractly (no compile): (logits, boxed variables) shapes."""
  return jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x),
                        jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.mark.parametrize("shape,expected", [((2, 5, 32, 32, 3), (2, 2, 4, 4, 1)),
                                            ((1, 1, 16, 16, 3), (1, 1, 2, 2, 1))])
def test_discriminator_shapes(shape, expected):
  out, _ = _init_shapes(PatchDiscriminator3D(), shape)
  assert out.shape == expected and out.dtype == jnp.float32
  # Two layers halve space once less; time (T=5 → 2, T=1 → 1) is the same.
  out, _ = _init_shapes(PatchDiscriminator3D(channels=8, num_layers=2), shape)
  assert out.shape == (shape[0], expected[1], 2 * expected[2], 2 * expected[3], 1)


def test_discriminator_small_inputs_keep_every_axis():
  # Time is strided only while ≥ 4 frames, space only while ≥ 2 pixels: nothing hits zero.
  out, _ = _init_shapes(PatchDiscriminator3D(), (1, 3, 4, 2, 3))
  assert out.shape == (1, 3, 1, 1, 1)
  out, _ = _init_shapes(PatchDiscriminator3D(), (1, 9, 8, 8, 3))
  assert out.shape == (1, 2, 1, 1, 1)  # 9 → 4 → 2, then 2 < 4 keeps 2


def test_discriminator_params_have_logical_names():
  model = PatchDiscriminator3D(channels=8, num_layers=2)
  _, variables = _init_shapes(model, (1, 4, 16, 16, 3))
  specs = nn.get_partition_spec(variables)["params"]
  kernels = {k: v["kernel"] for k, v in specs.items() if "kernel" in v}
  assert set(kernels) == {"conv_in", "down_1_conv", "mid_conv", "conv_out"}
  for name, spec in kernels.items():
    # The one-channel logit layer stays unsharded: 1 does not divide over an fsdp axis.
    out_axis = None if name == "conv_out" else "vae_channels"
    assert tuple(spec) == (None, None, None, None, out_axis)
  assert tuple(specs["mid_conv"]["bias"]) == ("vae_channels",)
  assert tuple(specs["mid_norm"]["scale"]) == ("vae_channels",)


def test_discriminator_learns_to_separate_real_from_fake():
  model = PatchDiscriminator3D(channels=8, num_layers=1)  # small: compiles quickly
  real = jnp.asarray(np.random.default_rng(1).standard_normal((2, 4, 8, 8, 3)), jnp.float32)
  fake = jnp.zeros_like(real)
  key = jax.random.key(0, impl="rbg")  # compiles much faster than threefry on CPU
  params = nn.unbox(jax.jit(model.init)(key, real))["params"]
  tx = optax.adam(1e-3)

  def loss_fn(p):
    logits = model.apply({"params": p}, jnp.concatenate([real, fake]))
    return losses.hinge_discriminator_loss(logits[:2], logits[2:])

  @jax.jit
  def step(p, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  opt_state = tx.init(params)
  history = []
  for _ in range(15):
    params, opt_state, loss = step(params, opt_state)
    history.append(float(loss))
  assert np.all(np.isfinite(history)) and history[-1] < 0.5 * history[0], history
  logits = jax.jit(model.apply)({"params": params}, jnp.concatenate([real, fake]))
  assert float(logits[:2].mean()) > float(logits[2:].mean())
