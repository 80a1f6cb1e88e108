"""uint8 frames and the models' pixel space: `from_uint8`/`to_uint8` convert between uint8
`(..., H, W, 3)` and float32 in [-1, 1], and `cover_crop` fits frames to a size (scale to
cover, centre-crop). numpy and Pillow only, so Grain workers load nothing more."""
import numpy as np
from PIL import Image


def from_uint8(frames) -> np.ndarray:
  """uint8 `(..., H, W, 3)` → float32 in [-1, 1]."""
  return np.asarray(frames).astype(np.float32) / 127.5 - 1.0


def to_uint8(x) -> np.ndarray:
  """Pixels in [-1, 1] (clipped first) → uint8, rounded to nearest."""
  return np.round((np.clip(np.asarray(x, np.float32), -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def cover_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 `(..., h, w, 3)` → `(..., height, width, 3)`: scale (bicubic) so the frame covers
  `height × width`, then centre-crop."""
  lead = frames.shape[:-3]
  flat = np.asarray(frames).reshape((-1, *frames.shape[-3:]))
  out = np.empty((len(flat), height, width, 3), np.uint8)
  for i, frame in enumerate(flat):
    image = Image.fromarray(frame)
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    out[i] = np.asarray(image.resize(size, Image.BICUBIC).convert("RGB"))[
        top:top + height, left:left + width]
  return out.reshape((*lead, height, width, 3))
