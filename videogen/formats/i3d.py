"""Imports piergiaj's pytorch-i3d state dicts (Kinetics-400 `rgb_imagenet.pt`, and the FVD
copies cd-fvd and TATS ship) into `videogen.eval.i3d.InceptionI3d`.

Our module tree mirrors torch's names (`Mixed_3b.b0.bn.weight` ↔ `params/Mixed_3b/b0/bn/scale`,
`bn.running_mean` ↔ the `batch_stats` collection), so conversion derives each torch name from
our variable paths, moves conv kernels from `(O, I, kt, kh, kw)` to `(kt, kh, kw, I, O)` and
fails on a missing, misshapen or unexpected tensor. `python -m videogen.convert --from
pytorch-i3d` writes the result as one safetensors file with our names; `load_i3d` reads
either. Files are read by `videogen.formats.weight_files`' non-unpickling readers.
"""
import os

import flax.linen as nn
import numpy as np
from flax import traverse_util

from videogen.eval.i3d import NUM_CLASSES, expected_shapes
from videogen.formats.weight_files import _listing, load_state_dict, write_safetensors

HOW_TO_GET = ("download piergiaj's rgb_imagenet.pt (or the FVD I3D, e.g. TATS' "
              "i3d_pretrained_400.pt) and convert it with `python -m videogen.convert "
              "--from pytorch-i3d SRC --to i3d.safetensors`")

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


def import_i3d(source: str, output: str) -> None:
  """A piergiaj / cd-fvd I3D state dict (`.pt`, `.pth`, `.safetensors`) → our safetensors
  (`python -m videogen.convert --from pytorch-i3d`)."""
  save_converted(load_i3d(source), output)
