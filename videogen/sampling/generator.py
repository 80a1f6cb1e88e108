"""Text-to-video generation from trained params: text conditioning → jitted, sharded sampler
→ uint8.

Shared by the `sample` CLI, the benchmark and evaluation; it never imports the training code.
"""
import dataclasses
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from videogen import checkpoints
from videogen.config import NUMERIC_RANGES
from videogen.data import frames as frames_lib
from videogen.data.synthetic import CAPTION_FORMS, VOCABULARY
from videogen.models import camera
from videogen.models.text_to_video import TextToVideo
from videogen.diffusion import feature_cache, samplers
from videogen.diffusion.conditions import FrameCondition
from videogen.diffusion.objectives import from_config as diffusion_from_config
from videogen.models.text_to_video import build_model, param_shardings
from videogen.parallel import mesh as mesh_lib
from videogen.text.conditioning import TextConditioning
from videogen.vae.latents import FrozenVae


@dataclasses.dataclass
class Generator:
  """A loaded model ready to sample. Build with `Generator.load(path)`."""

  config: ml_collections.ConfigDict
  model: TextToVideo
  params: dict
  mesh: jax.sharding.Mesh
  text: TextConditioning
  vae: FrozenVae | None = None  # set when the model lives in a VAE's latent space
  _compiled: dict = dataclasses.field(default_factory=dict, repr=False)
  _warned: set = dataclasses.field(default_factory=set, repr=False)  # unknown words named
  # A tqdm bar on stderr per sampling call, advanced as denoising steps finish on the device.
  show_progress: bool = False
  _bar: dict = dataclasses.field(default_factory=dict, repr=False)  # its settings, then "bar"

  @classmethod
  def load(cls, path: str, mesh_config: ml_collections.ConfigDict | None = None) -> "Generator":
    """From a training workdir (EMA of the latest step) or an export directory: Orbax
    `params/` or `model.safetensors`, told apart by the files present (`checkpoints`)."""
    config = checkpoints.load_config(path)
    mesh = mesh_lib.create_mesh(mesh_config or _mesh_here(config.mesh))
    generator = cls.with_params(config, path, mesh, None)
    latent_shape = generator.vae and generator.vae.latent_shape(
        config.data.num_frames, config.data.height, config.data.width)
    abstract, shardings = param_shardings(generator.model, config, mesh,
                                          mesh_lib.rules_from_config(config.mesh), latent_shape)
    with jax.set_mesh(mesh):
      generator.params = checkpoints.load_ema_params(path, abstract, shardings)
    return generator

  @classmethod
  def with_params(cls, config: ml_collections.ConfigDict, run_dir: str,
                  mesh: jax.sharding.Mesh, params) -> "Generator":
    """Around params already in memory (training's EMA, for evaluation during training);
    the tokenizer and frozen encoders come from `run_dir` and the config."""
    rules = mesh_lib.rules_from_config(config.mesh)
    text = TextConditioning.create(config, run_dir, mesh, rules, vocabulary=VOCABULARY)
    model = build_model(config, text.model_vocab_size, text.dim)
    vae = FrozenVae.load(config.vae.checkpoint, mesh, rules) if config.vae.checkpoint else None
    return cls(config, model, params, mesh, text, vae)

  def sample_shape(self, batch: int, frames: int | None = None, height: int | None = None,
                   width: int | None = None) -> tuple[int, ...]:
    """The sampler's array shape for `batch` clips (pixels, or the VAE's latents); unset
    sizes are the training clip's."""
    data = self.config.data
    frames, height, width = frames or data.num_frames, height or data.height, width or data.width
    if self.vae is None:
      return (batch, frames, height, width, self.config.model.channels)
    return (batch, *self.vae.latent_shape(frames, height, width))

  def options(self, shape, **overrides) -> "SamplerOptions":
    """Sampler settings: `overrides` that are not None, else the checkpoint's `sample.*`
    (`checkpoints.load_config` gives older checkpoints every current key)."""
    names = [f.name for f in dataclasses.fields(SamplerOptions)]
    unknown = set(overrides) - set(names)
    if unknown:  # a misspelt option would otherwise sample with the checkpoint's value
      raise TypeError(f"unknown sampler options {sorted(unknown)}; choose from {names}")
    sample = self.config.sample
    get = lambda name: sample[name] if overrides.get(name) is None else overrides[name]  # noqa
    spec = self.model.spec
    tokens = int(np.prod([n // p for n, p in zip(shape[1:4], spec.patch_size)]))
    for name in names:  # each value, given or the checkpoint's, within the config's own bound
      bound = NUMERIC_RANGES.get(f"sample.{name}")
      value = get(name) if name in sample else overrides.get(name)
      if bound and isinstance(value, (int, float)) and not bound[1](value):
        raise ValueError(f"{name}={value}: must be {bound[0]}")
    shift = get("shift")
    if shift is not None or sample.shift_base_tokens:
      shift = samplers.resolution_shift(self.config.diffusion.shift if shift is None else shift,
                                        tokens, sample.shift_base_tokens)
    return SamplerOptions(steps=get("steps"), guidance=float(get("guidance")),
                          guidance_rescale=float(get("guidance_rescale")),
                          guidance_min_noise=float(get("guidance_min_noise")),
                          sampler=get("sampler") or None, shift=shift, eta=float(get("eta")),
                          cache=overrides.get("cache")
                          or feature_cache.FeatureCache(**sample.cache),
                          strength=float(overrides.get("strength") or 1.0),
                          reconstruction_guidance=0.0 if self.model.frame_condition != "none"
                          else float(get("reconstruction_guidance")))

  def encode(self, video: np.ndarray) -> jax.Array:
    """uint8 `(N, T, H, W, 3)` → the sampler's space (the VAE's normalised latents)."""
    x = jnp.asarray(frames_lib.from_uint8(video))
    if self.vae is None:
      return x
    with jax.set_mesh(self.mesh):
      return jnp.asarray(self.vae.encode(x))

  def decode(self, x: jax.Array) -> np.ndarray:
    """The sampler's space → uint8 `(N, T, H, W, 3)`."""
    if self.vae is not None:
      with jax.set_mesh(self.mesh):
        x = self.vae.decode(x)
    return frames_lib.to_uint8(x)

  def sample(self, prompts: list[str], shape, options: "SamplerOptions", *, seed: int = 0,
             negative_prompt: str = "", condition: FrameCondition | None = None,
             init: jax.Array | None = None, cameras: np.ndarray | None = None) -> jax.Array:
    """One sample per prompt in the sampler's space (`shape`), optionally pinned by
    `condition`, started from `init` (SDEdit, with `options.strength`), or along per-frame
    `cameras` `(T, 12)` (a camera-adapted model; `videogen.models.camera.named_path`)."""
    if cameras is not None:
      if not self.model.spec.camera:
        raise ValueError("this model has no camera adapter (train with model.camera=True)")
      cameras = camera.at_frames(jnp.broadcast_to(jnp.asarray(cameras, jnp.float32),
                                                  (shape[0], *np.shape(cameras))), shape[1])
    self.warn_unknown_words([*prompts, negative_prompt])
    text = self.text.conditional(prompts)
    null_text = self.text.unconditional(len(prompts), negative_prompt)
    key = (tuple(shape), options, self.show_progress)
    if key not in self._compiled:
      self._compiled[key] = _compiled_sampler(
          self.config, self.model, self.mesh, tuple(shape), options,
          on_step=self._step_finished if self.show_progress else None)
    if self.show_progress:  # the bar appears at the first finished step: after compiling,
      # so an error while tracing stays one line
      steps = options.steps if init is None else max(1, round(options.steps * options.strength))
      self._bar = dict(total=steps, unit="step", file=sys.stderr, dynamic_ncols=True,
                       desc=f"sampling {shape[0]} video{'s' * (shape[0] > 1)}")
    try:
      with jax.set_mesh(self.mesh):
        x = self._compiled[key](self.params, text, null_text, jax.random.PRNGKey(seed),
                                condition, init, cameras)
        return x.block_until_ready() if self.show_progress else x
    finally:
      if "bar" in self._bar:
        self._bar["bar"].close()
      self._bar = {}

  def _step_finished(self, _: int) -> None:
    if self._bar and "bar" not in self._bar:
      self._bar["bar"] = tqdm.tqdm(**self._bar)
    if self._bar:
      self._bar["bar"].update(1)

  def warn_unknown_words(self, prompts: list[str]) -> list[str]:
    """One `warning:` line on stderr for prompt words the tokenizer encodes as <unk> (each
    word once per generator), naming what the model was trained on. Returns the new ones."""
    unknown = [w for w in self.text.tokenizer.unknown(prompts) if w not in self._warned]
    if unknown:
      self._warned.update(unknown)
      print(unknown_words_warning(self.config, self.text.tokenizer, unknown), file=sys.stderr,
            flush=True)
    return unknown

  def __call__(self, prompts: list[str], *, seed: int = 0, num_frames: int | None = None,
               height: int | None = None, width: int | None = None,
               negative_prompt: str = "", cameras: np.ndarray | None = None,
               **options) -> np.ndarray:
    """Text-to-video: one uint8 `(T, H, W, 3)` video per prompt. `options` (steps,
    guidance, guidance_rescale, sampler, shift, eta, cache) default to the checkpoint's
    `sample.*`; sizes to its training clip. `cameras` `(T, 12)`: a camera path."""
    shape = self.sample_shape(len(prompts), num_frames, height, width)
    x = self.sample(prompts, shape, self.options(shape, **options), seed=seed,
                    negative_prompt=negative_prompt, cameras=cameras)
    return self.decode(x)


@dataclasses.dataclass(frozen=True)
class SamplerOptions:
  """What a sampling call may vary; each distinct value compiles its own sampler."""
  steps: int
  guidance: float
  guidance_rescale: float = 0.0
  guidance_min_noise: float = 0.0
  sampler: str | None = None  # None: the objective's default
  eta: float = 0.0            # fresh noise per step (ddim, flow euler)
  shift: float | None = None
  cache: feature_cache.FeatureCache = feature_cache.FeatureCache()
  strength: float = 1.0
  reconstruction_guidance: float = 0.0


def unknown_words_warning(config: ml_collections.ConfigDict, tokenizer, unknown: list[str]
                          ) -> str:
  """The warning for prompt words that encode as <unk>: the words tokenizer's vocabulary, or
  the sentencepiece model and its unknown pieces; and the caption grammar of a synthetic-world
  model (its config records the caption forms and word lists)."""
  effect = "they encode as <unk> and the video will not follow them"
  if config.text.tokenizer == "words":
    known = [w for w in tokenizer.vocab if not w.startswith("<")]  # not <pad> </s> <unk>
    line = (f"warning: not in the model's vocabulary: {', '.join(map(repr, unknown))}; "
            f"{effect}. It was trained on the words: {' '.join(known)}")
  else:
    model = config.text.tokenizer_path or "trained on the run's captions"
    line = (f"warning: the model's sentencepiece tokenizer ({model}, {tokenizer.vocab_size} "
            f"pieces) has no piece for: {'; '.join(unknown)}; {effect}")
  if config.data.source == "synthetic":
    world = config.data.synthetic
    forms = " or ".join(repr(CAPTION_FORMS[f]) for f in world.caption_forms)
    line += (f". Its training captions read {forms} with colour {'|'.join(world.colours)}, "
             f"shape {'|'.join(world.shapes)}, direction {'|'.join(world.directions)}")
  return line


def _mesh_here(trained: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The training mesh where it fits these devices and processes, else one data axis over
  all of them without the cross-slice (`dcn_*`) axes: a pod's run samples on a laptop."""
  try:
    mesh_lib.create_mesh(trained)
    return trained
  except ValueError:
    here = ml_collections.ConfigDict(trained.to_dict())
    here.update(data=-1, fsdp=1, tensor=1, sequence=1)
    for key in [k for k in here if k.startswith("dcn_")]:
      here[key] = 1
    return here


def load_generator(workdir: str | None, checkpoint: str | None = None,
                   lora: str | None = None) -> Generator:
  """Exactly one of a workdir or an export (plus an optional LoRA adapter folded into its
  weights); else ValueError (FileNotFoundError: no checkpoint, tokenizer or T5)."""
  if bool(workdir) == bool(checkpoint):
    raise ValueError("pass exactly one of --workdir DIR or --checkpoint EXPORT_DIR")
  generator = Generator.load(workdir or checkpoint)
  if lora:
    generator.params = checkpoints.apply_adapter(generator.params, lora, generator.model.spec)
  return generator


def _compiled_sampler(config, model, mesh, shape, options: SamplerOptions, on_step=None):
  diffusion = diffusion_from_config(config.diffusion)
  rules = mesh_lib.rules_from_config(config.mesh)

  def run(params, text, null_text, key, condition, init, cameras):
    with nn.logical_axis_rules(rules):
      noise_key, sampler_key = jax.random.split(key)
      noise = jax.random.normal(noise_key, shape, jnp.float32)

      def denoise(x, t, text_mask_drop, estimate=None, **block_cache):
        if cameras is not None:  # the CFG-doubled batch: both halves follow the cameras
          block_cache["cameras"] = jnp.concatenate([cameras] * (x.shape[0] // shape[0]))
        return model.apply({"params": params}, x, t, *text_mask_drop, condition, estimate,
                           **block_cache)

      return samplers.sample(diffusion, denoise, noise, text, null_text, steps=options.steps,
                             guidance=options.guidance, key=sampler_key,
                             sampler=options.sampler, eta=options.eta,
                             shift=options.shift, guidance_rescale=options.guidance_rescale,
                             guidance_min_noise=options.guidance_min_noise,
                             cache=options.cache, condition=condition, init=init,
                             strength=options.strength,
                             reconstruction_guidance=options.reconstruction_guidance,
                             self_condition=model.self_condition, on_step=on_step)

  # Prompts are replicated (tiny); the video batch is split over data × fsdp when it divides.
  batch_axes = mesh.shape["data"] * mesh.shape["fsdp"]
  out = mesh_lib.batch_sharding(mesh) if shape[0] % batch_axes == 0 else mesh_lib.replicated(mesh)
  return jax.jit(run, out_shardings=out)
