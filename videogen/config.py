"""The config schema (every key with its default), validation, and one-line CLI errors.

Config files in `configs/` start from `base_config()` and override values; they cannot add
keys by accident because the CLI locks the config and rejects unknown overrides.
"""
import importlib.util
import math
import os
import re
import sys

import ml_collections
from absl import flags


def base_config() -> ml_collections.ConfigDict:
  from videogen.parallel.mesh import DEFAULT_RULES
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = "dit"  # what `videogen.train` trains: "dit" (the denoiser) or "vae"

  # The DiT (videogen/models/dit.py): layout joint | expert (CogVideoX) | factorized (STDiT);
  # adaln per_block | single (PixArt/Wan); depth counts (spatial, temporal) pairs when
  # factorized. qk_norm rms | layer | rms_across_heads | none; rope_split cogvideox | wan;
  # text_projection linear | mlp; time_embed_dim 0 = width.
  c.model = dict(
      layout="joint", width=128, depth=4, num_heads=4, mlp_ratio=4.0, patch_size=(1, 4, 4),
      channels=3, text_dim=64, adaln="per_block", pos_embed="rope", rope_split="cogvideox",
      qk_norm="rms", text_projection="linear", pooled_text=True, time_frequency_dim=256,
      time_embed_dim=0, norm_eps=1e-6, attention_backend="xla", sequence_parallel="all_gather",
      dtype="float32",
      scan_layers=True, remat_policy="none",
      # LoRA adapters on the attention projections (videogen/models/lora.py): rank 0 = off;
      # alpha 0 = rank (scale 1).
      lora_rank=0, lora_alpha=0.0,
      # Trainable frame conditioning: "none" | "concat" | "replace" (text_to_video.py), trained
      # with train.frame_masks; camera: Plücker-ray camera adapter (models/camera.py).
      frame_condition="none", camera=False)

  # Captions → the DiT's text input (videogen/text/conditioning.py). tokenizer: "words" |
  # "sentencepiece" (tokenizer_path, or "" = trained on the source's captions and cached in
  # the workdir). encoder: "embedding" (trained with the DiT; model.text_dim wide) | "t5"
  # (frozen: t5.checkpoint = HF folder, or "" = random t5.preset, tests/demo only).
  # null: caption-dropout / unguided target, "empty" | "zero" | "learned".
  # embeddings_path: cache from `videogen.encode_text`, read instead of encoding in the step.
  c.text = dict(max_length=16, tokenizer="words", tokenizer_path="", encoder="embedding",
                t5=dict(checkpoint="", preset="tiny", seed=0, dtype="float32"),
                null="empty", embeddings_path="")

  # The video VAE. For task="vae" this is the model being trained; for task="dit",
  # `vae.checkpoint` names a trained VAE (workdir or export) whose latents the DiT models
  # ("" = pixel space). `factorized` = per-frame 2D codec + a time-only codec (Open-Sora).
  c.vae = dict(
      checkpoint="", variant="causal3d", latent_channels=16,
      block_channels=(128, 256, 256, 512), layers_per_block=3, spatial_levels=3,
      temporal_levels=2, norm_groups=32, norm_scope="frame", use_quant_conv=False,
      dtype="float32",
      factorized=dict(spatial_latent_channels=8, temporal_block_channels=(64, 64, 64),
                      temporal_layers_per_block=1),
      recon_loss="l1", kl_weight=1e-6, sample_posterior=True,
      disc=dict(enabled=False, start_step=2000, weight=0.5, adaptive=True, channels=64,
                num_layers=3, learning_rate=1e-4),
      eval_clips=8, stats_clips=32, chunk_frames=16, chunk_latents=4,
      tile=0, tile_overlap=64)

  # prediction (flow): what the network outputs, "velocity" or "x0" (turned into a velocity).
  c.diffusion = dict(objective="flow", schedule="cosine", num_timesteps=1000,
                     time_sampling="logit_normal", logit_mean=0.0, logit_std=1.0, shift=1.0,
                     prediction="velocity")

  c.data = dict(
      source="synthetic", seed=0, num_frames=8, height=32, width=32, num_threads=2, prefetch=4,
      latents_path="",  # source="latents": ArrayRecord written by `videogen.encode_dataset`
      # source="videos": a manifest (`videogen.prepare_data`), its filters, and shape buckets
      # {resolution: {frames: (keep_probability, batch_size)}} (videogen/data/buckets.py).
      manifest="",
      tfds=dict(name="video_manifest", split="train", data_dir="", video_key="video",
                text_key="caption"),  # source="tfds": any TFDS dataset with a Video feature
      filters=dict(min_duration=0.0, max_duration=0.0, min_resolution=0, min_motion=0.0,
                   max_motion=0.0, min_scores={}),
      # Neither spec nor sizes: one bucket, num_frames × height × width at train.batch_size.
      # spec: "RESxFRAMES[:KEEP[:BATCH]],…" or a .json/.yaml file (data/buckets.py).
      buckets=dict(sizes={}, spec="",
                   aspect_ratios=(9 / 16, 3 / 4, 1.0, 4 / 3, 16 / 9), multiple=16,
                   frame_stride=1),
      # Replace/augment captions from a sidecar file or a callable (videogen/data/recaption.py).
      recaption=dict(path="", callable="", mode="replace", prob=0.5),
      synthetic=dict(num_clips=1_000_000, num_objects=1, radius=0.14, speed=(0.06, 0.09),
                     allow_bounces=False, background="plain", camera="static",
                     camera_speed=0.03, caption_forms=("plain",),
                     colours=("red", "green", "blue", "yellow", "purple", "orange", "cyan",
                              "white"),
                     shapes=("circle", "square", "triangle"),
                     directions=("left", "right", "up", "down")))

  c.train = dict(
      num_steps=1000, batch_size=16, learning_rate=5e-4, warmup_steps=100,
      final_lr_fraction=0.1, weight_decay=0.0, adam_b1=0.9, adam_b2=0.99, adam_eps=1e-8,
      grad_clip_norm=1.0,
      ema_decay=0.999, caption_dropout=0.1, log_every=50,
      grad_accum_steps=1,  # micro-batches per step (one optimizer update for the batch)
      trainable="all",  # "all" | "lora" (only the adapters train; the base stays frozen)
      # A step whose loss or gradients are not finite: "halt" stops the run with one line
      # (nothing non-finite is saved); "skip" drops that update and counts it (`nonfinite`).
      nonfinite="halt",
      # model.frame_condition != "none": per clip, the chance of each given-frame mask
      # (diffusion/conditions.py MASK_KINDS); the rest trains unconditioned (dropout).
      frame_masks=dict(image_head=0.5, head=0.1, ends=0.1),
      init_from="",  # params (EMA) of this workdir/export start a fresh run (fine-tuning)
      stages=())  # progressive: ((start_step, data.buckets.sizes-like dict), …)

  # sample.sampler: "" = euler (flow) / ddim (ε, v); or heun | ddpm | dpm_solver++.
  # shift: flow sampler time-grid shift; None = the training `diffusion.shift`; with
  # shift_base_tokens > 0 it grows as √(tokens / shift_base_tokens) (larger videos, more shift).
  # guidance_rescale: 0 = plain CFG; ~0.7 counters the over-saturation of strong guidance.
  # cache: reuse of the DiT blocks' residual across steps (policy none | every | threshold).
  # extend_overlap: frames of the previous chunk that condition the next one (--extend).
  # reconstruction_guidance: with a frame/region condition, steer the generated part toward
  # agreeing with it (Ho et al. 2022; one extra backward pass per step; 0 = replacement only;
  # 4–8 fixes seams on exact denoisers, no gain measured on the under-trained demo).
  c.sample = dict(steps=30, guidance=4.0, guidance_rescale=0.0, eta=0.0, fps=8, sampler="",
                  shift=ml_collections.FieldReference(None, field_type=float),
                  shift_base_tokens=0, cache=dict(policy="none", every=2, threshold=0.05),
                  extend_overlap=2, reconstruction_guidance=0.0)

  # Preemption (SIGTERM): one process checks its own flag every step. Several processes agree
  # on JAX's preemption sync point when its service runs (jax.distributed's default), else
  # by an allgather every `preemption_check_every` steps.
  c.checkpoint = dict(every_steps=500, keep=3, async_save=True, preemption_check_every=10)

  # Evaluation during training (videogen/eval/report.py; synthetic source only): every
  # `every_steps` (0 = never) the EMA samples `num_prompts` prompts of the world's benchmark
  # suite; headline figures go to the metrics log as eval/*, the report and contact sheet to
  # WORKDIR/eval/step_N. steps 0 = sample.steps. fvd/clip need i3d_weights / clip_model.
  c.eval = dict(every_steps=0, metrics=("synthetic", "flicker", "warping"), num_prompts=8,
                prompt_set="suite", seed=0, steps=0, i3d_weights="", clip_model="")

  # -1 = the remaining devices. The rules map logical axis names onto these mesh axes.
  # max_replicated_fraction: start-up guardrail on the share of parameter bytes the rules
  # leave replicated (1.0 = off; e.g. 0.1 for a large FSDP run).
  # dcn_*: slices (TPU multislice) or processes (GPU nodes) per axis over the data-centre
  # network; the sizes above are then per slice (e.g. dcn_data=2 with fsdp=-1: FSDP inside
  # each slice, data parallelism across them).
  c.mesh = dict(data=-1, fsdp=1, tensor=1, sequence=1, rules=DEFAULT_RULES,
                max_replicated_fraction=1.0, dcn_data=1, dcn_fsdp=1, dcn_tensor=1,
                dcn_sequence=1)
  return c


class ConfigError(ValueError):
  """A config problem the user can fix; printed as one line."""


# Every numeric key's valid range, by the section that owns it: (wording, check). A sequence
# is checked entry by entry; every value must also be finite. None (sample.shift's "the
# training shift") and keys a config lacks are skipped. Checked first in `validate`, so a
# degenerate value is one line at start-up, not a traceback deep in the model.
_COUNT = ("a whole number >= 1", lambda v: v >= 1)
_NON_NEGATIVE = (">= 0", lambda v: v >= 0)
_POSITIVE = ("> 0", lambda v: v > 0)
_FRACTION = ("in [0, 1]", lambda v: 0 <= v <= 1)
_DECAY = ("in [0, 1)", lambda v: 0 <= v < 1)
_SHARE = ("in (0, 1]", lambda v: 0 < v <= 1)
_MESH_AXIS = ("-1 (the remaining devices) or >= 1", lambda v: v == -1 or v >= 1)
_ANY = ("finite", lambda v: True)
NUMERIC_RANGES = {
    "seed": _NON_NEGATIVE,
    **{f"model.{k}": _COUNT for k in ("width", "depth", "num_heads", "patch_size", "channels",
                                      "text_dim", "time_frequency_dim")},
    "model.mlp_ratio": _POSITIVE, "model.time_embed_dim": _NON_NEGATIVE,
    "model.norm_eps": _POSITIVE, "model.lora_rank": _NON_NEGATIVE,
    "model.lora_alpha": _NON_NEGATIVE,
    "text.max_length": _COUNT, "text.t5.seed": _NON_NEGATIVE,
    **{f"vae.{k}": _COUNT for k in ("latent_channels", "block_channels", "layers_per_block",
                                    "norm_groups", "stats_clips", "chunk_frames",
                                    "chunk_latents", "disc.channels", "disc.num_layers",
                                    "factorized.spatial_latent_channels",
                                    "factorized.temporal_block_channels",
                                    "factorized.temporal_layers_per_block")},
    **{f"vae.{k}": _NON_NEGATIVE for k in ("spatial_levels", "temporal_levels", "kl_weight",
                                           "disc.start_step", "disc.weight", "eval_clips",
                                           "tile", "tile_overlap")},
    "vae.disc.learning_rate": _POSITIVE,
    "diffusion.num_timesteps": _COUNT, "diffusion.logit_mean": _ANY,
    "diffusion.logit_std": _POSITIVE, "diffusion.shift": _POSITIVE,
    **{f"data.{k}": _COUNT for k in ("num_frames", "height", "width", "buckets.multiple",
                                     "buckets.frame_stride", "synthetic.num_clips",
                                     "synthetic.num_objects")},
    **{f"data.{k}": _NON_NEGATIVE for k in (
        "seed", "num_threads", "prefetch", "filters.min_duration", "filters.max_duration",
        "filters.min_resolution", "filters.min_motion", "filters.max_motion",
        "synthetic.speed", "synthetic.camera_speed")},
    "data.buckets.aspect_ratios": _POSITIVE, "data.recaption.prob": _FRACTION,
    "data.synthetic.radius": ("in (0, 0.5]", lambda v: 0 < v <= 0.5),
    **{f"train.{k}": _COUNT for k in ("num_steps", "batch_size", "log_every",
                                      "grad_accum_steps")},
    "train.learning_rate": _POSITIVE, "train.warmup_steps": _NON_NEGATIVE,
    "train.final_lr_fraction": _FRACTION, "train.weight_decay": _NON_NEGATIVE,
    "train.adam_b1": _DECAY, "train.adam_b2": _DECAY, "train.adam_eps": _POSITIVE,
    "train.grad_clip_norm": _POSITIVE, "train.ema_decay": _FRACTION,
    "train.caption_dropout": _FRACTION,
    **{f"train.frame_masks.{k}": _FRACTION for k in ("image_head", "head", "ends")},
    "sample.steps": _COUNT, "sample.fps": _POSITIVE, "sample.cache.every": _COUNT,
    **{f"sample.{k}": _NON_NEGATIVE for k in ("guidance", "eta", "shift_base_tokens",
                                              "cache.threshold", "extend_overlap",
                                              "reconstruction_guidance")},
    "sample.guidance_rescale": _FRACTION, "sample.shift": _POSITIVE,
    "checkpoint.every_steps": _COUNT, "checkpoint.keep": _COUNT,
    "checkpoint.preemption_check_every": _COUNT,
    "eval.every_steps": _NON_NEGATIVE, "eval.num_prompts": _COUNT, "eval.seed": _NON_NEGATIVE,
    "eval.steps": _NON_NEGATIVE,
    **{f"mesh.{k}": _MESH_AXIS for k in ("data", "fsdp", "tensor", "sequence")},
    **{f"mesh.dcn_{k}": _COUNT for k in ("data", "fsdp", "tensor", "sequence")},
    "mesh.max_replicated_fraction": _SHARE,
}


def check_ranges(config: ml_collections.ConfigDict) -> None:
  """Every key of `NUMERIC_RANGES` the config has is finite and in its range; else one
  ConfigError line naming the key, its value and the range."""
  for key, (wording, in_range) in NUMERIC_RANGES.items():
    value = config
    for part in key.split("."):
      value = value.get(part) if hasattr(value, "get") else None
    if value is None:
      continue
    entries = value if isinstance(value, (tuple, list)) else (value,)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               and in_range(v) for v in entries):
      each = " (each entry)" if entries is value else ""
      raise ConfigError(f"{key}={value!r} must be {wording}{each}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every numeric key's range (`NUMERIC_RANGES`), then the cross-key constraints
  that individual types cannot express."""
  # Imported here, not at the top: `--help` answers before jax is imported.
  from videogen.data.pipeline import SOURCES as DATA_SOURCES
  from videogen.data.recaption import MODES as RECAPTION_MODES
  from videogen.diffusion.objectives import from_config as diffusion_from_config
  from videogen.diffusion.samplers import CACHE_POLICIES, check_sampler
  from videogen.models.attention import BACKENDS as ATTENTION_BACKENDS
  from videogen.models.attention import QK_NORMS, SEQUENCE_PARALLEL
  from videogen.models.dit import ADALN, LAYOUTS, REMAT_POLICIES, TEXT_PROJECTIONS
  from videogen.models.embeddings import ROPE_SPLITS
  from videogen.models.text_to_video import FRAME_CONDITIONS
  from videogen.text.conditioning import ENCODERS, NULLS, TOKENIZERS
  from videogen.vae.model import NORM_SCOPES, VARIANTS as VAE_VARIANTS
  check_ranges(config)
  model, data = config.model, config.data
  choices = {"task": (config.task, ("dit", "vae")),
             "train.nonfinite": (config.train.nonfinite, ("halt", "skip")),
             "vae.variant": (config.vae.variant, VAE_VARIANTS),
             "vae.norm_scope": (config.vae.norm_scope, NORM_SCOPES),
             "vae.recon_loss": (config.vae.recon_loss, ("l1", "l2")),
             "model.layout": (model.layout, LAYOUTS),
             "model.adaln": (model.adaln, ADALN),
             "model.rope_split": (model.rope_split, ROPE_SPLITS),
             "model.qk_norm": (model.qk_norm, QK_NORMS),
             "model.sequence_parallel": (model.sequence_parallel, SEQUENCE_PARALLEL),
             "model.attention_backend": (model.attention_backend, ATTENTION_BACKENDS),
             "model.text_projection": (model.text_projection, TEXT_PROJECTIONS),
             "model.pos_embed": (model.pos_embed, ("rope", "sincos")),
             "model.dtype": (model.dtype, ("float32", "bfloat16")),
             "model.remat_policy": (model.remat_policy, tuple(REMAT_POLICIES)),
             "text.tokenizer": (config.text.tokenizer, TOKENIZERS),
             "text.encoder": (config.text.encoder, ENCODERS),
             "text.null": (config.text.null, NULLS),
             "text.t5.dtype": (config.text.t5.dtype, ("float32", "bfloat16")),
             "data.recaption.mode": (data.recaption.mode, RECAPTION_MODES),
             "data.source": (data.source, DATA_SOURCES),
             "sample.cache.policy": (config.sample.cache.policy, CACHE_POLICIES),
             "model.frame_condition": (model.frame_condition, FRAME_CONDITIONS)}
  for key, (value, allowed) in choices.items():
    if value not in allowed:
      raise ConfigError(f"{key}={value!r} is not one of {allowed}")
  if model.adaln == "single" and (model.layout == "expert" or model.time_embed_dim):
    raise ConfigError("model.adaln='single' needs model.layout joint or factorized and "
                      "model.time_embed_dim=0")
  if model.sequence_parallel == "ulysses" and model.num_heads % (
      max(config.mesh.tensor, 1) * max(config.mesh.sequence, 1)):
    raise ConfigError(f"model.sequence_parallel='ulysses' splits heads over tensor × sequence: "
                      f"model.num_heads={model.num_heads} must divide by "
                      f"{config.mesh.tensor} × {config.mesh.sequence}")
  if model.camera and data.source != "synthetic":
    raise ConfigError("model.camera trains on the synthetic source's rendered camera paths; "
                      f"data.source={data.source!r} has no cameras")
  if config.eval.every_steps:
    from videogen.eval.report import METRICS
    if data.source != "synthetic" or config.task != "dit":
      raise ConfigError("eval.every_steps evaluates on the synthetic world's benchmark: it "
                        "needs task='dit' and data.source='synthetic'")
    unknown = sorted(set(config.eval.metrics) - set(METRICS))
    if unknown or config.eval.prompt_set not in ("suite", "plain"):
      raise ConfigError(f"eval.metrics {unknown or ''} / eval.prompt_set="
                        f"{config.eval.prompt_set!r}: choose metrics from {METRICS} and "
                        "prompt_set suite or plain")
  if model.width % model.num_heads:
    raise ConfigError(f"model.width={model.width} is not divisible by "
                      f"model.num_heads={model.num_heads}")
  if config.task == "vae":
    _validate_vae(config)
  elif not config.vae.checkpoint:  # a latent-space DiT is checked against its VAE at load
    for axis, size, patch in zip(("num_frames", "height", "width"),
                                 (data.num_frames, data.height, data.width), model.patch_size):
      if size % patch:
        raise ConfigError(f"data.{axis}={size} is not divisible by its model.patch_size "
                          f"entry {patch}")
  tile, overlap = config.vae.tile, config.vae.tile_overlap
  factor = 2 ** config.vae.spatial_levels
  if tile > 0 and (tile % factor or overlap % factor or not 0 <= overlap < tile):
    raise ConfigError(f"vae.tile={tile} and vae.tile_overlap={overlap} must be multiples of "
                      f"{factor} with 0 <= overlap < tile")
  if config.text.max_length < 1:
    raise ConfigError(f"text.max_length={config.text.max_length} must be >= 1 (room for EOS)")
  if config.text.embeddings_path and config.text.encoder != "t5":
    raise ConfigError("text.embeddings_path holds frozen-encoder outputs: set text.encoder='t5'")
  if config.text.tokenizer == "words" and config.text.encoder == "t5" and config.text.t5.checkpoint:
    raise ConfigError("a T5 checkpoint needs its own tokenizer: set text.tokenizer="
                      "'sentencepiece' and text.tokenizer_path to its spiece.model")
  if data.source == "videos" and not os.path.isfile(data.manifest):
    raise ConfigError(f"data.source='videos' needs data.manifest, a manifest file "
                      f"(videogen.prepare_data writes one); {data.manifest!r} does not exist")
  if data.source == "latents" and not (data.latents_path and config.vae.checkpoint):
    raise ConfigError("data.source='latents' needs data.latents_path and vae.checkpoint")
  for key in ("train.num_steps", "train.batch_size", "train.log_every", "train.grad_accum_steps",
              "checkpoint.every_steps", "checkpoint.keep"):
    section, name = key.split(".")
    if config[section][name] < 1:
      raise ConfigError(f"{key}={config[section][name]} must be >= 1")
  try:
    diffusion = diffusion_from_config(config.diffusion)
    if config.sample.sampler:
      check_sampler(diffusion, config.sample.sampler)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _validate_vae(config: ml_collections.ConfigDict) -> None:
  from videogen.vae.model import check_video_shape
  from videogen.vae.model import spec_from_config as vae_spec_from_config
  vae = config.vae
  spec = vae_spec_from_config(vae)
  for codec in spec.codecs:
    bad = [c for c in codec.block_channels if c % codec.norm_groups]
    if bad:
      raise ConfigError(f"vae.norm_groups={codec.norm_groups} does not divide channel "
                        f"counts {bad}")
  try:
    check_video_shape(spec, config.data.num_frames, config.data.height, config.data.width)
  except ValueError as e:
    raise ConfigError(f"data shape for the VAE: {e}") from None


def _override_keys(argv: list[str], flag_name: str) -> list[str]:
  prefix = f"--{flag_name}."
  return [a[len(prefix):].split("=", 1)[0] for a in argv if a.startswith(prefix)]


def _missing_key(config: ml_collections.ConfigDict, dotted: str) -> str | None:
  node = config
  for i, part in enumerate(dotted.split(".")):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      return ".".join(dotted.split(".")[:i + 1])
    node = node[part]
  return None


def _flag_value(argv: list[str], name: str) -> str | None:
  """The value of `--name=V` or `--name V` in argv, if present."""
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


class _HelpFlag(flags.BooleanFlag):
  """`--help`/`-h`/`--helpshort`: the command's usage and own flags; `--helpfull`: every
  flag. Printed on stdout, exit code 0. Parsed by absl in order, so `--prompt -h` is a prompt."""

  def __init__(self, name: str, short_name: str | None, full: bool):
    super().__init__(name, False, "Show every flag, including library ones." if full else
                     "Show this help.", short_name=short_name)
    self.full = full

  def parse(self, argument):
    if self._parse(argument):
      main = sys.modules["__main__"]
      spec = getattr(main, "__spec__", None)
      command = f"python -m {spec.name}" if spec else os.path.basename(sys.argv[0])
      print(f"usage: {command} [--flag=value ...]\n\n{(main.__doc__ or '').strip()}\n")
      print("flags:")
      print(flags.FLAGS.get_help() if self.full else flags.FLAGS.main_module_help())
      sys.exit(0)


def define_help_flags() -> None:
  """`--help`, `-h`, `--helpshort`, `--helpfull` (absl defines them only under `app.run`)."""
  for name, short_name, full in (("help", "h", False), ("helpshort", None, False),
                                 ("helpfull", None, True)):
    if name not in flags.FLAGS:
      flags.DEFINE_flag(_HelpFlag(name, short_name, full))


def parse_flags_or_exit(argv: list[str], config_flag: str | None = "config") -> list[str]:
  """Parses absl flags; any problem becomes one `error:` line on stderr and exit code 2.
  `--help`/`-h`/`--helpfull` print usage and exit 0. Returns the positional arguments
  (program name first)."""
  define_help_flags()
  if config_flag:
    path = _flag_value(argv, config_flag)
    if path is not None and not os.path.isfile(path.split(":", 1)[0]):
      exit_with_error(f"--{config_flag}: config file {path.split(':', 1)[0]!r} does not exist")
  try:
    positional = flags.FLAGS(argv)
    if config_flag and flags.FLAGS[config_flag].present:
      config = flags.FLAGS[config_flag].value
      validate(config)
  except AttributeError:
    # ml_collections reports an unknown override key as a bare AttributeError; name it.
    default = _load_defaults(argv, config_flag)
    bad = next((k for k in _override_keys(argv, config_flag)
                if default is not None and _missing_key(default, k)), None)
    exit_with_error(f"unknown config key {config_flag}.{bad}" if bad
                    else "invalid config override")
  except flags.Error as e:
    message = str(e).strip()
    if "Traceback" in message:  # an exception inside get_config(): keep what it said
      message = f"{message.split(': ', 1)[0]}: {message.splitlines()[-1].strip()}"
    exit_with_error(re.sub(r"\s+", " ", message))
  except ConfigError as e:
    exit_with_error(f"invalid config: {e}")
  return positional


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """`configs/x.py[:variant]` → `get_config(variant)`, as `--config` reads it."""
  file, _, arg = path.partition(":")
  spec = importlib.util.spec_from_file_location("_videogen_config", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _load_defaults(argv, config_flag):
  path = _flag_value(argv, config_flag)
  return None if path is None else load_config_file(path)


def exit_with_error(message: str) -> None:
  """The CLIs' single failure path: one `error:` line on stderr, exit code 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)
