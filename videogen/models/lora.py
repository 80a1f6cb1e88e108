"""LoRA adapters on the DiT's attention projections, and pure functions over their params.

A projection `y = x·W` (kernel `W` with input axes then output axes, e.g. `(embed, heads, kv)`
for q/k/v and `(heads, kv, embed)` for the output) gains `y += (alpha / rank) · (x·A)·B`:
`A` `(*in, rank)` starts Kaiming-uniform, `B` `(rank, *out)` starts at zero, so a fresh
adapter computes exactly the base model (Hu et al. 2021; peft's defaults). Each adapter is a
`LoRA` module named `{projection}_lora` beside that projection's `{projection}_kernel`, with
params `a` and `b`; under `nn.scan` every leaf gains the leading layer axis, as the kernels do.

Params trees without `*_lora` scopes are base params. `split_adapter`/`with_adapter` separate
and rejoin the two; `merge`/`unmerge` fold `scale·A·B` into the kernels and back;
`check_adapter`/`fold_adapter` check and fold in an adapter kept alone. Its files (safetensors +
JSON) are read and written by `videogen.checkpoints` (`save_adapter`, `load_adapter`,
`apply_adapter`).
"""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

SCOPE_SUFFIX = "_lora"     # `query_lora` adapts `query_kernel`
KERNEL_SUFFIX = "_kernel"
RANK_AXIS = "lora_rank"    # logical axis of the rank dimension (replicated: see mesh rules)
# DiTSpec fields that fix the adapted kernels' paths and shapes.
FINGERPRINT_FIELDS = ("layout", "width", "depth", "num_heads", "scan_layers")
MAX_RANK = 1 << 16


def scale(rank: int, alpha: float = 0.0) -> float:
  """The update's multiplier `alpha / rank`; alpha 0 means alpha = rank (scale 1)."""
  return (alpha or rank) / rank


class LoRA(nn.Module):
  """`scale · (x·A)·B` for a projection contracting x's last `len(in_axes)` axes into
  `features` outputs. Axis names repeat the base kernel's, plus `lora_rank`."""

  features: tuple[int, ...]
  in_axes: tuple[str | None, ...]
  out_axes: tuple[str | None, ...]
  rank: int
  alpha: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n_in = len(self.in_axes)
    # peft's kaiming_uniform(a=√5): U(±1/√fan_in), fan_in over the input axes.
    a_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform",
                                              in_axis=tuple(range(-n_in - 1, -1)), out_axis=-1)
    a = self.param("a", nn.with_logical_partitioning(a_init, (*self.in_axes, RANK_AXIS)),
                   (*x.shape[-n_in:], self.rank), jnp.float32)
    b = self.param("b", nn.with_logical_partitioning(nn.initializers.zeros,
                                                     (RANK_AXIS, *self.out_axes)),
                   (self.rank, *self.features), jnp.float32)
    down = jnp.tensordot(x.astype(self.dtype), a.astype(self.dtype), n_in)  # (..., rank)
    return scale(self.rank, self.alpha) * jnp.tensordot(down, b.astype(self.dtype), 1)


def _names(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def is_lora_path(path) -> bool:
  """Whether a params path (strings, or a `jax.tree_util` key path) lies in an adapter."""
  return any(name.endswith(SCOPE_SUFFIX) for name in _names(path))


def split_adapter(params) -> tuple[dict, dict]:
  """(base params, adapter params): two nested dicts that partition `params`' leaves."""
  flat = traverse_util.flatten_dict(params)
  base = {k: v for k, v in flat.items() if not is_lora_path(k)}
  adapter = {k: v for k, v in flat.items() if is_lora_path(k)}
  return traverse_util.unflatten_dict(base), traverse_util.unflatten_dict(adapter)


def with_adapter(base, adapter) -> dict:
  """The inverse of `split_adapter`."""
  return traverse_util.unflatten_dict({**traverse_util.flatten_dict(base),
                                       **traverse_util.flatten_dict(adapter)})


def _pairs(adapter) -> dict[tuple, tuple]:
  """{kernel path: (A, B)} for every adapter scope in `adapter`."""
  flat = traverse_util.flatten_dict(adapter)
  pairs = {}
  for path in dict.fromkeys(k[:-1] for k in flat):  # in tree order: the first misfit reported
    kernel = (*path[:-1], path[-1][:-len(SCOPE_SUFFIX)] + KERNEL_SUFFIX)
    pairs[kernel] = (flat.get((*path, "a")), flat.get((*path, "b")))
  return pairs


def _check_pair(where: str, kernel_path, a, b, kernel_shape, rank: int) -> None:
  """A `(*lead, *in, rank)` and B `(*lead, rank, *out)` must fit kernel `(*lead, *in, *out)`;
  else one ValueError line naming the kernel."""
  name = "/".join(kernel_path)
  if a is None or b is None:
    raise ValueError(f"{where}: the adapter of {name} lacks its "
                     f"{'a' if a is None else 'b'} matrix")
  if kernel_shape is None:
    raise ValueError(f"{where}: adapts {name}, which this model does not have (a different "
                     f"layout or scan_layers?)")
  lead = a.ndim + b.ndim - 2 - len(kernel_shape)
  n_in = a.ndim - 1 - lead
  want_a = (*kernel_shape[:lead + n_in], rank)
  want_b = (*kernel_shape[:lead], rank, *kernel_shape[lead + n_in:])
  if lead < 0 or n_in < 1 or a.shape != want_a or b.shape != want_b:
    raise ValueError(f"{where}: the adapter of {name} has A {tuple(a.shape)} and B "
                     f"{tuple(b.shape)}, which do not fit its kernel {tuple(kernel_shape)} "
                     f"at rank {rank}")


def _delta(a, b, kernel_shape, multiplier: float) -> jax.Array:
  """`multiplier · A·B` shaped like the kernel (any leading layer axes kept)."""
  rank, lead = a.shape[-1], a.ndim + b.ndim - 2 - len(kernel_shape)
  a2 = a.reshape(*a.shape[:lead], -1, rank)
  b2 = b.reshape(*b.shape[:lead], rank, -1)
  product = jnp.matmul(a2, b2, precision=jax.lax.Precision.HIGHEST)
  return (multiplier * product).reshape(kernel_shape)


def _fold(params, adapter, rank: int, multiplier: float, where: str) -> dict:
  """`params` with `multiplier · A·B` of each rank-`rank` adapter in `adapter` added to the
  kernel it adapts."""
  flat = traverse_util.flatten_dict(params)
  for kernel_path, (a, b) in _pairs(adapter).items():
    kernel = flat.get(kernel_path)
    _check_pair(where, kernel_path, a, b, None if kernel is None else kernel.shape, rank)
    flat[kernel_path] = kernel + _delta(a, b, kernel.shape, multiplier).astype(kernel.dtype)
  return traverse_util.unflatten_dict(flat)


def merge(params, rank: int, alpha: float = 0.0) -> dict:
  """Base params (no adapter leaves) computing what `params` with its adapters computes:
  each kernel gains `scale(rank, alpha) · A·B`."""
  base, adapter = split_adapter(params)
  return _fold(base, adapter, rank, scale(rank, alpha), "merge")


def unmerge(merged, adapter, rank: int, alpha: float = 0.0) -> dict:
  """The inverse of `merge`: subtracts `adapter`'s update and puts its leaves back."""
  return with_adapter(_fold(merged, adapter, rank, -scale(rank, alpha), "unmerge"), adapter)


def fingerprint(spec) -> dict:
  """What an adapter's shapes depend on in a `DiTSpec`."""
  return {field: getattr(spec, field) for field in FINGERPRINT_FIELDS}


def adapter_meta(spec) -> dict:
  """The JSON kept beside a saved adapter: its rank, alpha and base-model fingerprint."""
  return {"rank": spec.lora_rank, "alpha": spec.lora_alpha, "base": fingerprint(spec)}


def check_meta(meta, path: str) -> dict:
  """An adapter.json read from disk, checked: an object with a whole `rank` in [1, MAX_RANK],
  a finite `alpha` >= 0 (0: alpha = rank) and an object `base`; else a one-line ValueError."""
  if not isinstance(meta, dict):
    raise ValueError(f"{path} is a JSON {type(meta).__name__}, not an object")
  rank, alpha = meta.get("rank"), meta.get("alpha", 0.0)
  if not isinstance(rank, int) or isinstance(rank, bool) or not 0 < rank <= MAX_RANK:
    raise ValueError(f"{path}: rank={rank!r} must be a whole number in [1, {MAX_RANK}]")
  if (not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha)
      or alpha < 0):
    raise ValueError(f"{path}: alpha={alpha!r} must be a finite number >= 0 (0: alpha = rank)")
  if not isinstance(meta.get("base", {}), dict):
    raise ValueError(f"{path}: base must be an object of model settings")
  return {**meta, "alpha": alpha}


def check_adapter(adapter, params, rank: int, where: str) -> None:
  """Every adapter in `adapter` fits the kernel it adapts in `params` (base or LoRA params,
  arrays or shape structs) at `rank`; else a one-line ValueError starting with `where`."""
  flat = traverse_util.flatten_dict(params)
  for kernel_path, (a, b) in _pairs(adapter).items():
    kernel = flat.get(kernel_path)
    _check_pair(where, kernel_path, a, b, None if kernel is None else kernel.shape, rank)


def fold_adapter(params, adapter, meta: dict, model_spec, where: str) -> dict:
  """`params` (same tree) with `adapter` (rank and alpha in `meta`, as `adapter_meta` wrote
  it) folded into the kernels it adapts: a base model samples with it as it is. `model_spec`
  (a `DiTSpec`) must be the base `meta` names (a mismatch is a one-line ValueError)."""
  trained_on, model = meta.get("base", {}), fingerprint(model_spec)
  differ = [f"{k}={trained_on[k]!r} (this model: {model[k]!r})" for k in FINGERPRINT_FIELDS
            if k in trained_on and trained_on[k] != model[k]]
  if differ:
    raise ValueError(f"{where} was trained on a different base model: {', '.join(differ)}")
  return _fold(params, adapter, meta["rank"], scale(meta["rank"], meta["alpha"]), where)
