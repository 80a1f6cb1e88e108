"""The config schema: every key with its default and every numeric key's range, and ConfigError.

Config files in `configs/` start from `base_config()` and override values; they cannot add
keys by accident because the CLI locks the config and rejects unknown overrides. A leaf:
imports nothing from videogen, so loading a config file loads neither jax nor the models.
Each section is validated by the code that owns it (videogen/validate.py calls them all);
flag parsing and one-line errors live in videogen/cli.py.
"""
import importlib.util
import math

import ml_collections

# FSDP over `embed` for parameters, tensor parallelism over heads/MLP (`mesh.rules`; the mesh
# axes are videogen.parallel.mesh.AXES). A logical name with no rule (or whose mesh axis is
# already used in the same array) stays replicated on that axis.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", "sequence"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    # Ulysses sequence parallelism: inside self-attention, heads split over tensor × sequence
    # while the full sequence is local (all-to-all in, all-to-all out).
    ("heads_sequence", ("tensor", "sequence")),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("kv", None),
    ("text_length", None),
    ("text_embed", None),
    ("patch", None),
    ("layers", None),
    ("lora_rank", None),  # LoRA adapters' rank axis: tiny, never split
    # The VAE: conv output channels FSDP-sharded; map "height" to "sequence" to split frames.
    ("vae_channels", "fsdp"),
    ("frames", None),
    ("height", None),
    ("width", None),
)


def base_config() -> ml_collections.ConfigDict:
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
      qk_norm="rms", text_projection="linear", pooled_text=True, token_adaln=False,
      head_mlp_ratio=0.0,
      # registers: learned tokens that join the video tokens through the blocks (joint layout).
      registers=0,
      time_frequency_dim=256,
      time_embed_dim=0, norm_eps=1e-6, attention_backend="xla", sequence_parallel="all_gather",
      dtype="float32",
      scan_layers=True, remat_policy="none",
      # LoRA adapters on the attention projections (videogen/models/lora.py): rank 0 = off;
      # alpha 0 = rank (scale 1).
      lora_rank=0, lora_alpha=0.0,
      # Trainable frame conditioning: "none" | "concat" | "replace" (text_to_video.py), trained
      # with train.frame_masks; camera: Plücker-ray camera adapter (models/camera.py).
      frame_condition="none", camera=False,
      # self_condition: the DiT also reads its own previous x0 estimate as input channels
      # (self-conditioning, Chen et al. 2022): half the training steps take it from a first,
      # gradient-free pass; the sampler carries it from step to step.
      self_condition=False,
      # text.encoder="embedding" only: trainable transformer blocks over the caption embedding
      # (with learned positions; text_to_video.CaptionEncoder); 0 = the bare embedding.
      # text_conv: width of a word convolution before those blocks; 0 = none.
      text_layers=0, text_conv=0)

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
                     prediction="velocity", loss_weighting="none",
                     frame_difference_weight=0.0)

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
                     allow_bounces=False, bounce_clearance=0.1, background="plain",
                     camera="static",
                     camera_speed=0.03, caption_forms=("plain",),
                     scenes="random",  # "suite": clips of benchmark-suite prompts (synthetic.py)
                     suite_object_counts=(),  # objects a suite clip draws from; () = 1, 1, 2, 3
                     keep_apart=False,  # objects of a clip never touch, where paths allow it
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
  # guidance_min_noise: guidance only at noise levels (flow t) >= this; 0 = every step.
  # eta: fresh noise per step, DDIM's η: ddim, and flow euler (0..1; 0 = the ODE step).
  # cache: reuse of the DiT blocks' residual across steps (policy none | every | threshold).
  # extend_overlap: frames of the previous chunk that condition the next one (--extend).
  # reconstruction_guidance: with a frame/region condition, steer the generated part toward
  # agreeing with it (Ho et al. 2022; one extra backward pass per step; 0 = replacement only;
  # 4–8 fixes seams on exact denoisers, no gain measured on the under-trained demo).
  c.sample = dict(steps=30, guidance=4.0, guidance_rescale=0.0, guidance_min_noise=0.0,
                  eta=0.0, fps=8, sampler="",
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
_FRACTION_BELOW_ONE = ("in [0, 1)", lambda v: 0 <= v < 1)
_SHARE = ("in (0, 1]", lambda v: 0 < v <= 1)
_MESH_AXIS = ("-1 (the remaining devices) or >= 1", lambda v: v == -1 or v >= 1)
_ANY = ("finite", lambda v: True)
NUMERIC_RANGES = {
    "seed": _NON_NEGATIVE,
    **{f"model.{k}": _COUNT for k in ("width", "depth", "num_heads", "patch_size", "channels",
                                      "text_dim", "time_frequency_dim")},
    "model.mlp_ratio": _POSITIVE, "model.time_embed_dim": _NON_NEGATIVE,
    "model.head_mlp_ratio": _NON_NEGATIVE, "model.registers": _NON_NEGATIVE,
    "model.norm_eps": _POSITIVE, "model.lora_rank": _NON_NEGATIVE,
    "model.lora_alpha": _NON_NEGATIVE, "model.text_layers": _NON_NEGATIVE,
    "model.text_conv": _NON_NEGATIVE,
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
    "diffusion.frame_difference_weight": _NON_NEGATIVE,
    **{f"data.{k}": _COUNT for k in ("num_frames", "height", "width", "buckets.multiple",
                                     "buckets.frame_stride", "synthetic.num_clips",
                                     "synthetic.num_objects")},
    **{f"data.{k}": _NON_NEGATIVE for k in (
        "seed", "num_threads", "prefetch", "filters.min_duration", "filters.max_duration",
        "filters.min_resolution", "filters.min_motion", "filters.max_motion",
        "synthetic.speed", "synthetic.camera_speed")},
    "data.buckets.aspect_ratios": _POSITIVE, "data.recaption.prob": _FRACTION,
    "data.synthetic.radius": ("in (0, 0.5]", lambda v: 0 < v <= 0.5),
    "data.synthetic.suite_object_counts": _COUNT,
    "data.synthetic.bounce_clearance": (">= 0.1", lambda v: v >= 0.1),
    **{f"train.{k}": _COUNT for k in ("num_steps", "batch_size", "log_every",
                                      "grad_accum_steps")},
    "train.learning_rate": _POSITIVE, "train.warmup_steps": _NON_NEGATIVE,
    "train.final_lr_fraction": _FRACTION, "train.weight_decay": _NON_NEGATIVE,
    "train.adam_b1": _FRACTION_BELOW_ONE, "train.adam_b2": _FRACTION_BELOW_ONE,
    "train.adam_eps": _POSITIVE,
    "train.grad_clip_norm": _POSITIVE, "train.ema_decay": _FRACTION,
    "train.caption_dropout": _FRACTION,
    **{f"train.frame_masks.{k}": _FRACTION for k in ("image_head", "head", "ends")},
    "sample.steps": _COUNT, "sample.fps": _POSITIVE, "sample.cache.every": _COUNT,
    **{f"sample.{k}": _NON_NEGATIVE for k in ("guidance", "eta", "shift_base_tokens",
                                              "cache.threshold", "extend_overlap",
                                              "reconstruction_guidance")},
    "sample.guidance_rescale": _FRACTION, "sample.guidance_min_noise": _FRACTION_BELOW_ONE,
    "sample.shift": _POSITIVE,
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


def check_choice(key: str, value, allowed) -> None:
  """The one wording of a value outside its choices; owners of each section call it."""
  if value not in allowed:
    raise ConfigError(f"{key}={value!r} is not one of {tuple(allowed)}")


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """`configs/x.py[:variant]` → `get_config(variant)`, as `--config` reads it."""
  file, _, arg = path.partition(":")
  spec = importlib.util.spec_from_file_location("_videogen_config", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()
