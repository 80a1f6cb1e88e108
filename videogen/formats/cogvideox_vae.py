"""Imports diffusers' `AutoencoderKLCogVideoX` weights into `videogen.vae.model.Autoencoder`.

Our module tree mirrors diffusers' names (`down_blocks_0_resnets_1` ↔ `down_blocks.0.resnets.1`),
so conversion walks *our* parameter tree, derives each leaf's diffusers key by renaming, and
moves torch's channels-first kernels to channels-last. Every source key must be used and every
target leaf filled, so a config/weights mismatch fails loudly instead of loading half a model.

Weights are read without unpickling (`videogen.formats.weight_files`): safetensors through the
`safetensors` package (bf16 via ml_dtypes), torch `.bin/.pt` files only through
`torch.load(..., weights_only=True)`.
"""
import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from videogen import checkpoints
from videogen.config import base_config
from videogen.vae.model import Autoencoder, CodecSpec, VaeSpec
from videogen.formats.weight_files import _listing, load_diffusers_config, load_state_dict, model_folder

# diffusers' `AutoencoderKLCogVideoX.__init__` defaults: what a config.json may leave out.
DIFFUSERS_DEFAULTS = dict(
    in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 512), latent_channels=16,
    layers_per_block=3, act_fn="silu", norm_eps=1e-6, norm_num_groups=32,
    temporal_compression_ratio=4, scaling_factor=1.15258426, shift_factor=None,
    use_quant_conv=False, use_post_quant_conv=False)
_EPSILON = 1e-6  # videogen.vae.model.GroupNorm's (fixed) epsilon


def _config(cfg: dict) -> dict:
  return {**DIFFUSERS_DEFAULTS, **cfg}


def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2 ** 31


def _check_numbers(c: dict) -> None:
  """A config.json is data: sizes whole and positive, the latent scale finite and positive,
  else one ValueError line naming the key."""
  for key in ("in_channels", "out_channels", "latent_channels", "layers_per_block",
              "norm_num_groups", "temporal_compression_ratio"):
    if not _is_count(c[key]):
      raise ValueError(f"{key}={c[key]!r} must be a whole number >= 1")
  channels = c["block_out_channels"]
  if not isinstance(channels, (list, tuple)) or not channels or not all(map(_is_count, channels)):
    raise ValueError(f"block_out_channels={channels!r} must be whole numbers >= 1")
  for key, allow_none in (("scaling_factor", False), ("shift_factor", True)):
    value = c[key]
    if not (allow_none and value is None) and not (
        isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
        and (key == "shift_factor" or value > 0)):
      raise ValueError(f"{key}={value!r} must be a finite number" + (
          " > 0" if key == "scaling_factor" else ""))


def spec_from_diffusers_config(cfg: dict) -> VaeSpec:
  """diffusers `config.json` → VaeSpec. CogVideoX's GroupNorm runs over the whole clip,
  hence `norm_scope="clip"`; options our model cannot express raise instead of drifting."""
  c = _config(cfg)
  name = c.get("_class_name", "AutoencoderKLCogVideoX")
  if name != "AutoencoderKLCogVideoX":
    raise ValueError(f"config describes a {name}, not an AutoencoderKLCogVideoX")
  _check_numbers(c)
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


def load_cogvideox_vae(path) -> tuple[VaeSpec, dict]:
  """A diffusers `AutoencoderKLCogVideoX` folder (or a weights file beside its config.json)
  → (VaeSpec, params)."""
  path = os.fspath(path)
  cfg = load_diffusers_config(path)
  spec = spec_from_diffusers_config(cfg)
  weights = path if not os.path.isdir(path) else model_folder(path)
  return spec, convert_state_dict(load_state_dict(weights), spec)


def import_cogvideox_vae(source: str, output: str) -> None:
  """A diffusers CogVideoX VAE → an export a DiT can name as its `vae.checkpoint`."""
  spec, params = load_cogvideox_vae(source)
  diffusers_config = load_diffusers_config(source)
  codec = spec.codecs[0]
  config = base_config()
  config.task = "vae"
  config.vae.update(
      variant="causal3d", latent_channels=codec.latent_channels,
      block_channels=codec.block_channels, layers_per_block=codec.layers_per_block,
      spatial_levels=codec.spatial_levels, temporal_levels=codec.temporal_levels,
      norm_groups=codec.norm_groups, norm_scope=codec.norm_scope,
      use_quant_conv=codec.use_quant_conv,
      # diffusers runs CogVideoX in batches of 8 frames / 2 latents, each with its own
      # GroupNorm statistics, the first batch taking the remainder (13 frames: one batch of
      # 13; 21: 13 + 8), and so does `chunked` for a clip-norm VAE. Encoding then gives
      # diffusers' latents for every 1 + 4k frames; decoding gives its video for an odd
      # number of latent frames (1 + 8k frames). For an even number diffusers returns 4·T'
      # frames, not a causal 1 + 4(T' - 1) clip, so no decoder matches it (tested).
      chunk_frames=8, chunk_latents=2)
  checkpoints.export_params(output, params, config, {
      "latent_stats": latent_stats_from_diffusers_config(diffusers_config),
      "imported_from": os.path.abspath(source)})
