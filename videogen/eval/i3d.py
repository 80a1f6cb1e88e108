"""Kinetics-400 Inception-I3D (Carreira & Zisserman 2017) in Flax linen: FVD's feature network.

FVD compares Gaussians fitted to I3D outputs of real and generated videos (see
`videogen/eval/frechet.py`; `videogen/eval/i3d_features.py` runs this network over uint8
videos, `videogen/formats/i3d.py` imports its weights). This is the DeepMind / TF-hub
architecture as piergiaj's pytorch-i3d ports it (and cd-fvd / TATS copy it), so their state
dicts load unchanged:

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

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from videogen.models.layers import param

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


@functools.lru_cache(maxsize=4)
def expected_shapes(num_classes: int = NUM_CLASSES) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Flat variable path → shape, for `InceptionI3d(num_classes)`."""
  abstract = jax.eval_shape(InceptionI3d(num_classes).init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 8, 32, 32, 3), jnp.float32))
  return {path: leaf.shape
          for path, leaf in traverse_util.flatten_dict(nn.unbox(abstract)).items()}
