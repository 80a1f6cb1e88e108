"""Controlled generation on top of `Generator`: image-to-video, extension to any length,
keyframe interpolation and SDEdit editing with an optional inpainting mask.

All four are one mechanism, a `FrameCondition` (known content + mask, in the sampler's
space: pixels, or latent frames for a latent model) passed through the same jitted, sharded
sampler (`videogen.diffusion.conditions`). Inputs and outputs are uint8 `(N, T, H, W, 3)`.
"""
import numpy as np

from videogen.data.frames import cover_crop
from videogen.diffusion import conditions
from videogen.sampling.generator import Generator


def image_to_video(generator: Generator, prompts: list[str], image: np.ndarray, *,
                   seed: int = 0, num_frames: int | None = None, negative_prompt: str = "",
                   **options) -> np.ndarray:
  """The clip starts at `image` (uint8 `(H, W, 3)`, fitted to the clip size): its encoding
  pins the first frame (the first latent frame of a causal VAE, which encodes one image
  alone) and the model animates the rest."""
  shape = generator.sample_shape(len(prompts), num_frames)
  height, width = _pixel_size(generator)
  first = generator.encode(np.broadcast_to(cover_crop(image, height, width)[None, None],
                                           (len(prompts), 1, height, width, 3)))
  x = generator.sample(prompts, shape, generator.options(shape, **options), seed=seed,
                       negative_prompt=negative_prompt,
                       condition=conditions.first_frames(first, shape))
  return generator.decode(x)


def extend(generator: Generator, prompts: list[str], num_frames: int, *, overlap: int | None = None,
           seed: int = 0, negative_prompt: str = "", **options) -> np.ndarray:
  """Autoregressive continuation to `num_frames` frames: each new chunk (the training clip
  length) is conditioned on the last `overlap` frames of the previous one (sampler frames:
  latent frames for a latent model) and contributes the rest; one decode at the end."""
  shape, draw = _chunk_drawer(generator, prompts, seed, negative_prompt, options)
  x = extend_samples(draw, shape, _sample_frames_for(generator, num_frames),
                     overlap or generator.config.sample.extend_overlap)
  return generator.decode(x)[:, :num_frames]


def extend_samples(draw, shape, length: int, overlap: int) -> np.ndarray:
  """`draw(condition, k)` → the k-th chunk `shape`; chunks chained on `overlap` frames until
  `length` frames exist (sampler space)."""
  chunk = shape[1]
  if not 0 < overlap < chunk:
    raise ValueError(f"extend overlap {overlap} must be between 1 and the chunk's {chunk - 1}")
  x = draw(None, 0)
  pieces = [np.asarray(x)]
  while sum(p.shape[1] for p in pieces) < length:
    x = draw(conditions.first_frames(x[:, -overlap:], shape), len(pieces))
    pieces.append(np.asarray(x[:, overlap:]))
  return np.concatenate(pieces, axis=1)


def interpolate(generator: Generator, prompts: list[str], num_keyframes: int, *,
                seed: int = 0, negative_prompt: str = "", **options) -> np.ndarray:
  """Hierarchical long video: a first clip supplies `num_keyframes` evenly spaced keyframes,
  then every pair of neighbours is filled by a clip pinned at both ends."""
  shape, draw = _chunk_drawer(generator, prompts, seed, negative_prompt, options)
  return generator.decode(interpolate_samples(draw, shape, num_keyframes))


def interpolate_samples(draw, shape, num_keyframes: int) -> np.ndarray:
  """(K − 1) in-between clips sharing their end frames: (K − 1)(T − 1) + 1 frames."""
  chunk = shape[1]
  if not 2 <= num_keyframes <= chunk:
    raise ValueError(f"--keyframes {num_keyframes} must be between 2 and the clip's {chunk} "
                     f"frames")
  keys = draw(None, 0)[:, np.round(np.linspace(0, chunk - 1, num_keyframes)).astype(int)]
  pieces = [np.asarray(keys[:, :1])]
  for k in range(num_keyframes - 1):
    x = draw(conditions.keyframes(keys[:, k:k + 2], [0, chunk - 1], shape), 1 + k)
    pieces.append(np.asarray(x[:, 1:]))
  return np.concatenate(pieces, axis=1)


def edit(generator: Generator, prompts: list[str], video: np.ndarray, strength: float, *,
         mask: np.ndarray | None = None, seed: int = 0, negative_prompt: str = "",
         **options) -> np.ndarray:
  """SDEdit: `video` (uint8 `(T, H, W, 3)`, fitted to the clip size) noised to `strength`
  and denoised toward the prompt. `mask` (uint8/bool `(H, W)`, nonzero = regenerate) limits
  the edit to a region; everything outside it is the input's pixels exactly."""
  if not 0.0 < strength <= 1.0:
    raise ValueError(f"--strength {strength} must be in (0, 1]")
  height, width = _pixel_size(generator)
  frames = cover_crop(video, height, width)
  batch = np.broadcast_to(frames[None], (len(prompts), *frames.shape))
  shape = generator.sample_shape(len(prompts), len(frames))
  init = generator.encode(batch)
  condition = None
  if mask is not None:
    edit_region = cover_crop(np.repeat(np.asarray(mask, np.uint8)[..., None] * 255, 3, -1),
                             height, width)[..., 0] > 127
    keep = 1.0 - _to_sample_grid(edit_region, shape[2:4]).astype(np.float32)
    condition = conditions.region(init, keep)
  x = generator.sample(prompts, shape, generator.options(shape, strength=strength, **options),
                       seed=seed, negative_prompt=negative_prompt, condition=condition,
                       init=init)
  out = generator.decode(x)
  if mask is not None:  # latent models: restore the untouched pixels exactly
    out = np.where(edit_region[None, None, ..., None], out, batch[:, :out.shape[1]])
  return out


def _chunk_drawer(generator: Generator, prompts: list[str], seed: int, negative_prompt: str,
                  options: dict):
  """(chunk shape, `draw(condition, k)` → the k-th training-length chunk, seed + k)."""
  shape = generator.sample_shape(len(prompts))
  resolved = generator.options(shape, **options)
  return shape, lambda condition, k: generator.sample(
      prompts, shape, resolved, seed=seed + k, negative_prompt=negative_prompt,
      condition=condition)


def _pixel_size(generator: Generator) -> tuple[int, int]:
  return generator.config.data.height, generator.config.data.width


def _sample_frames_for(generator: Generator, num_frames: int) -> int:
  """Sampler frames that decode to at least `num_frames` video frames."""
  if generator.vae is None:
    return num_frames
  data = generator.config.data
  return generator.vae.latent_shape(num_frames, data.height, data.width)[0]


def _to_sample_grid(region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """A pixel mask `(H, W)` on the sampler's grid: any regenerated pixel in a latent cell
  marks the whole cell (so the kept cells are untouched in pixel space too)."""
  h, w = region.shape
  sh, sw = h // size[0], w // size[1]
  return region.reshape(size[0], sh, size[1], sw).any(axis=(1, 3))
