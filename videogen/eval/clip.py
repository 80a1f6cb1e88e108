"""CLIP image and text encoders in Flax linen, imported from a `transformers` CLIPModel folder,
and the CLIP score of generated videos against their prompts.

Matches HF `CLIPModel.get_image_features` / `get_text_features` / `logits_per_image`:
  vision: patches (a stride-`patch` conv, written as a matmul over flattened patches) after a
    class token, learned positions, a pre-LayerNorm, pre-LN blocks, LayerNorm of the class
    token's state, `visual_projection`;
  text: token + learned positions, causal pre-LN blocks, a final LayerNorm, the state at the
    end token (the first `eos_token_id`, or for old configs with `eos_token_id == 2` the
    highest id, as HF does), `text_projection`.
Blocks use `hidden_act` (OpenAI's `quick_gelu`, or `gelu` for e.g. LAION's). Right padding
needs no mask: under the causal mask no position before the end token sees it.

CLIP score (Hessel et al.; torchmetrics' `100 * cos` scale): 100 · max(cos(image, text), 0)
per frame, averaged over a video's frames. Frames are resized and cropped as HF's
CLIPImageProcessor does (shortest side to `image_size`, bicubic with antialiasing, rounded
to 8 bits, centre crop, processor mean/std).
"""
import json
import math
import os
from dataclasses import dataclass
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from videogen.eval.clip_tokenizer import ClipTokenizer
from videogen.models.layers import Dense, LayerNorm, constrain, param
from videogen.formats.weight_files import (TRANSFORMERS_WEIGHT_FILES, _listing, load_state_dict,
                                           weights_file)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
HOW_TO_GET = "huggingface-cli download openai/clip-vit-base-patch32 --local-dir {folder}"
# Buffers older checkpoints saved; they hold arange(positions), nothing learned.
_IGNORED_SUFFIXES = ("embeddings.position_ids",)

ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
}


@dataclass(frozen=True)
class TowerSpec:
  """One transformer stack (the image or the text tower)."""
  width: int
  mlp_dim: int
  num_layers: int
  num_heads: int
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class ClipSpec:
  vision: TowerSpec
  text: TowerSpec
  image_size: int = 224
  patch_size: int = 32
  vocab_size: int = 49408
  max_length: int = 77  # text max_position_embeddings
  eos_token_id: int = 49407
  projection_dim: int = 512


PRESETS = {
    "vit-b-32": ClipSpec(TowerSpec(768, 3072, 12, 12), TowerSpec(512, 2048, 12, 8)),
    "vit-l-14": ClipSpec(TowerSpec(1024, 4096, 24, 16), TowerSpec(768, 3072, 12, 12),
                         patch_size=14, projection_dim=768),
}
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


class Attention(nn.Module):
  spec: TowerSpec
  causal: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = self.spec
    head_dim = s.width // s.num_heads
    init = nn.initializers.normal(s.width ** -0.5)

    def heads(name):  # (B, L, D) → (B, L, H, Dh)
      kernel = param(self, f"{name}_kernel", init, (s.width, s.num_heads, head_dim),
                      ("embed", "heads", "kv"))
      bias = param(self, f"{name}_bias", nn.initializers.zeros, (s.num_heads, head_dim),
                    ("heads", "kv"))
      return jnp.einsum("bld,dhk->blhk", x, kernel) + bias

    out = jax.nn.dot_product_attention(heads("q"), heads("k"), heads("v"),
                                       is_causal=self.causal)
    kernel = param(self, "out_kernel", init, (s.num_heads, head_dim, s.width),
                    ("heads", "kv", "embed"))
    bias = param(self, "out_bias", nn.initializers.zeros, (s.width,), ("embed",))
    return jnp.einsum("blhk,hkd->bld", out, kernel) + bias


class Block(nn.Module):
  """Pre-LN: x + attn(ln1 x), then x + fc2(act(fc1(ln2 x)))."""
  spec: TowerSpec
  causal: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = self.spec
    h = LayerNorm(epsilon=s.layer_norm_eps, name="attention_norm")(x)
    x = x + Attention(s, self.causal, name="attention")(h)
    h = LayerNorm(epsilon=s.layer_norm_eps, name="mlp_norm")(x)
    h = ACTIVATIONS[s.hidden_act](Dense(s.mlp_dim, ("embed", "mlp"), name="fc1")(h))
    x = x + Dense(s.width, ("mlp", "embed"), name="fc2")(h)
    return constrain(x, ("batch", None, "embed"))


def _encoder(spec: TowerSpec, x: jax.Array, causal: bool) -> jax.Array:
  for i in range(spec.num_layers):
    x = Block(spec, causal, name=f"layers_{i}")(x)
  return x


def _projection(module, x: jax.Array, projection_dim: int) -> jax.Array:
  kernel = param(module, "projection", nn.initializers.normal(x.shape[-1] ** -0.5),
                  (x.shape[-1], projection_dim), ("embed", None))
  return x @ kernel


class VisionTower(nn.Module):
  """Normalised pixels `(N, S, S, 3)` → image embeddings `(N, projection_dim)`."""
  spec: ClipSpec

  @nn.compact
  def __call__(self, pixels: jax.Array) -> jax.Array:
    s, v = self.spec, self.spec.vision
    n, p, grid = pixels.shape[0], s.patch_size, s.image_size // s.patch_size
    if pixels.shape[1:] != (s.image_size, s.image_size, 3):
      raise ValueError(f"CLIP pixels have shape {pixels.shape[1:]}; the model wants "
                       f"{(s.image_size, s.image_size, 3)} (see `preprocess`)")
    patches = pixels.reshape(n, grid, p, grid, p, 3).transpose(0, 1, 3, 2, 4, 5).reshape(
        n, grid * grid, p * p * 3)  # each patch flattened as (row, column, channel)
    kernel = param(self, "patch_kernel", nn.initializers.lecun_normal(), (p * p * 3, v.width),
                    ("patch", "embed"))
    cls = param(self, "class_embedding", nn.initializers.normal(v.width ** -0.5), (v.width,),
                 ("embed",))
    positions = param(self, "position_embedding", nn.initializers.normal(0.02),
                       (grid * grid + 1, v.width), (None, "embed"))
    x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, v.width)), patches @ kernel], axis=1)
    x = LayerNorm(epsilon=v.layer_norm_eps, name="pre_norm")(x + positions)
    x = _encoder(v, x, causal=False)
    pooled = LayerNorm(epsilon=v.layer_norm_eps, name="post_norm")(x[:, 0])
    return _projection(self, pooled, s.projection_dim)


def end_token_index(tokens: jax.Array, eos_token_id: int) -> jax.Array:
  """HF CLIPTextModel's pooling position: the first `eos_token_id`, or, for configs from before
  transformers #24773 (`eos_token_id == 2`), the highest id (OpenAI's end token is the last
  of the vocabulary)."""
  if eos_token_id == 2:
    return jnp.argmax(tokens, axis=-1)
  return jnp.argmax(tokens == eos_token_id, axis=-1)


class TextTower(nn.Module):
  """Token ids `(N, L)`, `L <= max_length`, start/end tokens included → text embeddings
  `(N, projection_dim)`."""
  spec: ClipSpec

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    s, t = self.spec, self.spec.text
    if tokens.shape[1] > s.max_length:
      raise ValueError(f"{tokens.shape[1]} text tokens; CLIP takes at most {s.max_length}")
    table = param(self, "token_embedding", nn.initializers.normal(0.02),
                   (s.vocab_size, t.width), ("vocab", "embed"))
    positions = param(self, "position_embedding", nn.initializers.normal(0.01),
                       (s.max_length, t.width), (None, "embed"))
    x = table[tokens] + positions[:tokens.shape[1]]
    x = _encoder(t, x, causal=True)
    x = LayerNorm(epsilon=t.layer_norm_eps, name="final_norm")(x)
    pooled = x[jnp.arange(x.shape[0]), end_token_index(tokens, s.eos_token_id)]
    return _projection(self, pooled, s.projection_dim)


def unit(x: jax.Array) -> jax.Array:
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


class ClipModel(nn.Module):
  """`encode_image(pixels)`, `encode_text(tokens)` (unnormalised, as HF's `get_*_features`),
  and `__call__(pixels, tokens)` → logits_per_image `(N_images, N_texts)`."""
  spec: ClipSpec

  def setup(self):
    self.vision = VisionTower(self.spec)
    self.text = TextTower(self.spec)
    self.logit_scale = param(self, "logit_scale", nn.initializers.constant(math.log(1 / 0.07)),
                              (), ())

  def encode_image(self, pixels: jax.Array) -> jax.Array:
    return self.vision(pixels)

  def encode_text(self, tokens: jax.Array) -> jax.Array:
    return self.text(tokens)

  def __call__(self, pixels: jax.Array, tokens: jax.Array) -> jax.Array:
    cos = unit(self.encode_image(pixels)) @ unit(self.encode_text(tokens)).T
    return cos * jnp.exp(self.logit_scale)


def abstract_params(spec: ClipSpec):
  """The parameter tree as ShapeDtypeStructs (boxed with logical names), no allocation."""
  pixels = jax.ShapeDtypeStruct((1, spec.image_size, spec.image_size, 3), jnp.float32)
  tokens = jax.ShapeDtypeStruct((1, spec.max_length), jnp.int32)
  return jax.eval_shape(lambda x, t: ClipModel(spec).init(jax.random.key(0), x, t),
                        pixels, tokens)["params"]


def param_count(spec: ClipSpec) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nn.unbox(abstract_params(spec))))


# --- Import from an HF CLIPModel state dict -------------------------------------------------

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


def convert_clip_state_dict(state_dict: dict[str, np.ndarray], spec: ClipSpec) -> dict:
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
  return spec, convert_clip_state_dict(load_state_dict(weights), spec)


def read_mean_std(folder) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """`image_mean` / `image_std` of the folder's preprocessor_config.json, else OpenAI's."""
  path = os.path.join(os.fspath(folder), "preprocessor_config.json")
  if not os.path.isfile(path):
    return OPENAI_MEAN, OPENAI_STD
  with open(path) as f:
    cfg = json.load(f)
  return tuple(cfg.get("image_mean", OPENAI_MEAN)), tuple(cfg.get("image_std", OPENAI_STD))


# --- Images and the CLIP score ---------------------------------------------------------------

def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
  """HF's shortest-edge resize: the short side becomes `size`, the long one is truncated."""
  if width <= height:
    return int(size * height / width), size
  return size, int(size * width / height)


def preprocess(frames_uint8: jax.Array, image_size: int, mean: Sequence[float] = OPENAI_MEAN,
               std: Sequence[float] = OPENAI_STD) -> jax.Array:
  """RGB frames `(N, H, W, 3)` uint8 → CLIP pixels `(N, image_size, image_size, 3)` f32: the
  shortest side resized to `image_size` (bicubic, antialiased, 8-bit passes as PIL's), the
  centre crop, scaled to [0, 1] and normalised by mean/std."""
  n, h, w, _ = frames_uint8.shape
  x = jnp.asarray(frames_uint8, jnp.float32)
  new_h, new_w = resized_shape(h, w, image_size)
  # PIL resizes width then height, rounding to uint8 after each pass; so do we.
  if new_w != w:
    x = jnp.clip(jnp.round(jax.image.resize(x, (n, h, new_w, 3), "bicubic")), 0, 255)
  if new_h != h:
    x = jnp.clip(jnp.round(jax.image.resize(x, (n, new_h, new_w, 3), "bicubic")), 0, 255)
  top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
  x = x[:, top:top + image_size, left:left + image_size] / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def _in_batches(fn, x: np.ndarray, batch_size: int) -> np.ndarray:
  """`fn` over `x` in fixed-size batches (the last padded by repetition: one compilation)."""
  out = []
  for start in range(0, len(x), batch_size):
    chunk = x[start:start + batch_size]
    padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - len(chunk), 0)])
    out.append(np.asarray(fn(padded))[:len(chunk)])
  return np.concatenate(out)


class ClipScorer:
  """CLIP embeddings and scores of uint8 frames and captions, with jitted, batched encoders."""

  def __init__(self, spec: ClipSpec, params: dict, tokenizer: ClipTokenizer,
               mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD,
               batch_size: int = 32):
    model = ClipModel(spec)
    self.spec, self.params, self.tokenizer, self.batch_size = spec, params, tokenizer, batch_size
    self._images = jax.jit(lambda p, frames: unit(model.apply(
        {"params": p}, preprocess(frames, spec.image_size, mean, std),
        method=ClipModel.encode_image)))
    self._texts = jax.jit(lambda p, tokens: unit(model.apply(
        {"params": p}, tokens, method=ClipModel.encode_text)))

  @classmethod
  def load(cls, folder, batch_size: int = 32) -> "ClipScorer":
    """An HF CLIPModel folder, with its tokenizer files (and preprocessor_config.json)."""
    spec, params = load_clip(folder)
    tokenizer = ClipTokenizer.load(folder, spec.max_length)
    return cls(spec, params, tokenizer, *read_mean_std(folder), batch_size=batch_size)

  def image_embeds(self, frames_uint8: np.ndarray) -> np.ndarray:
    """`(N, H, W, 3)` uint8 → unit-norm `(N, projection_dim)`."""
    return _in_batches(lambda x: self._images(self.params, x), np.asarray(frames_uint8),
                       self.batch_size)

  def text_embeds(self, texts: Sequence[str]) -> np.ndarray:
    """Captions → unit-norm `(N, projection_dim)` (longer ones truncated to max_length)."""
    tokens, _ = self.tokenizer.encode(list(texts))
    return _in_batches(lambda x: self._texts(self.params, x), tokens, self.batch_size)

  def score(self, videos_uint8: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Videos `(N, T, H, W, 3)` uint8 and N captions → CLIP scores `(N,)`:
    100 · max(cos(frame, caption), 0), averaged over each video's frames."""
    videos = np.asarray(videos_uint8)
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8 or not videos.size:
      raise ValueError(f"videos must be uint8 (N, T, H, W, 3); got {videos.dtype} "
                       f"{videos.shape}")
    if len(texts) != len(videos):
      raise ValueError(f"{len(videos)} videos but {len(texts)} captions")
    n, t = videos.shape[:2]
    frames = self.image_embeds(videos.reshape(n * t, *videos.shape[2:])).reshape(n, t, -1)
    cos = np.einsum("ntp,np->nt", frames, self.text_embeds(texts))
    return 100.0 * np.maximum(cos, 0.0).mean(axis=1)
