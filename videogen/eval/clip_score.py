"""The CLIP score of generated videos against their prompts (Hessel et al.; torchmetrics'
`100 * cos` scale): 100 · max(cos(image, text), 0) per frame, averaged over a video's frames.

Frames are resized and cropped as HF's CLIPImageProcessor does (shortest side to
`image_size`, bicubic with antialiasing, rounded to 8 bits, centre crop, processor mean/std).
The model is `videogen/eval/clip.py`; `ClipScorer.load` reads a transformers CLIP folder
through `videogen/formats/clip.py`.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from videogen.eval.clip import OPENAI_MEAN, OPENAI_STD, ClipModel, ClipSpec, unit
from videogen.eval.clip_tokenizer import ClipTokenizer
from videogen.formats.clip import load_clip, read_mean_std


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
  """HF's shortest-edge resize: the short side becomes `size`, the long one is truncated."""
  if width <= height:
    return int(size * height / width), size
  return size, int(size * width / height)


def preprocess(frames_uint8: jax.Array, image_size: int, mean: Sequence[float] = OPENAI_MEAN,
               std: Sequence[float] = OPENAI_STD) -> jax.Array:
  """RGB frames `(N, H, W, 3)` uint8 → CLIP pixels `(N, image_size, image_size, 3)` f32: the
  shortest side resized to `image_size` (bicubic, antialiased, 8-bit passes as PIL's), the
  centre crop, scaled to [0, 1] and normalised by mean/std."""
  n, h, w, _ = frames_uint8.shape
  x = jnp.asarray(frames_uint8, jnp.float32)
  new_h, new_w = resized_shape(h, w, image_size)
  # PIL resizes width then height, rounding to uint8 after each pass; so do we.
  if new_w != w:
    x = jnp.clip(jnp.round(jax.image.resize(x, (n, h, new_w, 3), "bicubic")), 0, 255)
  if new_h != h:
    x = jnp.clip(jnp.round(jax.image.resize(x, (n, new_h, new_w, 3), "bicubic")), 0, 255)
  top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
  x = x[:, top:top + image_size, left:left + image_size] / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def _in_batches(fn, x: np.ndarray, batch_size: int) -> np.ndarray:
  """`fn` over `x` in fixed-size batches (the last padded by repetition: one compilation)."""
  out = []
  for start in range(0, len(x), batch_size):
    chunk = x[start:start + batch_size]
    padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - len(chunk), 0)])
    out.append(np.asarray(fn(padded))[:len(chunk)])
  return np.concatenate(out)


class ClipScorer:
  """CLIP embeddings and scores of uint8 frames and captions, with jitted, batched encoders."""

  def __init__(self, spec: ClipSpec, params: dict, tokenizer: ClipTokenizer,
               mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD,
               batch_size: int = 32):
    model = ClipModel(spec)
    self.spec, self.params, self.tokenizer, self.batch_size = spec, params, tokenizer, batch_size
    self._images = jax.jit(lambda p, frames: unit(model.apply(
        {"params": p}, preprocess(frames, spec.image_size, mean, std),
        method=ClipModel.encode_image)))
    self._texts = jax.jit(lambda p, tokens: unit(model.apply(
        {"params": p}, tokens, method=ClipModel.encode_text)))

  @classmethod
  def load(cls, folder, batch_size: int = 32) -> "ClipScorer":
    """An HF CLIPModel folder, with its tokenizer files (and preprocessor_config.json)."""
    spec, params = load_clip(folder)
    tokenizer = ClipTokenizer.load(folder, spec.max_length)
    return cls(spec, params, tokenizer, *read_mean_std(folder), batch_size=batch_size)

  def image_embeds(self, frames_uint8: np.ndarray) -> np.ndarray:
    """`(N, H, W, 3)` uint8 → unit-norm `(N, projection_dim)`."""
    return _in_batches(lambda x: self._images(self.params, x), np.asarray(frames_uint8),
                       self.batch_size)

  def text_embeds(self, texts: Sequence[str]) -> np.ndarray:
    """Captions → unit-norm `(N, projection_dim)` (longer ones truncated to max_length)."""
    tokens, _ = self.tokenizer.encode(list(texts))
    return _in_batches(lambda x: self._texts(self.params, x), tokens, self.batch_size)

  def score(self, videos_uint8: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Videos `(N, T, H, W, 3)` uint8 and N captions → CLIP scores `(N,)`:
    100 · max(cos(frame, caption), 0), averaged over each video's frames."""
    videos = np.asarray(videos_uint8)
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8 or not videos.size:
      raise ValueError(f"videos must be uint8 (N, T, H, W, 3); got {videos.dtype} "
                       f"{videos.shape}")
    if len(texts) != len(videos):
      raise ValueError(f"{len(videos)} videos but {len(texts)} captions")
    n, t = videos.shape[:2]
    frames = self.image_embeds(videos.reshape(n * t, *videos.shape[2:])).reshape(n, t, -1)
    cos = np.einsum("ntp,np->nt", frames, self.text_embeds(texts))
    return 100.0 * np.maximum(cos, 0.0).mean(axis=1)
