"""Kinetics-400 Inception-I3D (Carreira & Zisserman 2017) in Flax linen: FVD's feature network.

FVD compares Gaussians fitted to I3D outputs of real and generated videos (see
`videogen/eval/frechet.py`). This is the DeepMind / TF-hub architecture as piergiaj's
pytorch-i3d ports it (and cd-fvd / TATS copy it), so their state dicts load unchanged:

- 'same' padding computed per input size exactly as piergiaj's `compute_pad`: the total
  `max(k - s, 0)` (or `max(k - size % s, 0)` when the stride does not divide the size) split
  with the extra element at the end, zeros, in convolutions *and* max pools;
- conv (no bias) → BatchNorm in inference mode (running statistics in the `batch_stats`
  collection) → ReLU; Mixed_3b..Mixed_5c inception blocks;
- AvgPool3d(kernel (2, 7, 7), stride 1) → (dropout: identity at eval) → 1×1×1 logits conv
  with bias → mean over the pooled positions' time axis.

Inputs smaller than 224×224×16 give a Mixed_5c map smaller than the (2, 7, 7) window, where
torch would fail: here the window is clamped to the map (a global average). At 224 px and
≥ 16 frames this is exactly the reference. The logits conv is linear, so the returned
1024-d `features` (the average-pooled map, averaged over pooled positions) satisfy
`logits = features @ W + b` exactly.

BatchNorm epsilon: piergiaj and TF use 1e-3 (the default here); cd-fvd / TATS run their
`i3d_pretrained_400.pt` with torch's 1e-5 — pass `bn_eps=1e-5` to reproduce their numbers.
Convolutions run at `Precision.HIGHEST` so TPUs/GPUs do not drop to bf16/TF32 passes.
"""
import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from videogen.models.layers import param
from videogen.formats.weight_files import _listing, load_state_dict, write_safetensors

NUM_CLASSES = 400
FEATURES_DIM = 1024
# Mixed blocks: name → output widths of (b0, b1a, b1b, b2a, b2b, b3b); max pools before them.
INCEPTION_BLOCKS = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
AVG_POOL = (2, 7, 7)
HOW_TO_GET = ("download piergiaj's rgb_imagenet.pt (or the FVD I3D, e.g. TATS' "
              "i3d_pretrained_400.pt) and convert it with `python -m videogen.convert "
              "--from pytorch-i3d SRC --to i3d.safetensors`")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """piergiaj's `compute_pad` for one axis → (before, after); the odd element goes after."""
  total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
  return total // 2, total - total // 2


def _pad_same(x_bthwc: jax.Array, kernel, stride) -> jax.Array:
  pads = [same_padding(n, k, s) for n, k, s in zip(x_bthwc.shape[1:4], kernel, stride)]
  return jnp.pad(x_bthwc, ((0, 0), *pads, (0, 0)))  # zeros, as F.pad


def max_pool_same(x_bthwc: jax.Array, kernel, stride) -> jax.Array:
  """`MaxPool3dSamePadding`: zero padding (not -inf; inputs are post-ReLU anyway)."""
  return jax.lax.reduce_window(_pad_same(x_bthwc, kernel, stride), -jnp.inf, jax.lax.max,
                               (1, *kernel, 1), (1, *stride, 1), "VALID")


def pooled_features(x_bthwc: jax.Array, window=AVG_POOL) -> jax.Array:
  """AvgPool3d(window, stride 1) with the window clamped to the map, then the mean over the
  pooled positions → `(B, C)`."""
  window = tuple(min(w, n) for w, n in zip(window, x_bthwc.shape[1:4]))
  pooled = jax.lax.reduce_window(x_bthwc, 0.0, jax.lax.add, (1, *window, 1), (1,) * 5,
                                 "VALID") / np.prod(window)
  return pooled.mean(axis=(1, 2, 3))


# Logical axis names (`i3d_in`, `i3d_out`, `i3d_classes`; kernel windows None) have no rule
# in `videogen.parallel.mesh.DEFAULT_RULES`, so flax leaves every I3D weight replicated: the
# network is small (12M parameters) and its batch is what gets sharded.


class Unit3D(nn.Module):
  """'same'-padded Conv3d → BatchNorm (inference) → ReLU; `logits=True`: conv + bias only."""
  features: int
  kernel: tuple[int, int, int] = (1, 1, 1)
  stride: tuple[int, int, int] = (1, 1, 1)
  logits: bool = False
  bn_eps: float = 1e-3

  @nn.compact
  def __call__(self, x_bthwc: jax.Array) -> jax.Array:
    c = self.features
    out_axis = "i3d_classes" if self.logits else "i3d_out"
    w = param(self, "kernel", nn.initializers.lecun_normal(),
               (*self.kernel, x_bthwc.shape[-1], c), (None, None, None, "i3d_in", out_axis))
    y = jax.lax.conv_general_dilated(
        _pad_same(x_bthwc, self.kernel, self.stride), w, self.stride, "VALID",
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"), precision=jax.lax.Precision.HIGHEST)
    if self.logits:
      return y + param(self, "bias", nn.initializers.zeros, (c,), (out_axis,))
    return nn.relu(BatchNorm(self.bn_eps, name="bn")(y))


class BatchNorm(nn.Module):
  """Inference-mode BatchNorm: params `scale`, `bias`; batch_stats `mean`, `var`."""
  epsilon: float = 1e-3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    stat = lambda fill: nn.with_logical_partitioning(lambda: jnp.full((c,), fill, jnp.float32),
                                                     ("i3d_out",))
    mean = self.variable("batch_stats", "mean", stat(0.0)).value
    var = self.variable("batch_stats", "var", stat(1.0)).value
    scale = param(self, "scale", nn.initializers.ones, (c,), ("i3d_out",))
    bias = param(self, "bias", nn.initializers.zeros, (c,), ("i3d_out",))
    return (x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias


class InceptionModule(nn.Module):
  """Four branches — 1×1; 1×1→3×3×3; 1×1→3×3×3; max pool 3×3×3→1×1 — concatenated."""
  widths: tuple[int, ...]  # b0, b1a, b1b, b2a, b2b, b3b
  bn_eps: float = 1e-3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.widths
    unit = functools.partial(Unit3D, bn_eps=self.bn_eps)
    b0 = unit(w[0], name="b0")(x)
    b1 = unit(w[2], (3, 3, 3), name="b1b")(unit(w[1], name="b1a")(x))
    b2 = unit(w[4], (3, 3, 3), name="b2b")(unit(w[3], name="b2a")(x))
    b3 = unit(w[5], name="b3b")(max_pool_same(x, (3, 3, 3), (1, 1, 1)))
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class InceptionI3d(nn.Module):
  """`(B, T, H, W, 3)` in [-1, 1] → `(logits (B, num_classes), out)`; `out` holds
  `features` (B, 1024), the pooled vector the logits conv reads, and `pre_pool`, the Mixed_5c
  map (B, T/8, H/32, W/32, 1024). Variables: `params` and `batch_stats`."""
  num_classes: int = NUM_CLASSES
  bn_eps: float = 1e-3

  @nn.compact
  def __call__(self, x_bthwc: jax.Array):
    unit = functools.partial(Unit3D, bn_eps=self.bn_eps)
    x = unit(64, (7, 7, 7), (2, 2, 2), name="Conv3d_1a_7x7")(x_bthwc)
    x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_2a_3x3
    x = unit(64, name="Conv3d_2b_1x1")(x)
    x = unit(192, (3, 3, 3), name="Conv3d_2c_3x3")(x)
    x = max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_3a_3x3
    for name, spec in INCEPTION_BLOCKS:
      if name.startswith("MaxPool"):
        x = max_pool_same(x, *spec)
      else:
        x = InceptionModule(spec, self.bn_eps, name=name)(x)
    features = pooled_features(x)  # dropout is the identity at evaluation
    logits = Unit3D(self.num_classes, logits=True, name="logits")(features[:, None, None, None])
    return logits[:, 0, 0, 0], {"features": features, "pre_pool": x}


# --- conversion from piergiaj / cd-fvd state dicts -------------------------------------------

_TORCH_LEAVES = {  # our (collection, module, leaf) → the torch suffix
    ("params", "kernel"): "conv3d.weight", ("params", "bias"): "conv3d.bias",
    ("params", "bn", "scale"): "bn.weight", ("params", "bn", "bias"): "bn.bias",
    ("batch_stats", "bn", "mean"): "bn.running_mean",
    ("batch_stats", "bn", "var"): "bn.running_var"}
_IGNORED_SUFFIX = ".num_batches_tracked"


def torch_name(path: tuple[str, ...]) -> str:
  """`("params", "Mixed_3b", "b0", "bn", "scale")` → `"Mixed_3b.b0.bn.weight"`."""
  collection, *modules, leaf = path
  if modules[-1] == "bn":
    return ".".join(modules[:-1] + [_TORCH_LEAVES[(collection, "bn", leaf)]])
  return ".".join(modules + [_TORCH_LEAVES[(collection, leaf)]])


@functools.lru_cache(maxsize=4)
def expected_shapes(num_classes: int = NUM_CLASSES) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Flat variable path → shape, for `InceptionI3d(num_classes)`."""
  abstract = jax.eval_shape(InceptionI3d(num_classes).init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 8, 32, 32, 3), jnp.float32))
  return {path: leaf.shape
          for path, leaf in traverse_util.flatten_dict(nn.unbox(abstract)).items()}


def _check_keys(what: str, got, expected, ignored=()) -> None:
  missing = set(expected) - set(got)
  unexpected = set(got) - set(expected) - set(ignored)
  if missing or unexpected:
    raise ValueError(f"{what} does not match InceptionI3d: {len(missing)} missing keys "
                     f"[{_listing(missing)}], {len(unexpected)} unexpected keys "
                     f"[{_listing(unexpected)}]")


def _num_classes(arrays: dict, bias_key) -> int:
  return int(arrays[bias_key].shape[0]) if bias_key in arrays else NUM_CLASSES


def convert_state_dict(state_dict: dict[str, np.ndarray]) -> dict:
  """piergiaj / cd-fvd `InceptionI3d.state_dict()` (numpy) → `{"params", "batch_stats"}`.
  The class count comes from `logits.conv3d.bias`; `num_batches_tracked` is ignored."""
  expected = expected_shapes(_num_classes(state_dict, "logits.conv3d.bias"))
  names = {torch_name(path): path for path in expected}
  _check_keys("I3D state dict", state_dict, names,
              [k for k in state_dict if k.endswith(_IGNORED_SUFFIX)])
  flat = {}
  for name, path in names.items():
    value = np.asarray(state_dict[name], np.float32)
    if path[-1] == "kernel":  # torch (O, I, kt, kh, kw) → (kt, kh, kw, I, O)
      value = value.transpose(2, 3, 4, 1, 0)
    if value.shape != expected[path]:
      raise ValueError(f"I3D state dict: {name} has shape {value.shape} (as ours), "
                       f"expected {expected[path]}")
    flat[path] = value
  return traverse_util.unflatten_dict(flat)


def save_converted(variables: dict, path: str) -> None:
  """Variables → one safetensors file with flat names (`params/Mixed_3b/b0/kernel`,
  `batch_stats/Mixed_3b/b0/bn/mean`, ...)."""
  flat = traverse_util.flatten_dict(nn.unbox(variables), sep="/")
  write_safetensors(path, {k: np.asarray(v, np.float32) for k, v in flat.items()},
                    metadata={"format": "videogen-i3d"})


def _from_flat(arrays: dict[str, np.ndarray], path: str) -> dict:
  expected = expected_shapes(_num_classes(arrays, "params/logits/bias"))
  _check_keys(path, arrays, {"/".join(p) for p in expected})
  for p, shape in expected.items():
    if arrays["/".join(p)].shape != shape:
      raise ValueError(f"{path}: {'/'.join(p)} has shape {arrays['/'.join(p)].shape}, "
                       f"expected {shape}")
  return traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in
                                       arrays.items()}, sep="/")


def load_i3d(path) -> dict:
  """Our converted `.safetensors`, or a piergiaj / cd-fvd state dict (`.pt`/`.pth`, or a
  safetensors with torch names) → `{"params", "batch_stats"}` of numpy arrays."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no I3D weights at {path}: {HOW_TO_GET}")
  arrays = load_state_dict(path)
  if any(k.startswith(("params/", "batch_stats/")) for k in arrays):
    return _from_flat(arrays, path)
  return convert_state_dict(arrays)


def convert_file(src: str, dst: str) -> None:
  """A piergiaj / cd-fvd I3D state dict (`.pt`, `.pth`, `.safetensors`) → our safetensors."""
  save_converted(load_i3d(src), dst)


# --- FVD features ----------------------------------------------------------------------------

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
