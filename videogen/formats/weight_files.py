"""Reading released weights as data: safetensors through the `safetensors` package (bf16 via
ml_dtypes), sharded safetensors indexes, and torch files only through
`torch.load(..., weights_only=True)` (torch >= 2.6). Nothing is unpickled. A malformed file is
one ValueError line naming it, never a traceback. Shared by every importer (VAE, T5, DiT,
I3D, CLIP), LoRA adapters and safetensors exports; `write_safetensors` is the exporters'
writer. `parse_json` reads any JSON we did not write (bounded nesting, one-line errors).
"""
import json
import math
import os
import re

import ml_dtypes
import numpy as np
from safetensors import SafetensorError, safe_open

# The weights files a model folder may hold, in the order they are looked for: a diffusers
# model's (VAE, transformer) and a transformers model's (T5, CLIP).
DIFFUSERS_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors",
                          "diffusion_pytorch_model.safetensors.index.json",
                          "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                             "pytorch_model.bin", "pytorch_model.bin.index.json")


def _listing(keys, limit: int = 4) -> str:
  keys = sorted(keys)
  more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
  return ", ".join(keys[:limit]) + more


_SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?")}


MAX_HEADER_BYTES = 100_000_000  # the safetensors package's own bound
MAX_JSON_DEPTH = 64  # configs, adapter.json and manifest rows nest a few levels at most
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _first_line(error: BaseException) -> str:
  return next((line.strip() for line in str(error).splitlines() if line.strip()),
              type(error).__name__)


def json_depth(data: bytes) -> int:
  """How deeply JSON text nests arrays and objects (brackets inside strings skipped), found
  without parsing it."""
  body = np.frombuffer(_JSON_STRING.sub(b'""', data), np.uint8)
  opens = (body == ord("[")) | (body == ord("{"))
  closes = (body == ord("]")) | (body == ord("}"))
  return int(np.cumsum(opens.astype(np.int64) - closes).max(initial=0))


def parse_json(data: bytes | str, what: str, max_depth: int = MAX_JSON_DEPTH):
  """JSON from a file we did not write. Invalid UTF-8, bad syntax and nesting deeper than
  `max_depth` (checked before the recursive parser sees it) are one-line ValueErrors naming
  `what`. Values are not checked: 1e400 parses as inf, so bound what you read."""
  raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
  opens = raw.count(b"[") + raw.count(b"{")  # an upper bound on the depth: usually enough
  depth = json_depth(raw) if opens > max_depth else 0
  if depth > max_depth:
    raise ValueError(f"{what} nests {depth} levels deep (at most {max_depth})")
  try:
    return json.loads(raw.decode("utf-8"))
  except (UnicodeDecodeError, ValueError, RecursionError) as e:
    raise ValueError(f"{what} is not valid JSON ({_first_line(e)})") from None


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """One `.safetensors` file → numpy arrays, through the `safetensors` package: its reader
  validates the header (size bounds, field types, offsets inside the file, exact coverage)
  and maps the file. A safetensors too old to give numpy bf16 falls back to
  `read_safetensors_checked`, which validates as strictly."""
  path = os.fspath(path)
  try:
    with safe_open(path, framework="numpy") as f:
      return {key: f.get_tensor(key) for key in f.keys()}
  except SafetensorError as e:
    raise ValueError(f"{path} is not a valid safetensors file ({_first_line(e)})") from None
  except TypeError:  # a dtype this safetensors cannot hand numpy (bf16 in older releases)
    return read_safetensors_checked(path)


def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_safetensors_checked(path: str) -> dict[str, np.ndarray]:
  """`read_safetensors` without the package: the header is checked as the package checks it
  (see `safetensors_spans`) before any tensor is read."""
  path = os.fspath(path)
  with open(path, "rb") as f:
    header_size, spans = safetensors_spans(f, path)
    tensors = {}
    for start, stop, key, dtype, shape in spans:
      f.seek(8 + header_size + start)
      tensors[key] = np.frombuffer(f.read(stop - start), dtype).reshape(shape)
  return tensors


def safetensors_spans(f, path: str) -> tuple[int, list]:
  """(header size, [(start, stop, name, dtype, shape)] sorted by offset) of the open
  safetensors file `f`, read from its header alone and checked as the `safetensors` package
  checks it: an 8-byte length within the file and `MAX_HEADER_BYTES`, a JSON object nesting
  at most 3 levels, `__metadata__` of strings, each tensor exactly `dtype`/`shape`/
  `data_offsets` with a known dtype, non-negative integer dims, offsets spanning the tensor's
  size, and spans that tile the data section exactly. Else a one-line ValueError."""

  def bad(why: str) -> ValueError:
    return ValueError(f"{path} is not a valid safetensors file ({why})")

  f.seek(0, os.SEEK_END)
  size = f.tell()
  f.seek(0)
  if size < 8:
    raise bad(f"{size} bytes, shorter than the 8-byte header length")
  header_size = int.from_bytes(f.read(8), "little")
  if not 2 <= header_size <= min(MAX_HEADER_BYTES, size - 8):
    raise bad(f"declares a {header_size}-byte header in a {size}-byte file")
  try:
    header = parse_json(f.read(header_size), "its header", max_depth=3)
  except ValueError as e:
    raise bad(str(e)) from None
  if not isinstance(header, dict):
    raise bad(f"the header is a JSON {type(header).__name__}, not an object")
  metadata = header.pop("__metadata__", {})
  if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
    raise bad("__metadata__ must map names to strings")
  spans = []
  for key, info in header.items():
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
      raise bad(f"tensor {key!r} needs exactly dtype, shape and data_offsets")
    dtype = info["dtype"]
    if not isinstance(dtype, str) or dtype not in _SAFETENSORS_DTYPES:
      raise bad(f"tensor {key!r} has unsupported dtype {dtype!r}")
    shape, offsets = info["shape"], info["data_offsets"]
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
      raise bad(f"tensor {key!r} has shape {shape!r}, not a list of counts")
    if (not isinstance(offsets, list) or len(offsets) != 2
        or not all(_is_count(o) for o in offsets)
        or offsets[1] - offsets[0] != math.prod(shape) * _SAFETENSORS_DTYPES[dtype].itemsize):
      raise bad(f"tensor {key!r} has data_offsets {offsets!r}, which do not span its "
                f"{dtype} {shape}")
    spans.append((offsets[0], offsets[1], key, _SAFETENSORS_DTYPES[dtype], tuple(shape)))
  spans.sort(key=lambda span: span[:2])
  end = 0
  for start, stop, key, _, _ in spans:
    if start != end:
      raise bad(f"tensor {key!r} starts at byte {start}, not {end} (overlap or gap)")
    end = stop
  if end != size - 8 - header_size:
    raise bad(f"its tensors cover {end} bytes of a {size - 8 - header_size}-byte data section")
  return header_size, spans


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


def read_weight_map(index_path: str) -> dict[str, str]:
  """A sharded checkpoint index's `weight_map` (tensor name → shard file in its folder),
  checked: one ValueError line for anything else."""
  with open(index_path, "rb") as f:
    index = parse_json(f.read(), index_path)
  weight_map = index.get("weight_map") if isinstance(index, dict) else None
  if not isinstance(weight_map, dict) or not all(
      isinstance(v, str) and v == os.path.basename(v) for v in weight_map.values()):
    raise ValueError(f"{index_path} needs a weight_map of tensor names to shard file names "
                     f"in its folder")
  return weight_map


def read_sharded_safetensors(index_path: str) -> dict[str, np.ndarray]:
  """A `*.safetensors.index.json` and the shards its `weight_map` names."""
  weight_map = read_weight_map(index_path)
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
  if tuple(int(n) for n in re.findall(r"\d+", torch.__version__)[:2]) < (2, 6):
    raise ValueError(f"{path}: reading torch files needs torch>=2.6, whose weights_only=True "
                     f"loader has no known bypass (this is {torch.__version__}); upgrade, "
                     f"or convert the file to safetensors")
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # a refused global, a truncated or foreign file: data, never code
    text = str(e)  # torch's refusal is paragraphs of advice around the reason: keep that
    if "WeightsUnpickler error:" in text:
      why = " ".join(text.split("WeightsUnpickler error:", 1)[1].split(
          "Check the documentation", 1)[0].split())
      found = re.match(r"Unsupported global: GLOBAL ([\w.]+)", why)
      why = f"unsupported global {found.group(1)}" if found else why
    else:
      why = _first_line(e).split(". ")[0]
    raise ValueError(f"{path} is not a plain torch state dict: torch.load(weights_only=True) "
                     f"refused it ({why[:200]})") from None
  if not isinstance(state, dict) or not all(
      isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
    raise ValueError(f"{path} does not hold a flat state dict of tensors")
  return {k: (v.float() if v.dtype == torch.bfloat16 else v).detach().numpy()
          for k, v in state.items()}


def weights_file(path: str, names: tuple[str, ...] = DIFFUSERS_WEIGHT_FILES) -> str:
  """A weights file, or the first of `names` inside a folder."""
  if not os.path.isdir(path):
    if not os.path.isfile(path):
      raise FileNotFoundError(f"no weights at {path}")
    return path
  for name in names:
    if os.path.isfile(os.path.join(path, name)):
      return os.path.join(path, name)
  raise FileNotFoundError(f"{path} holds none of {', '.join(names)}")


def _read_torch_index(index_path: str) -> dict[str, np.ndarray]:
  shards = sorted(set(read_weight_map(index_path).values()))
  folder, tensors = os.path.dirname(index_path), {}
  for shard in shards:
    tensors.update(load_state_dict(os.path.join(folder, shard)))
  return tensors


def load_state_dict(path, names: tuple[str, ...] = DIFFUSERS_WEIGHT_FILES
                    ) -> dict[str, np.ndarray]:
  """`.safetensors`, sharded `*.safetensors.index.json`, torch `.bin/.pt/.pth`, sharded
  `*.bin.index.json`, or a folder holding one of `names` (by default diffusers'
  `diffusion_pytorch_model.*`) → {key: numpy array}."""
  path = weights_file(os.fspath(path), names)
  if path.endswith(".bin.index.json"):
    return _read_torch_index(path)
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
  with open(config_path, "rb") as f:
    config = parse_json(f.read(), config_path)
  if not isinstance(config, dict):
    raise ValueError(f"{config_path} is not a JSON object")
  return config
