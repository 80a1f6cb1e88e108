"""Frame/region conditioning for sampling: known content and a mask saying where it holds.

One mechanism (Open-Sora's mask strategy, RePaint-style replacement) serves image-to-video,
extension, keyframe interpolation and masked editing: after every sampler step the masked
part of the sample is replaced by the known content noised to the step's noise level (with
the sampler's own starting noise, so the two parts share one trajectory), and the final
sample keeps the known content exactly. All arrays are in the sampler's space: pixels for a
pixel model, VAE latents (frames = latent frames) for a latent one.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class FrameCondition(NamedTuple):
  known: jax.Array  # (B, T, H, W, C): content to keep (anything where mask is 0)
  mask: jax.Array   # (B, T, H, W, 1) in [0, 1]: 1 = keep `known`, 0 = generate

  def impose(self, x: jax.Array, noised_known: jax.Array) -> jax.Array:
    """`x` with the masked part replaced by `noised_known` (the known content at x's level)."""
    return self.mask * noised_known + (1.0 - self.mask) * x


def _frame_mask(shape, frame_indices) -> np.ndarray:
  """(B, T, H, W, 1) mask that is 1 on whole frames `frame_indices`."""
  b, t, h, w, _ = shape
  mask = np.zeros((b, t, h, w, 1), np.float32)
  mask[:, list(frame_indices)] = 1.0
  return mask


def first_frames(frames: jax.Array, shape) -> FrameCondition:
  """Image-to-video (k = 1) or a generic prefix: `frames` `(B, k, H, W, C)` become the first
  k frames of a sample shaped `shape`."""
  return keyframes(frames, range(frames.shape[1]), shape)


def keyframes(frames: jax.Array, indices, shape) -> FrameCondition:
  """`frames` `(B, K, H, W, C)` pinned at frame `indices` (K of them) of a sample `shape`."""
  indices = list(indices)
  if len(indices) != frames.shape[1] or max(indices) >= shape[1] or min(indices) < 0:
    raise ValueError(f"{frames.shape[1]} conditioning frames cannot sit at frames {indices} "
                     f"of a {shape[1]}-frame sample")
  if tuple(frames.shape[2:]) != tuple(shape[2:]):
    raise ValueError(f"conditioning frames are {frames.shape[2:]}, the sample is {shape[2:]} "
                     f"(H, W, C)")
  known = jnp.zeros(shape, jnp.float32).at[:, jnp.asarray(indices)].set(
      jnp.broadcast_to(frames, (shape[0], *frames.shape[1:])).astype(jnp.float32))
  return FrameCondition(known, jnp.asarray(_frame_mask(shape, indices)))


def region(video: jax.Array, keep: jax.Array) -> FrameCondition:
  """Inpainting: `video` `(B, T, H, W, C)` is kept where `keep` `(H, W)` (or `(B, T, H, W)`)
  is 1 and regenerated where it is 0."""
  keep = jnp.asarray(keep, jnp.float32)
  mask = jnp.broadcast_to(keep.reshape((1,) * (5 - keep.ndim - 1) + keep.shape + (1,)),
                          (*video.shape[:-1], 1))
  return FrameCondition(jnp.asarray(video, jnp.float32), mask)


# Training draws per clip one of these frame-mask kinds (Open-Sora's mask strategy), with the
# configured probabilities; the remainder is unconditioned (conditioning dropout).
MASK_KINDS = ("image_head", "head", "ends")


def training_frame_masks(key: jax.Array, batch: int, frames: int, probabilities: dict,
                         head_frames: int = 2) -> jax.Array:
  """`(B, T)` float masks (1 = given to the model): `image_head` the first frame (image-to-
  video), `head` the first `head_frames` (extension), `ends` the first and last frame
  (interpolation); each with its probability, else all zeros."""
  p = np.asarray([probabilities.get(kind, 0.0) for kind in MASK_KINDS], np.float32)
  if p.sum() > 1.0 + 1e-6 or p.min() < 0:
    raise ValueError(f"train.frame_masks {dict(zip(MASK_KINDS, p.tolist()))} must be "
                     f"probabilities summing to at most 1")
  choice = jax.random.choice(key, len(MASK_KINDS) + 1, (batch,),
                             p=jnp.asarray(np.append(p, max(0.0, 1 - p.sum()))))
  index = jnp.arange(frames)
  kinds = jnp.stack([index < 1, index < min(head_frames, frames - 1),
                     (index == 0) | (index == frames - 1), jnp.zeros(frames, bool)])
  return kinds[choice].astype(jnp.float32)
