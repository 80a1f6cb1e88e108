"""The VAE's fast formulations equal what they replace: `conv3d` (temporal taps of 2D
convolutions, the history read in place) against the plain 3D convolution of `history ++ x`,
and the spatial norm's 1×1×1 convolutions run before the nearest-neighbour resize instead of
after it. Small shapes; f32 summation order is the only difference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.vae.model import conv3d, conv3d_reference, resize_like


def _normal(rng, shape, scale=1.0):
  return jnp.asarray(rng.standard_normal(shape).astype(np.float32) * scale)


@pytest.mark.parametrize("kernel,strides,padding,frames,past", [
    ((3, 3, 3), (1, 1, 1), ((1, 1), (1, 1)), 5, 2),   # the causal conv, cached history
    ((3, 3, 3), (1, 1, 1), ((1, 1), (1, 1)), 1, 2),   # fewer frames than the history
    ((3, 3, 3), (1, 1, 1), ((1, 1), (1, 1)), 2, 2),
    ((3, 3, 3), (1, 1, 1), ((1, 1), (1, 1)), 6, 0),   # no history: 4 output frames
    ((1, 3, 3), (1, 2, 2), ((0, 1), (0, 1)), 4, 0),   # the spatial downsampler
    ((1, 3, 3), (1, 1, 1), ((1, 1), (1, 1)), 3, 0),   # the upsampler's conv
    ((1, 1, 1), (1, 1, 1), ((0, 0), (0, 0)), 3, 0),   # shortcuts and the spatial norm
    ((2, 3, 3), (2, 1, 1), ((1, 1), (1, 1)), 5, 1),   # a time stride: the plain path
])
def test_conv3d_equals_the_plain_3d_convolution(kernel, strides, padding, frames, past):
  rng = np.random.default_rng(sum(kernel) + frames + past)
  channels, features = 6, 5
  x = _normal(rng, (2, frames, 8, 10, channels))
  history = _normal(rng, (2, past, 8, 10, channels)) if past else None
  k = _normal(rng, (*kernel, channels, features), 0.3)
  want = conv3d_reference(x, k, strides, padding, history)
  got = jax.jit(lambda x, k, h: conv3d(x, k, strides, padding, h))(x, k, history)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("first_chunk", [True, False])
def test_pointwise_convolution_commutes_with_the_latent_resize(first_chunk):
  rng = np.random.default_rng(0)
  z = _normal(rng, (1, 3, 2, 3, 4))
  k = _normal(rng, (1, 1, 1, 4, 7))
  frames = 9 if first_chunk else 12
  size = dict(frames=frames, height=8, width=12, first_chunk=first_chunk)
  after = resize_like(conv3d(z, k, (1, 1, 1), ((0, 0), (0, 0))), **size)
  before = conv3d_reference(resize_like(z, **size), k, (1, 1, 1), ((0, 0), (0, 0)))
  np.testing.assert_allclose(after, before, atol=1e-6)
