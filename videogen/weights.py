"""Reading released weights as data: safetensors (parsed here, bf16 via ml_dtypes), sharded
safetensors indexes, and torch files only through `torch.load(..., weights_only=True)`.
Nothing is unpickled. Shared by every importer (VAE, T5, DiT); `write_safetensors` is the
exporters' writer.
"""
import json
import math
import os

import ml_dtypes
import numpy as np

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors",
                "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin")


def _listing(keys, limit: int = 4) -> str:
  keys = sorted(keys)
  more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
  return ", ".join(keys[:limit]) + more


_SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?")}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """One `.safetensors` file → numpy arrays. Parsed here: the format is a JSON header and raw
  little-endian buffers, and numpy-side readers reject bf16."""
  with open(path, "rb") as f:
    header_size = int.from_bytes(f.read(8), "little")
    try:
      header = json.loads(f.read(header_size))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise ValueError(f"{path} is not a safetensors file ({e})") from None
    data = f.read()
  tensors = {}
  for key, info in header.items():
    if key == "__metadata__":
      continue
    if info["dtype"] not in _SAFETENSORS_DTYPES:
      raise ValueError(f"{path}: tensor {key!r} has unsupported dtype {info['dtype']}")
    dtype, shape = _SAFETENSORS_DTYPES[info["dtype"]], tuple(info["shape"])
    start, stop = info["data_offsets"]
    if stop - start != math.prod(shape) * dtype.itemsize or stop > len(data):
      raise ValueError(f"{path} is truncated or corrupt (tensor {key!r})")
    tensors[key] = np.frombuffer(data, dtype, math.prod(shape), start).reshape(shape)
  return tensors


def write_safetensors(path: str, tensors: dict[str, np.ndarray],
                      metadata: dict[str, str] | None = None) -> None:
  """numpy arrays (bf16 included) → one `.safetensors` file, keys sorted, as
  `read_safetensors` and the `safetensors` package read it."""
  names = {dtype: name for name, dtype in _SAFETENSORS_DTYPES.items()}
  header, buffers, offset = {}, [], 0
  if metadata:
    header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
  for key in sorted(tensors):
    array = np.asarray(tensors[key])
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    if dtype not in names:
      raise ValueError(f"{path}: tensor {key!r} has unsupported dtype {array.dtype}")
    data = np.ascontiguousarray(array, dtype).tobytes()
    header[key] = {"dtype": names[dtype], "shape": list(array.shape),
                   "data_offsets": [offset, offset + len(data)]}
    buffers.append(data)
    offset += len(data)
  encoded = json.dumps(header, separators=(",", ":")).encode()
  encoded += b" " * (-len(encoded) % 8)  # the format aligns the buffers to 8 bytes
  with open(path, "wb") as f:
    f.write(len(encoded).to_bytes(8, "little"))
    f.write(encoded)
    for data in buffers:
      f.write(data)


def read_sharded_safetensors(index_path: str) -> dict[str, np.ndarray]:
  """A `*.safetensors.index.json` and the shards its `weight_map` names."""
  with open(index_path) as f:
    weight_map = json.load(f)["weight_map"]
  folder, tensors = os.path.dirname(index_path), {}
  for shard in sorted(set(weight_map.values())):
    shard_path = os.path.join(folder, shard)
    if not os.path.isfile(shard_path):
      raise FileNotFoundError(f"{index_path} names shard {shard}, which is missing")
    tensors.update(read_safetensors(shard_path))
  absent = set(weight_map) - set(tensors)
  if absent:
    raise ValueError(f"{index_path}: shards lack {len(absent)} listed tensors: {_listing(absent)}")
  return tensors


def read_torch(path: str) -> dict[str, np.ndarray]:
  """A torch `.bin/.pt` state dict, loaded with `weights_only=True` (no arbitrary unpickling)."""
  import torch  # the `convert` extra; only torch files need it
  state = torch.load(path, map_location="cpu", weights_only=True)
  if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
    raise ValueError(f"{path} does not hold a flat state dict of tensors")
  return {k: (v.float() if v.dtype == torch.bfloat16 else v).detach().numpy()
          for k, v in state.items()}


def weights_file(path: str) -> str:
  """A weights file, or the diffusers weights file inside a folder."""
  if not os.path.isdir(path):
    if not os.path.isfile(path):
      raise FileNotFoundError(f"no weights at {path}")
    return path
  for name in WEIGHT_FILES:
    if os.path.isfile(os.path.join(path, name)):
      return os.path.join(path, name)
  raise FileNotFoundError(f"{path} holds none of {', '.join(WEIGHT_FILES)}")


def load_state_dict(path) -> dict[str, np.ndarray]:
  """`.safetensors`, sharded `*.safetensors.index.json`, torch `.bin/.pt/.pth`, or a folder
  holding diffusers' `diffusion_pytorch_model.*` → {key: numpy array}."""
  path = weights_file(os.fspath(path))
  if path.endswith(".safetensors.index.json"):
    return read_sharded_safetensors(path)
  if path.endswith(".safetensors"):
    return read_safetensors(path)
  if path.endswith((".bin", ".pt", ".pth")):
    return read_torch(path)
  raise ValueError(f"{path}: unknown weights format (want .safetensors, "
                   ".safetensors.index.json, .bin, .pt or .pth)")


def model_folder(path: str, subfolder: str = "vae") -> str:
  """The folder with `config.json`: that of a weights file, `path` itself, or a diffusers
  pipeline's `subfolder` (`vae`, `transformer`)."""
  if not os.path.isdir(path):
    return os.path.dirname(path) or "."
  if not os.path.isfile(os.path.join(path, "config.json")) and os.path.isfile(
      os.path.join(path, subfolder, "config.json")):
    return os.path.join(path, subfolder)
  return path


def load_diffusers_config(path, subfolder: str = "vae") -> dict:
  """The `config.json` that describes the weights at `path` (see `model_folder`)."""
  folder = model_folder(os.fspath(path), subfolder)
  config_path = os.path.join(folder, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"no config.json in {folder} (want a diffusers {subfolder} folder)")
  with open(config_path) as f:
    return json.load(f)
