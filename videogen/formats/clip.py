"""Imports a transformers `CLIPModel` folder into `videogen.eval.clip.ClipModel` (read
directly by `evaluate --clip_model DIR`; nothing is converted to disk).

`spec_from_hf_config` reads config.json as `CLIPConfig` does (defaults, old `*_config_dict`
keys); conversion checks the state dict against every key and shape the spec implies, then
moves each tensor onto our tree (torch Linear weights are `(out, in)`, so transposed; q/k/v/out
split into heads; the patch conv becomes a matmul over our `(row, column, channel)` patches).
Weights are read by `videogen.formats.weight_files`' non-unpickling readers.
"""
import json
import os

import numpy as np

from videogen.eval.clip import ACTIVATIONS, OPENAI_MEAN, OPENAI_STD, ClipSpec, TowerSpec
from videogen.formats.weight_files import (TRANSFORMERS_WEIGHT_FILES, _listing, load_state_dict,
                                           weights_file)

HOW_TO_GET = "huggingface-cli download openai/clip-vit-base-patch32 --local-dir {folder}"
# Buffers older checkpoints saved; they hold arange(positions), nothing learned.
_IGNORED_SUFFIXES = ("embeddings.position_ids",)
_TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                      num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
                      hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=49407)
_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                        num_attention_heads=12, image_size=224, patch_size=32, num_channels=3,
                        hidden_act="quick_gelu", layer_norm_eps=1e-5)


def _sub_config(cfg: dict, name: str, defaults: dict) -> dict:
  # As CLIPConfig: an old-style `<name>_dict` takes precedence over `<name>`.
  return {**defaults, **(cfg.get(f"{name}_dict") or cfg.get(name) or {})}


def _tower_spec(sub: dict, which: str) -> TowerSpec:
  if sub["hidden_act"] not in ACTIVATIONS:
    raise ValueError(f"{which}.hidden_act={sub['hidden_act']!r} is not supported "
                     f"(want one of {sorted(ACTIVATIONS)})")
  if sub["hidden_size"] % sub["num_attention_heads"]:
    raise ValueError(f"{which}: hidden_size {sub['hidden_size']} is not divisible by "
                     f"num_attention_heads {sub['num_attention_heads']}")
  return TowerSpec(int(sub["hidden_size"]), int(sub["intermediate_size"]),
                   int(sub["num_hidden_layers"]), int(sub["num_attention_heads"]),
                   sub["hidden_act"], float(sub["layer_norm_eps"]))


def _square(value, key: str) -> int:
  if isinstance(value, (list, tuple)):
    if len(set(value)) != 1:
      raise ValueError(f"vision_config.{key}={value}: only square sizes are supported")
    value = value[0]
  return int(value)


def spec_from_hf_config(cfg: dict) -> ClipSpec:
  """HF `CLIPConfig` dict (config.json of a CLIPModel) → ClipSpec."""
  if cfg.get("model_type", "clip") != "clip":
    raise ValueError(f"model_type={cfg.get('model_type')!r} is not supported (want 'clip', "
                     f"a CLIPModel with both towers)")
  text = _sub_config(cfg, "text_config", _TEXT_DEFAULTS)
  vision = _sub_config(cfg, "vision_config", _VISION_DEFAULTS)
  if not isinstance(text["eos_token_id"], int):
    raise ValueError(f"text_config.eos_token_id={text['eos_token_id']!r}: want one id")
  if vision["num_channels"] != 3:
    raise ValueError(f"vision_config.num_channels={vision['num_channels']}: want 3 (RGB)")
  image_size = _square(vision["image_size"], "image_size")
  patch_size = _square(vision["patch_size"], "patch_size")
  if image_size % patch_size:
    raise ValueError(f"vision_config: image_size {image_size} is not a multiple of "
                     f"patch_size {patch_size}")
  return ClipSpec(
      vision=_tower_spec(vision, "vision_config"), text=_tower_spec(text, "text_config"),
      image_size=image_size, patch_size=patch_size, vocab_size=int(text["vocab_size"]),
      max_length=int(text["max_position_embeddings"]), eos_token_id=text["eos_token_id"],
      projection_dim=int(cfg.get("projection_dim", 512)))


def _tower_key_shapes(prefix: str, t: TowerSpec) -> dict[str, tuple]:
  linears = {"self_attn.q_proj": (t.width, t.width), "self_attn.k_proj": (t.width, t.width),
             "self_attn.v_proj": (t.width, t.width), "self_attn.out_proj": (t.width, t.width),
             "mlp.fc1": (t.mlp_dim, t.width), "mlp.fc2": (t.width, t.mlp_dim),
             "layer_norm1": (t.width,), "layer_norm2": (t.width,)}
  shapes = {}
  for i in range(t.num_layers):
    for name, shape in linears.items():  # torch Linear weight (out, in), bias (out,)
      shapes[f"{prefix}.encoder.layers.{i}.{name}.weight"] = shape
      shapes[f"{prefix}.encoder.layers.{i}.{name}.bias"] = shape[:1]
  return shapes


def hf_key_shapes(spec: ClipSpec) -> dict[str, tuple]:
  """Every key of an HF `CLIPModel` state dict for `spec`, with its shape."""
  v, t, p = spec.vision, spec.text, spec.patch_size
  grid = spec.image_size // p
  shapes = {
      "vision_model.embeddings.class_embedding": (v.width,),
      "vision_model.embeddings.patch_embedding.weight": (v.width, 3, p, p),
      "vision_model.embeddings.position_embedding.weight": (grid * grid + 1, v.width),
      "text_model.embeddings.token_embedding.weight": (spec.vocab_size, t.width),
      "text_model.embeddings.position_embedding.weight": (spec.max_length, t.width),
      "visual_projection.weight": (spec.projection_dim, v.width),
      "text_projection.weight": (spec.projection_dim, t.width),
      "logit_scale": (),
  }
  for norm, width in (("vision_model.pre_layrnorm", v.width),
                      ("vision_model.post_layernorm", v.width),
                      ("text_model.final_layer_norm", t.width)):
    shapes[f"{norm}.weight"] = shapes[f"{norm}.bias"] = (width,)
  return {**shapes, **_tower_key_shapes("vision_model", v), **_tower_key_shapes("text_model", t)}


def _layers(get, prefix: str, t: TowerSpec) -> dict:
  """One tower's `encoder.layers.*` → `{layers_i: Block params}`. torch Linear weights are
  (out, in): transposed, and q/k/v/out split into heads."""
  heads, head_dim = t.num_heads, t.width // t.num_heads
  params = {}
  for i in range(t.num_layers):
    layer = f"{prefix}.encoder.layers.{i}"
    attention = {}
    for ours, theirs in (("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj")):
      attention[f"{ours}_kernel"] = get(f"{layer}.self_attn.{theirs}.weight").T.reshape(
          t.width, heads, head_dim)
      attention[f"{ours}_bias"] = get(f"{layer}.self_attn.{theirs}.bias").reshape(heads, head_dim)
    attention["out_kernel"] = get(f"{layer}.self_attn.out_proj.weight").T.reshape(
        heads, head_dim, t.width)
    attention["out_bias"] = get(f"{layer}.self_attn.out_proj.bias")
    params[f"layers_{i}"] = {
        "attention_norm": _norm(get, f"{layer}.layer_norm1"), "attention": attention,
        "mlp_norm": _norm(get, f"{layer}.layer_norm2"),
        "fc1": {"kernel": get(f"{layer}.mlp.fc1.weight").T, "bias": get(f"{layer}.mlp.fc1.bias")},
        "fc2": {"kernel": get(f"{layer}.mlp.fc2.weight").T, "bias": get(f"{layer}.mlp.fc2.bias")},
    }
  return params


def _norm(get, prefix: str) -> dict:
  return {"scale": get(f"{prefix}.weight"), "bias": get(f"{prefix}.bias")}


def convert_state_dict(state_dict: dict[str, np.ndarray], spec: ClipSpec) -> dict:
  """HF `CLIPModel` state dict → `ClipModel` params (unboxed f32). Raises one ValueError
  naming every missing and unexpected key, or every wrong shape."""
  state = {k: v for k, v in state_dict.items() if not k.endswith(_IGNORED_SUFFIXES)}
  expected = hf_key_shapes(spec)
  missing, unexpected = expected.keys() - state.keys(), state.keys() - expected.keys()
  if missing or unexpected:
    raise ValueError(f"CLIP state dict does not match {spec}: {len(missing)} missing keys "
                     f"[{_listing(missing)}], {len(unexpected)} unexpected keys "
                     f"[{_listing(unexpected)}]")
  wrong = [f"{k} {tuple(np.shape(state[k]))} (expected {shape})"
           for k, shape in expected.items() if tuple(np.shape(state[k])) != shape]
  if wrong:
    raise ValueError(f"CLIP state dict has {len(wrong)} wrongly shaped tensors: "
                     f"{_listing(wrong)}")

  def get(key):
    return np.asarray(state[key], np.float32)

  v, p = spec.vision, spec.patch_size
  vision = {
      # torch conv (D, C, p, p) → (p·p·C, D), rows in our (row, column, channel) patch order
      "patch_kernel": get("vision_model.embeddings.patch_embedding.weight").transpose(
          2, 3, 1, 0).reshape(p * p * 3, v.width),
      "class_embedding": get("vision_model.embeddings.class_embedding"),
      "position_embedding": get("vision_model.embeddings.position_embedding.weight"),
      "pre_norm": _norm(get, "vision_model.pre_layrnorm"),
      **_layers(get, "vision_model", v),
      "post_norm": _norm(get, "vision_model.post_layernorm"),
      "projection": get("visual_projection.weight").T,
  }
  text = {
      "token_embedding": get("text_model.embeddings.token_embedding.weight"),
      "position_embedding": get("text_model.embeddings.position_embedding.weight"),
      **_layers(get, "text_model", spec.text),
      "final_norm": _norm(get, "text_model.final_layer_norm"),
      "projection": get("text_projection.weight").T,
  }
  return {"vision": vision, "text": text, "logit_scale": get("logit_scale")}


def _missing(what: str, folder: str) -> FileNotFoundError:
  return FileNotFoundError(f"{what} (want an HF CLIPModel folder with config.json and "
                           f"model.safetensors; get one with `{HOW_TO_GET.format(folder=folder)}`)")


def load_clip(folder) -> tuple[ClipSpec, dict]:
  """An HF CLIPModel folder (config.json + model.safetensors[.index.json] or
  pytorch_model.bin) → (ClipSpec, params)."""
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise _missing(f"no CLIP model folder at {folder}", folder)
  config_path = os.path.join(folder, "config.json")
  if not os.path.isfile(config_path):
    raise _missing(f"no config.json in {folder}", folder)
  try:
    weights = weights_file(folder, TRANSFORMERS_WEIGHT_FILES)
  except FileNotFoundError as e:
    raise _missing(str(e), folder) from None
  with open(config_path) as f:
    spec = spec_from_hf_config(json.load(f))
  return spec, convert_state_dict(load_state_dict(weights), spec)


def read_mean_std(folder) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """`image_mean` / `image_std` of the folder's preprocessor_config.json, else OpenAI's."""
  path = os.path.join(os.fspath(folder), "preprocessor_config.json")
  if not os.path.isfile(path):
    return OPENAI_MEAN, OPENAI_STD
  with open(path) as f:
    cfg = json.load(f)
  return tuple(cfg.get("image_mean", OPENAI_MEAN)), tuple(cfg.get("image_std", OPENAI_STD))
