"""Encoding and decoding long clips and big frames in bounded memory.

Temporal chunking: the clip is cut into a first chunk of `1 + n` frames and further chunks
of `n` (n a multiple of the VAE's time factor). Each chunk runs through one jitted program
with the flax `cache` collection mutable, so every causal convolution hands its last frames
to the next chunk. Peak memory is one chunk's activations whatever the clip length, and with
per-frame norms (`norm_scope="frame"`) the result equals the one-shot pass.

Spatial tiling: overlapping tiles go through the (chunked) codec separately and are blended
with linear ramps over the overlaps. It approximates the one-shot pass near tile borders
(as in diffusers); geometry is exact (a pointwise function tiles to itself).
"""
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from videogen.vae.model import Autoencoder, check_video_shape


@functools.lru_cache(maxsize=None)
def _chunk_program(model: Autoencoder, method: str, first_chunk: bool, last_chunk: bool = False):
  """`(params, cache, x) → (y, new_cache)` for one chunk, compiled once per chunk shape.

  The last chunk (a one-chunk clip's only one) hands no cache on (`new_cache` is `{}`): the
  cached frames are extra program outputs, which XLA CPU's schedulers are apt to compute
  late, keeping layer inputs alive (`model.after` ties each to its layer; without a cache
  the question does not arise)."""

  def run(params, cache, x):
    if last_chunk:
      return model.apply({"params": params, "cache": cache}, x, first_chunk=first_chunk,
                         method=method), {}
    y, variables = model.apply({"params": params, "cache": cache}, x, first_chunk=first_chunk,
                               method=method, mutable=["cache"])
    return y, variables["cache"]

  return jax.jit(run)


def chunk_bounds(length: int, chunk: int,
                 remainder_first: bool = False) -> list[tuple[int, int]]:
  """[(start, stop)] covering `length`: the first chunk is `1 + chunk`, the rest `chunk`
  (the last may be shorter). `remainder_first`: diffusers' CogVideoX frame batching instead,
  where the first chunk is `chunk + length % chunk` (the whole clip when shorter than
  `chunk`) and the rest `chunk`: 13 frames in chunks of 8 are one chunk, 21 are 13 + 8."""
  if remainder_first:
    first = chunk + length % chunk if length >= chunk else length
    return [(0, first)] + [(start, start + chunk) for start in range(first, length, chunk)]
  bounds, start = [], 0
  while start < length:
    stop = min(length, start + chunk + (1 if start == 0 else 0))
    bounds.append((start, stop))
    start = stop
  return bounds


def batches_like_diffusers(model: Autoencoder, method: str) -> bool:
  """Whether `method` chunks as diffusers batches frames (see `encode`): encoding with a
  clip-norm VAE."""
  return method == "encode_moments" and any(
      codec.norm_scope == "clip" for codec in model.spec.codecs)


def _run_chunked(model, method, params, x, chunk, on_host):
  outputs, cache = [], {}
  for start, stop in chunk_bounds(x.shape[1], chunk, batches_like_diffusers(model, method)):
    program = _chunk_program(model, method, start == 0, stop == x.shape[1])
    y, cache = program(params, cache, x[:, start:stop])
    outputs.append(np.asarray(y) if on_host else y)
  return np.concatenate(outputs, axis=1) if on_host else jnp.concatenate(outputs, axis=1)


def encode(model: Autoencoder, params, video, chunk_frames: int | None = None,
           on_host: bool = False):
  """Video `(B, T, H, W, C)` → posterior moments `(B, T', H', W', 2·latent)`, in temporal
  chunks of `chunk_frames` (None: one pass). Split with `model.split_moments`-style halves.

  A clip-norm VAE (`norm_scope="clip"`, CogVideoX's) depends on where chunks start, so it is
  chunked as diffusers batches frames (`chunk_bounds(remainder_first=True)`): an imported
  CogVideoX VAE then gives diffusers' latents for every `1 + 4k` frames."""
  spec = model.spec
  check_video_shape(spec, *video.shape[1:])
  if chunk_frames is not None and (chunk_frames < 1 or chunk_frames % spec.temporal_factor):
    raise ValueError(f"chunk_frames={chunk_frames} must be a positive multiple of "
                     f"{spec.temporal_factor}")
  chunk = chunk_frames or video.shape[1]
  return _run_chunked(model, "encode_moments", params, video, chunk, on_host)


def decode(model: Autoencoder, params, latents, chunk_latents: int | None = None,
           on_host: bool = False):
  """Latents `(B, T', H', W', latent)` → video, in temporal chunks of `chunk_latents`.

  Always `1 + 4(T' − 1)` frames. For a CogVideoX import with `chunk_latents=2` this is
  diffusers' video when T' is odd (clips of `1 + 8k` frames); for an even T' diffusers'
  decoder interpolates the first latent frame like the rest and returns `4·T'` frames, so
  there is no causal clip of its to match."""
  if latents.shape[-1] != model.spec.latent_channels:
    raise ValueError(f"the VAE decodes {model.spec.latent_channels}-channel latents; got "
                     f"{latents.shape[-1]} channels")
  chunk = chunk_latents or latents.shape[1]
  return _run_chunked(model, "decode", params, latents, chunk, on_host)


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
  if size <= tile:
    return [0]
  stride = tile - overlap
  starts = list(range(0, size - tile, stride))
  return starts + [size - tile]


def _ramp_weights(start: int, length: int, size: int, ramp: int) -> np.ndarray:
  """1 inside, linear ramps over `ramp` samples on each side that has a neighbour tile."""
  w = np.ones(length, np.float32)
  if ramp > 0:
    up = np.arange(1, ramp + 1, dtype=np.float32) / (ramp + 1)
    if start > 0:
      w[:ramp] = up
    if start + length < size:
      w[-ramp:] = np.minimum(w[-ramp:], up[::-1])
  return w


def tiled(fn: Callable, x, tile: int, overlap: int, scale: float):
  """Applies `fn` to overlapping `tile × tile` windows of `x` (`(B, T, H, W, C)`) and blends.

  `scale` is fn's spatial factor (8 for decode, 1/8 for encode); `tile` and `overlap` are in
  input pixels and must map to whole output pixels."""
  if overlap >= tile:
    raise ValueError(f"tile overlap {overlap} must be smaller than the tile {tile}")
  h, w = x.shape[2:4]
  out_h, out_w = round(h * scale), round(w * scale)
  total, weight = None, None
  for top in _tile_starts(h, tile, overlap):
    for left in _tile_starts(w, tile, overlap):
      y = np.asarray(fn(x[:, :, top:top + tile, left:left + tile]))
      oh, ow, ot, ol = y.shape[2], y.shape[3], round(top * scale), round(left * scale)
      ramp = round(overlap * scale)
      wt = (_ramp_weights(ot, oh, out_h, ramp)[:, None]
            * _ramp_weights(ol, ow, out_w, ramp)[None, :])[None, None, :, :, None]
      if total is None:
        total = np.zeros((*y.shape[:2], out_h, out_w, y.shape[-1]), np.float32)
        weight = np.zeros((1, 1, out_h, out_w, 1), np.float32)
      total[:, :, ot:ot + oh, ol:ol + ow] += y * wt
      weight[:, :, ot:ot + oh, ol:ol + ow] += wt
  return total / weight
