"""FVD's features: `I3DFeatures(path)(videos)`, the I3D network (`videogen/eval/i3d.py`) over
uint8 videos, resized as cd-fvd does, batch-sharded over the devices. The weights are read by
`videogen/formats/i3d.py`; `videogen/eval/frechet.py` turns the features into the distance.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from videogen.eval.i3d import FEATURES_DIM, InceptionI3d
from videogen.formats.i3d import load_i3d


def preprocess(videos_uint8_nthwc, size=224) -> jax.Array:
  """uint8 `(N, T, H, W, 3)` → float32 `(N, T, size, size, 3)` in [-1, 1], as cd-fvd's
  `preprocess_i3d`: bilinear, half-pixel centres, no antialiasing (torch `F.interpolate(...,
  mode="bilinear", align_corners=False)`), then `2 x / 255 - 1`. `size` may be `(h, w)`."""
  h, w = (size, size) if isinstance(size, int) else size
  x = jnp.asarray(videos_uint8_nthwc).astype(jnp.float32)
  x = jax.image.resize(x, (*x.shape[:2], h, w, x.shape[-1]), "bilinear", antialias=False)
  return 2.0 * x / 255.0 - 1.0


@functools.partial(jax.jit, static_argnums=(0, 3))
def _forward(model: InceptionI3d, variables, videos_uint8, size):
  logits, out = model.apply(variables, preprocess(videos_uint8, size))
  return logits, out["features"]


def data_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D `data` mesh over `devices` (default: all), Auto axis types (GSPMD)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


class I3DFeatures:
  """FVD's network as a function of uint8 videos: `I3DFeatures(path)(videos) → (N, 400)`.

  Batches are split over every axis of `mesh` (default: a 1-D mesh of all devices); the
  weights are replicated. Feed the result to `FeatureStats(400).update(...)`, or pass
  `features=True` for the 1024-d pooled features (`FeatureStats(1024)`)."""

  def __init__(self, path, mesh: jax.sharding.Mesh | None = None, size=224,
               bn_eps: float = 1e-3):
    variables = load_i3d(path)
    self.mesh = data_mesh() if mesh is None else mesh
    self.size = size if isinstance(size, int) else tuple(size)
    self.model = InceptionI3d(variables["params"]["logits"]["bias"].shape[0], bn_eps)
    replicated = NamedSharding(self.mesh, P())
    self.variables = jax.tree.map(
        lambda v: jax.make_array_from_callback(v.shape, replicated, lambda i: v[i]), variables)
    self._batch = NamedSharding(self.mesh, P(tuple(self.mesh.axis_names)))

  def __call__(self, videos_uint8, batch_size: int = 32, features: bool = False) -> np.ndarray:
    """`(N, T, H, W, 3)` uint8 → float32 `(N, 400)` logits (`(N, 1024)` with `features`).
    `batch_size` is rounded up to a multiple of the device count; the last batch is padded
    (one compiled shape) and the padding dropped."""
    videos = np.asarray(videos_uint8)
    if videos.ndim != 5 or videos.shape[-1] != 3:
      raise ValueError(f"I3D wants uint8 videos (N, T, H, W, 3); got shape {videos.shape}")
    devices = self.mesh.size
    batch = -(-max(1, min(batch_size, len(videos))) // devices) * devices
    outputs = []
    for start in range(0, len(videos), batch):
      chunk = videos[start:start + batch]
      padded = np.pad(chunk, ((0, batch - len(chunk)),) + ((0, 0),) * 4)
      # Every process holds all videos; each places the rows its devices own, and the result
      # comes back whole on every process (several hosts: one gather over the network).
      inputs = jax.make_array_from_callback(padded.shape, self._batch, lambda i: padded[i])
      logits, pooled = _forward(self.model, self.variables, inputs, self.size)
      result = multihost_utils.process_allgather(pooled if features else logits, tiled=True)
      outputs.append(np.asarray(result)[:len(chunk)])
    dim = FEATURES_DIM if features else self.model.num_classes
    return np.concatenate(outputs) if outputs else np.zeros((0, dim), np.float32)
