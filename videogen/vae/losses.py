"""VAE training losses and video quality metrics (pure functions).

Videos are channels-last `(B, T, H, W, C)` in [-1, 1], so the data range is 2. Losses
return f32 scalars; metrics return one value per video, shape `(B,)`.
"""
from typing import Callable

import jax
import jax.numpy as jnp

RECON_KINDS = ("l1", "l2")

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def reconstruction_loss(x: jax.Array, y: jax.Array, kind: str = "l1") -> jax.Array:
  """Mean absolute ("l1") or mean squared ("l2") error over every element."""
  if kind not in RECON_KINDS:
    raise ValueError(f"reconstruction loss must be one of {RECON_KINDS}; got {kind!r}")
  diff = x.astype(jnp.float32) - y.astype(jnp.float32)
  return jnp.abs(diff).mean() if kind == "l1" else jnp.square(diff).mean()


def kl_loss(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, 1)) per latent element, mean-reduced over all elements
  (batch included): `0.5 * mean(mean² + exp(logvar) - 1 - logvar)`."""
  mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
  return 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


def psnr(x: jax.Array, y: jax.Array, data_range: float = 2.0) -> jax.Array:
  """Per-video PSNR in dB, `(B,)`: `10 log10(data_range² / mse)` with the MSE over
  `(T, H, W, C)`. Identical videos (mse = 0) give `+inf`; average such values with care."""
  diff = x.astype(jnp.float32) - y.astype(jnp.float32)
  mse = jnp.square(diff).reshape(diff.shape[0], -1).mean(-1)
  return 10.0 * jnp.log10(data_range ** 2 / mse)


def _gaussian_window(size: int, sigma: float = SSIM_SIGMA) -> jax.Array:
  """Normalised 1D Gaussian taps at offsets `-(size-1)/2 .. (size-1)/2` (size is odd)."""
  offsets = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
  taps = jnp.exp(-0.5 * jnp.square(offsets / sigma))
  return taps / taps.sum()


def ssim_window_size(height: int, width: int) -> int:
  """11, or for frames smaller than 11 pixels `min(11, H, W)` rounded down to odd."""
  size = min(SSIM_WINDOW, height, width)
  return size if size % 2 else size - 1


def _filter_valid(frames: jax.Array, taps: jax.Array) -> jax.Array:
  """Separable 'valid' filtering of `(N, H, W)` frames: along H, then along W."""
  size = taps.shape[0]
  x = frames[..., None]  # NHWC with one channel
  dims = ("NHWC", "HWIO", "NHWC")
  for kernel in (taps.reshape(size, 1, 1, 1), taps.reshape(1, size, 1, 1)):
    x = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=dims,
                                     precision=jax.lax.Precision.HIGHEST)
  return x[..., 0]


def ssim(x: jax.Array, y: jax.Array, data_range: float = 2.0) -> jax.Array:
  """Per-video SSIM, `(B,)` (Wang et al. 2004).

  Each frame's channels are compared separately with an 11×11 Gaussian window (σ = 1.5),
  K1 = 0.01, K2 = 0.03, population (not sample) covariances and 'valid' filtering, i.e.
  skimage's `structural_similarity(gaussian_weights=True, use_sample_covariance=False)`;
  the SSIM map is averaged over positions, channels and frames. Frames smaller than 11
  pixels use a `min(11, H, W)` window made odd (same σ), so 1-pixel frames compare means only.
  """
  b, t, h, w, c = x.shape
  taps = _gaussian_window(ssim_window_size(h, w))

  def frames(v):  # (B, T, H, W, C) → (B·T·C, H, W)
    return jnp.moveaxis(v.astype(jnp.float32), -1, 2).reshape(-1, h, w)

  x, y = frames(x), frames(y)
  moments = _filter_valid(jnp.concatenate([x, y, x * x, y * y, x * y]), taps)
  mu_x, mu_y, xx, yy, xy = jnp.split(moments, 5)
  var_x = xx - jnp.square(mu_x)
  var_y = yy - jnp.square(mu_y)
  cov = xy - mu_x * mu_y
  c1 = (SSIM_K1 * data_range) ** 2
  c2 = (SSIM_K2 * data_range) ** 2
  ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
              / ((jnp.square(mu_x) + jnp.square(mu_y) + c1) * (var_x + var_y + c2)))
  return ssim_map.reshape(b, -1).mean(-1)


def hinge_discriminator_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
  """Hinge loss for the discriminator: `0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))`."""
  real = jax.nn.relu(1.0 - logits_real.astype(jnp.float32)).mean()
  fake = jax.nn.relu(1.0 + logits_fake.astype(jnp.float32)).mean()
  return 0.5 * (real + fake)


def generator_adversarial_loss(logits_fake: jax.Array) -> jax.Array:
  """The generator's (decoder's) adversarial loss: `-mean(logits_fake)`."""
  return -logits_fake.astype(jnp.float32).mean()


def last_layer_grad_norm(loss_fn: Callable[[jax.Array], jax.Array],
                         last_layer_kernel) -> jax.Array:
  """L2 norm of `grad(loss_fn)(last_layer_kernel)`, where `loss_fn` maps the decoder's
  last-layer weights (an array or a pytree of arrays) to a scalar loss, e.g.
  `lambda k: recon_loss(decode(params with conv_out kernel = k))`."""
  grads = jax.grad(loss_fn)(last_layer_kernel)
  return jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32)))
                      for g in jax.tree_util.tree_leaves(grads)))


def adaptive_weight(recon_grad_norm: jax.Array, gan_grad_norm: jax.Array,
                    max_weight: float = 1e4) -> jax.Array:
  """VQGAN's (taming-transformers') adaptive adversarial weight, without gradient:
  `clip(recon_norm / (gan_norm + 1e-4), 0, max_weight)`.

  The norms are of the gradients of the reconstruction (+ perceptual) loss and of the
  generator's adversarial loss w.r.t. the decoder's last layer weights (see
  `last_layer_grad_norm`), so the adversarial term's pull on that layer matches the
  reconstruction's. Multiply by the configured discriminator weight on top."""
  weight = jnp.clip(recon_grad_norm / (gan_grad_norm + 1e-4), 0.0, max_weight)
  return jax.lax.stop_gradient(weight)
