"""A whole config checked at start-up: one ConfigError line, never a traceback deep in a model.

Each section is checked by the code that owns it (DiTSpec, VaeSpec, Diffusion, World, the
text path, the data sources, the eval report, the feature cache); this module calls them and
holds only the constraints across sections. It sits above every package it asks, so nothing
below imports it: videogen/cli.py calls it once the flags are parsed.
"""
import ml_collections

from videogen.config import ConfigError, check_choice, check_ranges
from videogen.data import pipeline
from videogen.diffusion import feature_cache, objectives, samplers
from videogen.eval import report
from videogen.models import text_to_video
from videogen.text import conditioning
from videogen.training.loop import NONFINITE
from videogen.training.tasks import TASKS
from videogen.vae import model as vae_model


def validate(config: ml_collections.ConfigDict) -> None:
  """Every numeric key's range (`config.NUMERIC_RANGES`), each section by its owner, then
  the constraints across sections."""
  check_ranges(config)
  check_choice("task", config.task, TASKS)
  check_choice("train.nonfinite", config.train.nonfinite, NONFINITE)
  data, model, mesh = config.data, config.model, config.mesh
  shape = (data.num_frames, data.height, data.width)
  vae_model.check_config(config.vae, shape if config.task == "vae" else None)
  text_to_video.spec_from_config(model)
  conditioning.check_config(config.text)
  pipeline.check_config(data)
  try:
    feature_cache.FeatureCache(config.sample.cache.policy)
    diffusion = objectives.from_config(config.diffusion)
    if config.sample.sampler:
      samplers.check_sampler(diffusion, config.sample.sampler)
    samplers.check_eta(diffusion, config.sample.sampler or samplers.default_sampler(diffusion),
                       config.sample.eta)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if model.sequence_parallel == "ulysses" and model.num_heads % (
      max(mesh.tensor, 1) * max(mesh.sequence, 1)):
    raise ConfigError(f"model.sequence_parallel='ulysses' splits heads over tensor × sequence: "
                      f"model.num_heads={model.num_heads} must divide by "
                      f"{mesh.tensor} × {mesh.sequence}")
  for key in ("text_layers", "text_conv"):
    if model.get(key, 0) and config.text.encoder != "embedding":
      raise ConfigError(f"model.{key}={model[key]} encodes the trainable caption embedding; "
                        f"text.encoder={config.text.encoder!r} reads a frozen encoder")
  if model.camera and data.source != "synthetic":
    raise ConfigError("model.camera trains on the synthetic source's rendered camera paths; "
                      f"data.source={data.source!r} has no cameras")
  if config.eval.every_steps:
    if data.source != "synthetic" or config.task != "dit":
      raise ConfigError("eval.every_steps evaluates on the synthetic world's benchmark: it "
                        "needs task='dit' and data.source='synthetic'")
    report.check_config(config.eval)
  if config.task == "dit" and not config.vae.checkpoint:
    # A latent-space DiT is checked against its VAE when the VAE loads.
    for axis, size, patch in zip(("num_frames", "height", "width"), shape, model.patch_size):
      if size % patch:
        raise ConfigError(f"data.{axis}={size} is not divisible by its model.patch_size "
                          f"entry {patch}")
  tile, overlap = config.vae.tile, config.vae.tile_overlap
  factor = 2 ** config.vae.spatial_levels
  if tile > 0 and (tile % factor or overlap % factor or not 0 <= overlap < tile):
    raise ConfigError(f"vae.tile={tile} and vae.tile_overlap={overlap} must be multiples of "
                      f"{factor} with 0 <= overlap < tile")
  if data.source == "latents" and not (data.latents_path and config.vae.checkpoint):
    raise ConfigError("data.source='latents' needs data.latents_path and vae.checkpoint")
