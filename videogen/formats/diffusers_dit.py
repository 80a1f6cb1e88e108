"""Imports diffusers video transformers into the DiT layouts.

    CogVideoXTransformer3DModel → layout "expert" (CogVideoX 5B and 1.5: 3D RoPE positions)
    WanTransformer3DModel       → layout "joint"  (Wan 2.1 text-to-video: adaLN-single,
                                                   cross-attention, RMS q/k across heads)

Each importer reads the diffusers config.json into `model.*` settings, then takes every
tensor it expects by name, checks its shape, moves it onto our tree (torch Linear weights are
`(out, in)`; q/k/v become `(embed, heads, head_dim)`; patch convolutions become Dense kernels
over our `(pt, ph, pw, C)` patch order) and fails on a missing, misshapen or leftover tensor.
Variants whose maths we do not implement are refused by name rather than loaded wrongly.

The export direction (`to_state_dict`, `diffusers_config`; `export_diffusers_dit` writes the
folder) is derived from the same code: the converter runs once on symbolic tensors (`_Probe`)
that record each name, shape and the transposes/reshapes applied, and each of our params is
sent back through those steps reversed. There is one name table: the importer.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from videogen import checkpoints
from videogen import workdir as workdir_lib
from videogen.config import base_config
from videogen.formats.weight_files import (_listing, load_diffusers_config, load_state_dict,
                                           model_folder, safetensors_spans, write_safetensors)
from videogen.models.text_to_video import build_model, param_shardings
from videogen.parallel import mesh as mesh_lib
from videogen.text.conditioning import t5_spec
from videogen.vae.latents import FrozenVae

COGVIDEOX_DEFAULTS = dict(
    num_attention_heads=30, attention_head_dim=64, in_channels=16, out_channels=16,
    flip_sin_to_cos=True, freq_shift=0, time_embed_dim=512, ofs_embed_dim=None,
    text_embed_dim=4096, num_layers=30, attention_bias=True, patch_size=2, patch_size_t=None,
    max_text_seq_length=226, activation_fn="gelu-approximate", timestep_activation_fn="silu",
    norm_elementwise_affine=True, norm_eps=1e-5, use_rotary_positional_embeddings=False,
    use_learned_positional_embeddings=False, patch_bias=True)
WAN_DEFAULTS = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=16,
    out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40,
    cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None,
    added_kv_proj_dim=None, pos_embed_seq_len=None)
KINDS = ("cogvideox", "wan")
CLASS_NAMES = {"cogvideox": "CogVideoXTransformer3DModel", "wan": "WanTransformer3DModel"}


def _refuse(cfg: dict, kind: str, checks: dict) -> None:
  for key, (ok, why) in checks.items():
    if not ok(cfg[key]):
      raise ValueError(f"{kind} config {key}={cfg[key]!r}: {why}")


def _is_count(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2 ** 31


def _check_numbers(cfg: dict, kind: str, counts: tuple[str, ...], eps: str) -> None:
  """A config.json is data: its sizes must be whole positive numbers and its epsilon in
  (0, 1), else one ValueError line naming the key."""
  for key in counts:
    if not _is_count(cfg[key]):
      raise ValueError(f"{kind} config {key}={cfg[key]!r}: must be a whole number >= 1")
  value = cfg[eps]
  if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
    raise ValueError(f"{kind} config {eps}={value!r}: must be in (0, 1)")


def cogvideox_model_config(config_json: dict) -> dict:
  """diffusers CogVideoX config → our `model.*` settings (layout expert)."""
  cfg = {**COGVIDEOX_DEFAULTS, **config_json}
  _check_numbers(cfg, "CogVideoX", ("num_attention_heads", "attention_head_dim", "in_channels",
                                    "out_channels", "time_embed_dim", "text_embed_dim",
                                    "num_layers", "patch_size", "max_text_seq_length")
                 + (("patch_size_t",) if cfg["patch_size_t"] is not None else ()), "norm_eps")
  _refuse(cfg, "CogVideoX", {
      "use_rotary_positional_embeddings": (bool, "CogVideoX 1.0 2B-style 3D sin-cos positions "
                                           "(with interpolation scales) are not implemented"),
      "use_learned_positional_embeddings": (lambda v: not v, "learned positions (5B-I2V) "
                                            "are not implemented"),
      "ofs_embed_dim": (lambda v: not v, "the 1.5 I2V ofs embedding is not implemented"),
      "activation_fn": (lambda v: v == "gelu-approximate", "only gelu-approximate"),
      "timestep_activation_fn": (lambda v: v == "silu", "only silu"),
      "flip_sin_to_cos": (bool, "only cos-first timestep features"),
      "freq_shift": (lambda v: v == 0, "only freq_shift 0"),
      "norm_elementwise_affine": (bool, "only affine LayerNorms"),
      "attention_bias": (bool, "only biased q/k/v"),
      # diffusers honours patch_bias only for 1.0's Conv2d: 1.5's temporal patch (patch_size_t
      # set) is a Linear with a bias whatever the flag says, and the released 1.5 config has
      # patch_bias=false.
      "patch_bias": (lambda v: v or cfg["patch_size_t"], "only a biased patch embedding"),
      "out_channels": (lambda v: v == cfg["in_channels"], "must equal in_channels")})
  width = cfg["num_attention_heads"] * cfg["attention_head_dim"]
  return dict(layout="expert", width=width, depth=cfg["num_layers"],
              num_heads=cfg["num_attention_heads"], mlp_ratio=4.0,
              patch_size=(cfg["patch_size_t"] or 1, cfg["patch_size"], cfg["patch_size"]),
              channels=cfg["in_channels"], text_dim=cfg["text_embed_dim"], adaln="per_block",
              pos_embed="rope", rope_split="cogvideox", qk_norm="layer",
              text_projection="linear", pooled_text=False, time_frequency_dim=width,
              time_embed_dim=cfg["time_embed_dim"], norm_eps=cfg["norm_eps"])


def wan_model_config(config_json: dict) -> dict:
  """diffusers Wan config → our `model.*` settings (layout joint, adaLN-single)."""
  cfg = {**WAN_DEFAULTS, **config_json}
  _check_numbers(cfg, "Wan", ("num_attention_heads", "attention_head_dim", "in_channels",
                              "out_channels", "text_dim", "freq_dim", "ffn_dim", "num_layers"),
                 "eps")
  patch = cfg["patch_size"]
  if not isinstance(patch, (list, tuple)) or len(patch) != 3 or not all(map(_is_count, patch)):
    raise ValueError(f"Wan config patch_size={patch!r}: must be 3 whole numbers (t, h, w)")
  _refuse(cfg, "Wan", {
      "cross_attn_norm": (bool, "our cross-attention input is always LayerNorm-ed"),
      "qk_norm": (lambda v: v == "rms_norm_across_heads", "only rms_norm_across_heads"),
      "image_dim": (lambda v: v is None, "image-to-video (CLIP image context) is not "
                    "implemented"),
      "added_kv_proj_dim": (lambda v: v is None, "added k/v projections are not implemented"),
      "pos_embed_seq_len": (lambda v: v is None, "image position embeddings are not "
                            "implemented"),
      "out_channels": (lambda v: v == cfg["in_channels"], "must equal in_channels")})
  width = cfg["num_attention_heads"] * cfg["attention_head_dim"]
  return dict(layout="joint", width=width, depth=cfg["num_layers"],
              num_heads=cfg["num_attention_heads"], mlp_ratio=cfg["ffn_dim"] / width,
              patch_size=tuple(cfg["patch_size"]), channels=cfg["in_channels"],
              text_dim=cfg["text_dim"], adaln="single", pos_embed="rope", rope_split="wan",
              qk_norm="rms_across_heads", text_projection="mlp", pooled_text=False,
              time_frequency_dim=cfg["freq_dim"], time_embed_dim=0, norm_eps=cfg["eps"])


class _Tensors:
  """Takes named tensors out of a state dict, checking shapes; `finish` fails on leftovers."""

  def __init__(self, state_dict: dict, kind: str):
    self.remaining = dict(state_dict)
    self.kind = kind

  def take(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    if key not in self.remaining:
      raise ValueError(f"{self.kind} state dict lacks {key!r}")
    value = np.array(self.remaining.pop(key), np.float32)
    if shape is not None and value.shape != tuple(shape):
      raise ValueError(f"{self.kind} {key}: shape {value.shape}, expected {tuple(shape)}")
    return value

  def dense(self, prefix: str, fan_in: int, fan_out: int) -> dict:
    return {"kernel": self.take(f"{prefix}.weight", (fan_out, fan_in)).T,
            "bias": self.take(f"{prefix}.bias", (fan_out,))}

  def norm(self, prefix: str, dim: int) -> dict:
    return {"scale": self.take(f"{prefix}.weight", (dim,)), "bias": self.take(f"{prefix}.bias",
                                                                             (dim,))}

  def attention(self, prefix: str, m: dict, q_norm, kv_dim: int | None = None) -> dict:
    width, heads = m["width"], m["num_heads"]
    head_dim = width // heads
    params = {}
    for ours, theirs, fan_in in (("query", "to_q", width), ("key", "to_k", kv_dim or width),
                                 ("value", "to_v", kv_dim or width)):
      dense = self.dense(f"{prefix}.{theirs}", fan_in, width)
      params[f"{ours}_kernel"] = dense["kernel"].reshape(fan_in, heads, head_dim)
      params[f"{ours}_bias"] = dense["bias"].reshape(heads, head_dim)
    out = self.dense(f"{prefix}.to_out.0", width, width)
    params["out_kernel"] = out["kernel"].reshape(heads, head_dim, width)
    params["out_bias"] = out["bias"]
    params["query_norm"], params["key_norm"] = q_norm(f"{prefix}.norm_q"), q_norm(
        f"{prefix}.norm_k")
    return params

  def finish(self) -> None:
    if self.remaining:
      raise ValueError(f"{self.kind} state dict has {len(self.remaining)} unexpected tensors: "
                       f"{_listing(self.remaining)}")


def _patch_in(weight: np.ndarray, patch: tuple[int, int, int], channels: int) -> np.ndarray:
  """A patch projection over `(C, pt, ph, pw)` inputs (a Conv2d/Conv3d weight, or CogVideoX
  1.5's Linear) → our Dense kernel over `(pt, ph, pw, C)`."""
  out = weight.shape[0]
  return weight.reshape(out, channels, *patch).transpose(2, 3, 4, 1, 0).reshape(-1, out)


def _mlp(t: _Tensors, prefix: str, width: int, hidden: int) -> dict:
  return {"fc1": t.dense(f"{prefix}.net.0.proj", width, hidden),
          "fc2": t.dense(f"{prefix}.net.2", hidden, width)}


def convert_cogvideox(state_dict: dict, m: dict) -> dict:
  """CogVideoX state dict → `DiT` params (unrolled `block_i`) for model settings `m`."""
  t = _Tensors(state_dict, "CogVideoX")
  params = _cogvideox(t, m)
  t.remaining.pop("patch_embed.pos_embedding", None)  # a non-persistent buffer, if saved
  t.finish()
  return params


def _cogvideox(t: "_Tensors", m: dict) -> dict:
  width, e, heads = m["width"], m["time_embed_dim"], m["num_heads"]
  patch, c = m["patch_size"], m["channels"]
  patch_dim = int(np.prod(patch)) * c
  head_norm = lambda key: t.norm(key, width // heads)  # noqa: E731
  proj = t.take("patch_embed.proj.weight")
  params = {
      "patch_embed": {"kernel": _patch_in(proj, patch, c),
                      "bias": t.take("patch_embed.proj.bias", (width,))},
      "context_proj": t.dense("patch_embed.text_proj", m["text_dim"], width),
      "t_embed": {"fc1": t.dense("time_embedding.linear_1", width, e),
                  "fc2": t.dense("time_embedding.linear_2", e, e)},
      "final_norm_pre": t.norm("norm_final", width),
      "final_adaln": t.dense("norm_out.linear", e, 2 * width),
      "final_norm": t.norm("norm_out.norm", width),
  }
  out = t.dense("proj_out", width, patch_dim)  # outputs in (C, pt, ph, pw) order
  params["final_proj"] = {
      "kernel": out["kernel"].reshape(width, c, *patch).transpose(0, 2, 3, 4, 1).reshape(
          width, patch_dim),
      "bias": out["bias"].reshape(c, *patch).transpose(1, 2, 3, 0).reshape(-1)}
  for i in range(m["depth"]):
    b = f"transformer_blocks.{i}"
    params[f"block_{i}"] = {
        "norm1_adaln": {"linear": t.dense(f"{b}.norm1.linear", e, 6 * width)},
        "norm1_norm": t.norm(f"{b}.norm1.norm", width),
        "attn": t.attention(f"{b}.attn1", m, head_norm),
        "norm2_adaln": {"linear": t.dense(f"{b}.norm2.linear", e, 6 * width)},
        "norm2_norm": t.norm(f"{b}.norm2.norm", width),
        "mlp": _mlp(t, f"{b}.ff", width, 4 * width),
    }
  return params


def convert_wan(state_dict: dict, m: dict) -> dict:
  """Wan state dict → `DiT` params (unrolled `block_i`) for model settings `m`."""
  t = _Tensors(state_dict, "Wan")
  params = _wan(t, m)
  t.finish()
  return params


def _wan(t: "_Tensors", m: dict) -> dict:
  width, heads, patch, c = m["width"], m["num_heads"], m["patch_size"], m["channels"]
  hidden = round(width * m["mlp_ratio"])
  across = lambda key: {"scale": t.take(f"{key}.weight", (width,)).reshape(  # noqa: E731
      heads, width // heads)}
  embed = "condition_embedder"
  params = {
      "patch_embed": {"kernel": _patch_in(t.take("patch_embedding.weight"), patch, c),
                      "bias": t.take("patch_embedding.bias", (width,))},
      "context_proj": t.dense(f"{embed}.text_embedder.linear_1", m["text_dim"], width),
      "context_proj2": t.dense(f"{embed}.text_embedder.linear_2", width, width),
      "t_embed": {"fc1": t.dense(f"{embed}.time_embedder.linear_1", m["time_frequency_dim"],
                                 width),
                  "fc2": t.dense(f"{embed}.time_embedder.linear_2", width, width)},
      "t_block": t.dense(f"{embed}.time_proj", width, 6 * width),
      "final_scale_shift_table": t.take("scale_shift_table", (1, 2, width))[0],
      "final_proj": t.dense("proj_out", width, int(np.prod(patch)) * c),
  }
  for i in range(m["depth"]):
    b = f"blocks.{i}"
    params[f"block_{i}"] = {
        "adaln": {"scale_shift_table": t.take(f"{b}.scale_shift_table", (1, 6, width))[0]},
        "self_attn": t.attention(f"{b}.attn1", m, across),
        "cross_attn": t.attention(f"{b}.attn2", m, across),
        "norm2": t.norm(f"{b}.norm2", width),
        "mlp": _mlp(t, f"{b}.ffn", width, hidden),
    }
  return params


def stack_blocks(params: dict, depth: int) -> dict:
  """Unrolled `block_i` params → the `blocks` tree `nn.scan` keeps (leading layer axis)."""
  params = dict(params)
  layers = [params.pop(f"block_{i}") for i in range(depth)]
  params["blocks"] = jax.tree.map(lambda *xs: np.stack(xs), *layers)
  return params


def unstack_blocks(params: dict) -> dict:
  """The inverse of `stack_blocks`: a `blocks` tree (leading layer axis) → `block_i`."""
  params = dict(params)
  blocks = params.pop("blocks")
  flat = traverse_util.flatten_dict(blocks)
  depth = len(next(iter(flat.values())))
  for i in range(depth):
    params[f"block_{i}"] = traverse_util.unflatten_dict({k: v[i] for k, v in flat.items()})
  return params


# Export: our params → diffusers. The importers above are the only name table.
class _Symbol:
  """A diffusers tensor by name and shape, plus the reshapes/transposes an importer applied
  to it (each with the shape before it); `invert` replays them backwards on our value."""

  def __init__(self, key: str, shape, steps: tuple = ()):
    self.key, self.shape, self.steps = key, tuple(int(n) for n in shape), steps

  def _then(self, step: tuple, shape) -> "_Symbol":
    return _Symbol(self.key, shape, self.steps + ((step, self.shape),))

  @property
  def T(self) -> "_Symbol":  # noqa: N802 (numpy's name)
    return self.transpose(*reversed(range(len(self.shape))))

  def transpose(self, *axes) -> "_Symbol":
    return self._then(("transpose", axes), [self.shape[a] for a in axes])

  def reshape(self, *shape) -> "_Symbol":
    shape = list(shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)
    if -1 in shape:
      shape[shape.index(-1)] = int(np.prod(self.shape)) // -int(np.prod(shape))
    return self._then(("reshape",), shape)

  def __getitem__(self, index) -> "_Symbol":
    if index != 0 or self.shape[0] != 1:
      raise TypeError(f"{self.key}: an importer may only drop a leading axis of size 1")
    return self._then(("squeeze",), self.shape[1:])

  def invert(self, value: np.ndarray) -> np.ndarray:
    for step, before in reversed(self.steps):
      value = (value.transpose(np.argsort(step[1])) if step[0] == "transpose"
               else value.reshape(before))
    return value


class _Probe(_Tensors):
  """Hands out `_Symbol`s instead of tensors. `free_shapes`: tensors an importer takes at
  any shape (patch embeddings: Conv2d, Conv3d or Linear), at the shape diffusers writes."""

  def __init__(self, kind: str, free_shapes: dict):
    self.kind, self.free_shapes = kind, free_shapes

  def take(self, key: str, shape: tuple[int, ...] | None = None) -> _Symbol:
    return _Symbol(key, self.free_shapes[key] if shape is None else shape)


def diffusers_config(model: dict, text_length: int, prediction: str = "velocity"
                     ) -> tuple[str, dict]:
  """Our `model.*` settings → (kind, the diffusers transformer config.json) such that the
  importer reads it back to the same settings; one ValueError names every setting that has
  no counterpart, with the value it needs. Layout expert → CogVideoX, joint → Wan.
  `prediction` is `diffusion.prediction`: diffusers' flow pipelines read the output as a
  velocity."""
  m = dict(model, patch_size=tuple(model["patch_size"]))
  kind = {"expert": "cogvideox", "joint": "wan"}.get(m["layout"])
  problems = []  # every setting without a counterpart, reported at once
  if prediction != "velocity":
    problems.append(f"diffusion.prediction={prediction!r} (needs 'velocity': diffusers "
                    f"pipelines read the output as one)")
  if kind is None:
    problems.append(f"model.layout={m['layout']!r} has no diffusers counterpart (expert → "
                    f"CogVideoX, joint → Wan)")
  for key, off in (("lora_rank", 0), ("camera", False), ("frame_condition", "none"),
                   ("token_adaln", False), ("head_mlp_ratio", 0.0), ("self_condition", False),
                   ("registers", 0)):
    if m.get(key, off) != off:
      merge = ": merge LoRA adapters into the base first" if key == "lora_rank" else ""
      problems.append(f"model.{key}={m[key]!r} (needs {off!r}{merge})")
  width, heads, (pt, ph, pw), c = m["width"], m["num_heads"], m["patch_size"], m["channels"]
  common = dict(_class_name=CLASS_NAMES.get(kind), num_attention_heads=heads,
                attention_head_dim=width // heads, in_channels=c, out_channels=c,
                num_layers=m["depth"])
  config, back = None, {}
  if kind == "cogvideox":
    if ph != pw:
      problems.append(f"model.patch_size={list(m['patch_size'])} (CogVideoX patches are square)")
    config = dict(common, time_embed_dim=m["time_embed_dim"] or width,
                  text_embed_dim=m["text_dim"], patch_size=ph, patch_size_t=pt if pt > 1 else None,
                  max_text_seq_length=text_length, use_rotary_positional_embeddings=True,
                  norm_eps=m["norm_eps"])
    back = cogvideox_model_config(config)
    m["time_embed_dim"] = m["time_embed_dim"] or width  # 0 means width
    if ph != pw:
      back.pop("patch_size", None)
  elif kind == "wan":
    config = dict(common, patch_size=list(m["patch_size"]), text_dim=m["text_dim"],
                  freq_dim=m["time_frequency_dim"], ffn_dim=round(width * m["mlp_ratio"]),
                  eps=m["norm_eps"], cross_attn_norm=True, qk_norm="rms_norm_across_heads")
    back = wan_model_config(config)
  for key, theirs in back.items():
    ours = m[key]
    same = (abs(ours - theirs) < 1e-9 if isinstance(theirs, float) and not isinstance(ours, str)
            else ours == theirs)
    if not same:
      problems.append(f"model.{key}={ours!r} (needs {theirs!r})")
  if problems:
    raise ValueError(f"{len(problems)} setting{'s' * (len(problems) > 1)} with no "
                     f"{CLASS_NAMES.get(kind, 'diffusers')} counterpart: {'; '.join(problems)}")
  return kind, config


def to_state_dict(params: dict, m: dict, kind: str) -> dict[str, np.ndarray]:
  """Our DiT params (`blocks` stacked or `block_i` unrolled) for settings `m` → the diffusers
  state dict that `convert_<kind>` reads back to exactly these params."""
  if "blocks" in params:
    params = unstack_blocks(params)
  width, patch, c = m["width"], tuple(m["patch_size"]), m["channels"]
  if kind == "cogvideox":
    conv = patch[0] == 1  # CogVideoX 1.0: a Conv2d; 1.5 (patch_size_t): a Linear
    probe = _Probe("CogVideoX", {"patch_embed.proj.weight": (width, c, *patch[1:]) if conv
                                 else (width, c * int(np.prod(patch)))})
    symbols = _cogvideox(probe, m)
  else:
    symbols = _wan(_Probe("Wan", {"patch_embedding.weight": (width, c, *patch)}), m)
  symbols, ours = traverse_util.flatten_dict(symbols), traverse_util.flatten_dict(params)
  for absent, where in ((set(symbols) - set(ours), "lack"), (set(ours) - set(symbols), "have")):
    if absent:
      raise ValueError(f"params {where} {len(absent)} tensors a {CLASS_NAMES[kind]} "
                       f"{'needs' if where == 'lack' else 'does not have'}: "
                       f"{_listing('/'.join(k) for k in absent)}")
  state = {}
  for path, symbol in symbols.items():
    value = np.asarray(ours[path])
    if value.shape != symbol.shape:
      raise ValueError(f"param {'/'.join(path)}: shape {value.shape}, {CLASS_NAMES[kind]} "
                       f"needs {symbol.shape}")
    state[symbol.key] = symbol.invert(value)
  return state


def load_diffusers_dit(path: str, kind: str) -> tuple[dict, dict]:
  """A diffusers transformer folder (or a pipeline with `transformer/`) → (model settings,
  unrolled params)."""
  if kind not in KINDS:
    raise ValueError(f"unknown transformer kind {kind!r}; expected one of {KINDS}")
  config_json = load_diffusers_config(path, "transformer")
  found = config_json.get("_class_name", CLASS_NAMES[kind])
  if found != CLASS_NAMES[kind]:
    raise ValueError(f"{path} holds a {found}, not a {CLASS_NAMES[kind]}")
  settings = (cogvideox_model_config if kind == "cogvideox" else wan_model_config)(config_json)
  weights = path if not os.path.isdir(path) else model_folder(path, "transformer")
  convert = convert_cogvideox if kind == "cogvideox" else convert_wan
  return settings, convert(load_state_dict(weights), settings)


# --- import: a diffusers transformer → a videogen export -----------------------------------

# What each transformer was trained with: clip shape, prompt length, objective. CogVideoX's
# scaled-linear zero-SNR schedule is not implemented: its export samples as v-prediction on
# our linear DDPM schedule (an approximation; noted in metadata.json).
TRANSFORMER_DEFAULTS = {
    "cogvideox": dict(frames=49, height=480, width=720, max_length=226,
                      diffusion=dict(objective="v", schedule="linear")),
    "wan": dict(frames=81, height=480, width=832, max_length=512,
                diffusion=dict(objective="flow", shift=3.0)),
}


def _find_tokenizer(text_encoder: str) -> str:
  """spiece.model beside the encoder weights, or in a diffusers pipeline's `tokenizer/`."""
  text_encoder = text_encoder.rstrip("/")
  for path in (os.path.join(text_encoder, "spiece.model"),
               os.path.join(os.path.dirname(text_encoder), "tokenizer", "spiece.model")):
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f"no spiece.model in {text_encoder} or its sibling tokenizer/")


def import_diffusers_dit(kind: str, source: str, output: str, vae: str = "",
                         text_encoder: str = "") -> None:
  """A diffusers transformer → an export that samples once `vae` names its VAE export and
  `text_encoder` its T5 folder (`python -m videogen.convert --from diffusers-KIND`)."""
  settings, params = load_diffusers_dit(source, kind)
  defaults = TRANSFORMER_DEFAULTS[kind]
  config = base_config()
  config.model.update(**settings, dtype="bfloat16")
  config.data.update(num_frames=defaults["frames"], height=defaults["height"],
                     width=defaults["width"])
  config.diffusion.update(**defaults["diffusion"])
  config.vae.checkpoint = os.path.abspath(vae) if vae else ""
  tokenizer = _find_tokenizer(text_encoder) if text_encoder else ""
  config.text.update(max_length=defaults["max_length"], tokenizer="sentencepiece",
                     tokenizer_path=os.path.abspath(tokenizer) if tokenizer else "",
                     encoder="t5", null="empty", t5=dict(
                         checkpoint=os.path.abspath(text_encoder) if text_encoder else "",
                         preset="tiny", seed=0, dtype="bfloat16"))
  checkpoints.export_params(output, {"dit": stack_blocks(params, settings["depth"])}, config, {
      "imported_from": os.path.abspath(source), "kind": f"diffusers-{kind}",
      "schedule_note": "" if kind == "wan" else "CogVideoX's scaled-linear zero-SNR schedule "
      "is approximated by the linear DDPM schedule"})


# --- export: our DiT → a diffusers transformer folder ------------------------------------------

DIFFUSERS_SUBDIR = "transformer"  # diffusers' pipeline folder for the denoiser


def dit_params(path: str, config):
  """The EMA params of a DiT that reads T5 states, without the text path (an imported
  export may carry neither tokenizer nor T5 weights; only the T5's width matters here)."""
  mesh = mesh_lib.create_mesh(config.mesh)
  rules = mesh_lib.rules_from_config(config.mesh)
  model = build_model(config, 0, stored_text_width(path) or t5_spec(config.text, 0).d_model)
  latent_shape = None
  if config.vae.checkpoint:
    latent_shape = FrozenVae.load(config.vae.checkpoint, mesh, rules).latent_shape(
        config.data.num_frames, config.data.height, config.data.width)
  abstract, shardings = param_shardings(model, config, mesh, rules, latent_shape)
  with jax.set_mesh(mesh):
    return checkpoints.load_ema_params(path, abstract, shardings)


def stored_text_width(path: str) -> int | None:
  """The T5 width an export's DiT was saved with (its `context_proj` fan-in), read from the
  Orbax metadata or the safetensors header; None for a workdir."""
  orbax_params = workdir_lib.path(path) / checkpoints.EXPORT_PARAMS_SUBDIR
  tensors = workdir_lib.path(path) / checkpoints.EXPORT_SAFETENSORS_FILE
  if orbax_params.is_dir():
    with ocp.StandardCheckpointer() as checkpointer:
      tree = checkpointer.metadata(orbax_params).item_metadata.tree
    return tree["dit"]["context_proj"]["kernel"].shape[0]
  if tensors.is_file():
    with tensors.open("rb") as f:  # the header alone, checked: a malformed file is one line
      shapes = {key: shape for _, _, key, _, shape in safetensors_spans(f, str(tensors))[1]}
    shape = shapes.get("dit/context_proj/kernel")
    return shape[0] if shape else None  # None: the params check names what is missing
  return None


def export_diffusers_dit(output: str, params, config, dtype: str = "float32") -> None:
  """`output/transformer/` as diffusers lays a transformer out: `config.json` plus
  `diffusion_pytorch_model.safetensors` (a DiT with a diffusers counterpart; see
  `diffusers_config`, which raises a ValueError naming what has none)."""
  kind, transformer_config = diffusers_config(config.model.to_dict(), config.text.max_length,
                                              config.diffusion.get("prediction", "velocity"))
  if set(params) != {"dit"}:
    raise ValueError(f"params {sorted(set(params) - {'dit'})} have no diffusers counterpart")
  dit = checkpoints.on_host(params["dit"])
  state = to_state_dict(dit, config.model.to_dict(), kind)
  to = np.dtype(jax.numpy.dtype(dtype))
  if jax.process_index() == 0:
    folder = workdir_lib.path(output) / DIFFUSERS_SUBDIR
    folder.mkdir(parents=True)
    with workdir_lib.local_target(folder / "diffusion_pytorch_model.safetensors") as local:
      write_safetensors(local, {k: v.astype(to) for k, v in state.items()}, {"format": "pt"})
    workdir_lib.write_json(folder / "config.json", transformer_config)
