"""Imports diffusers' `AutoencoderKLCogVideoX` weights into `videogen.vae.model.Autoencoder`.

Our module tree mirrors diffusers' names (`down_blocks_0_resnets_1` ↔ `down_blocks.0.resnets.1`),
so conversion walks *our* parameter tree, derives each leaf's diffusers key by renaming, and
moves torch's channels-first kernels to channels-last. Every source key must be used and every
target leaf filled, so a config/weights mismatch fails loudly instead of loading half a model.

Weights are read without unpickling: safetensors is parsed directly (numpy alone, bf16 via
ml_dtypes), and torch `.bin/.pt` files only through `torch.load(..., weights_only=True)`.
"""
import json
import math
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import traverse_util

from videogen.vae.model import Autoencoder, CodecSpec, VaeSpec

# diffusers' `AutoencoderKLCogVideoX.__init__` defaults: what a config.json may leave out.
DIFFUSERS_DEFAULTS = dict(
    in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 512), latent_channels=16,
    layers_per_block=3, act_fn="silu", norm_eps=1e-6, norm_num_groups=32,
    temporal_compression_ratio=4, scaling_factor=1.15258426, shift_factor=None,
    use_quant_conv=False, use_post_quant_conv=False)
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors",
                "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin")
_EPSILON = 1e-6  # videogen.vae.model.GroupNorm's (fixed) epsilon


def _config(cfg: dict) -> dict:
  return {**DIFFUSERS_DEFAULTS, **cfg}


def spec_from_diffusers_config(cfg: dict) -> VaeSpec:
  """diffusers `config.json` → VaeSpec. CogVideoX's GroupNorm runs over the whole clip,
  hence `norm_scope="clip"`; options our model cannot express raise instead of drifting."""
  c = _config(cfg)
  name = c.get("_class_name", "AutoencoderKLCogVideoX")
  if name != "AutoencoderKLCogVideoX":
    raise ValueError(f"config describes a {name}, not an AutoencoderKLCogVideoX")
  if bool(c["use_quant_conv"]) != bool(c["use_post_quant_conv"]):
    raise ValueError(f"use_quant_conv={c['use_quant_conv']} with use_post_quant_conv="
                     f"{c['use_post_quant_conv']} is not supported (our VAE has both or neither)")
  if c["out_channels"] != c["in_channels"]:
    raise ValueError(f"out_channels={c['out_channels']} must equal in_channels="
                     f"{c['in_channels']}")
  if c["use_quant_conv"] and c["latent_channels"] != c["out_channels"]:
    # diffusers sizes (post_)quant_conv by out_channels, so such a model cannot run there either.
    raise ValueError(f"use_quant_conv needs latent_channels == out_channels in diffusers; got "
                     f"{c['latent_channels']} and {c['out_channels']}")
  if c["norm_eps"] != _EPSILON:
    # diffusers applies norm_eps to the encoder's resnet GroupNorms; ours is fixed at 1e-6.
    raise ValueError(f"norm_eps={c['norm_eps']} is not supported (the VAE's GroupNorm epsilon "
                     f"is fixed at {_EPSILON})")
  if c["act_fn"] not in ("silu", "swish"):
    raise ValueError(f"act_fn={c['act_fn']!r} is not supported (only silu)")
  channels = tuple(int(ch) for ch in c["block_out_channels"])
  levels = len(channels) - 1
  temporal_levels = int(np.log2(c["temporal_compression_ratio"]))
  if 2 ** temporal_levels != c["temporal_compression_ratio"] or temporal_levels > levels:
    raise ValueError(f"temporal_compression_ratio={c['temporal_compression_ratio']} must be a "
                     f"power of two up to {2 ** levels}")
  return VaeSpec("causal3d", (CodecSpec(
      in_channels=c["in_channels"], latent_channels=c["latent_channels"],
      block_channels=channels, layers_per_block=c["layers_per_block"], spatial_levels=levels,
      temporal_levels=temporal_levels, time_kernel=3, norm_groups=c["norm_num_groups"],
      norm_scope="clip", use_quant_conv=bool(c["use_quant_conv"])),))


def latent_stats_from_diffusers_config(cfg: dict) -> dict[str, list[float]]:
  """CogVideoX normalises latents as `(z - shift) * scaling_factor`; the same map in our
  `(z - mean) / std` form (`videogen.vae.latents`)."""
  c = _config(cfg)
  channels, shift = c["latent_channels"], c["shift_factor"] or 0.0
  return {"mean": [float(shift)] * channels, "std": [1.0 / c["scaling_factor"]] * channels}


def expected_params(spec: VaeSpec):
  """Shapes of `Autoencoder(spec)`'s (unboxed) params, without allocating them."""
  codec = spec.codecs[0]
  video = jnp.zeros((1, 1 + spec.temporal_factor, spec.spatial_factor, spec.spatial_factor,
                     codec.in_channels), jnp.float32)
  init = lambda: Autoencoder(spec).init(jax.random.PRNGKey(0), video)["params"]
  return nn.meta.unbox(jax.eval_shape(init))


_MODULE_RENAMES = (
    (re.compile(r"^(down|up)_blocks_(\d+)_resnets_(\d+)$"), r"\1_blocks.\2.resnets.\3"),
    (re.compile(r"^down_blocks_(\d+)_downsampler$"), r"down_blocks.\1.downsamplers.0"),
    (re.compile(r"^up_blocks_(\d+)_upsampler$"), r"up_blocks.\1.upsamplers.0"),
    (re.compile(r"^mid_block_resnets_(\d+)$"), r"mid_block.resnets.\1"),
)
_LEAF_RENAMES = {"kernel": "weight", "scale": "weight", "bias": "bias"}


def diffusers_key(path: tuple[str, ...]) -> str:
  """Our param path → diffusers state-dict key. (post_)quant_conv sit at the top level there."""
  if path[1] in ("quant_conv", "post_quant_conv"):
    path = path[1:]
  parts = []
  for part in path[:-1]:
    for pattern, replacement in _MODULE_RENAMES:
      part = pattern.sub(replacement, part)
    parts.append(part)
  return ".".join([*parts, _LEAF_RENAMES[path[-1]]])


def to_flax(value: np.ndarray, leaf: str) -> np.ndarray:
  """torch layout → ours: Conv3d `(O, I, kt, kh, kw)` and Conv2d `(O, I, kh, kw)` become
  `(kt, kh, kw, I, O)` (a 2D kernel gets kt=1); vectors pass through."""
  value = np.asarray(value)
  if leaf == "kernel" and value.ndim == 5:
    value = value.transpose(2, 3, 4, 1, 0)
  elif leaf == "kernel" and value.ndim == 4:
    value = value.transpose(2, 3, 1, 0)[None]
  return np.array(value, np.float32, order="C")  # a writable copy, not a view of the file


def _listing(keys, limit: int = 4) -> str:
  keys = sorted(keys)
  more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
  return ", ".join(keys[:limit]) + more


def convert_state_dict(state_dict: dict[str, np.ndarray], spec: VaeSpec):
  """diffusers state dict → params for `Autoencoder(spec)` (nested dicts of float32 arrays)."""
  if spec.variant != "causal3d" or len(spec.codecs) != 1:
    raise ValueError(f"only the causal3d VAE takes CogVideoX weights; got {spec.variant!r}")
  expected = traverse_util.flatten_dict(expected_params(spec))
  keys = {path: diffusers_key(path) for path in expected}
  params, missing, wrong_shape = {}, [], []
  for path, target in expected.items():
    key = keys[path]
    if key not in state_dict:
      missing.append(key)
      continue
    value = to_flax(state_dict[key], path[-1])
    if value.shape != target.shape:
      wrong_shape.append(f"{key} {tuple(np.shape(state_dict[key]))}→{value.shape}, "
                         f"want {target.shape}")
    params[path] = value
  unused = set(state_dict) - set(keys.values())
  problems = []
  if missing:
    problems.append(f"{len(missing)} missing: {_listing(missing)}")
  if unused:
    problems.append(f"{len(unused)} unused: {_listing(unused)}")
  if wrong_shape:
    problems.append(f"{len(wrong_shape)} with the wrong shape: {_listing(wrong_shape, 2)}")
  if problems:
    raise ValueError("CogVideoX weights do not match the VAE config: " + "; ".join(problems))
  return traverse_util.unflatten_dict(params)


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
      raise FileNotFoundError(f"no VAE weights at {path}")
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


def model_folder(path: str) -> str:
  """The folder with `config.json`: that of a weights file, `path` itself, or a pipeline's
  `vae/` subfolder."""
  if not os.path.isdir(path):
    return os.path.dirname(path) or "."
  if not os.path.isfile(os.path.join(path, "config.json")) and os.path.isfile(
      os.path.join(path, "vae", "config.json")):
    return os.path.join(path, "vae")
  return path


def load_diffusers_config(path) -> dict:
  """The `config.json` that describes the weights at `path` (see `model_folder`)."""
  folder = model_folder(os.fspath(path))
  config_path = os.path.join(folder, "config.json")
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f"no config.json in {folder} (want a diffusers VAE folder)")
  with open(config_path) as f:
    return json.load(f)


def load_cogvideox_vae(path) -> tuple[VaeSpec, dict]:
  """A diffusers `AutoencoderKLCogVideoX` folder (or a weights file beside its config.json)
  → (VaeSpec, params)."""
  path = os.fspath(path)
  cfg = load_diffusers_config(path)
  spec = spec_from_diffusers_config(cfg)
  weights = path if not os.path.isdir(path) else model_folder(path)
  return spec, convert_state_dict(load_state_dict(weights), spec)
