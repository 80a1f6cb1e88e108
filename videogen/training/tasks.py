"""What `videogen.train` trains, chosen by `config.task`: the few pieces the loop needs.

`dit`: the text-to-video denoiser, in pixel space or, when `vae.checkpoint` names a trained
VAE, in its normalised latent space (encoded inside the step, or read pre-encoded).
`vae`: the video autoencoder (`videogen.vae.training`).
"""
import dataclasses
from typing import Any, Callable

import jax
import ml_collections
import optax

from videogen.data import pipeline
from videogen.diffusion.objectives import from_config as diffusion_from_config
from videogen.models.text_to_video import build_model, example_inputs
from videogen.training import state as state_lib
from videogen.training.step import jit_train_step


@dataclasses.dataclass
class Task:
  init_params: Callable[[jax.Array], Any]       # key → logically boxed params
  tx: optax.GradientTransformation
  build_step: Callable                          # (state_shardings, batch_sharding, rules) → step
  evaluate: Callable | None = None              # state → {metric: float}, at each checkpoint
  metadata: Callable | None = None              # state → JSON saved with each checkpoint


def dit_task(config: ml_collections.ConfigDict, mesh, rules) -> Task:
  tokenizer = pipeline.tokenizer_from_config(config)
  model = build_model(config, tokenizer.vocab_size)
  tx = state_lib.make_optimizer(config.train)
  diffusion = diffusion_from_config(config.diffusion)
  vae = None
  if config.vae.checkpoint:
    from videogen.vae.latents import FrozenVae
    vae = FrozenVae.load(config.vae.checkpoint, mesh, rules)
    check_latent_model(config, vae)
  inputs = example_inputs(config, latent_shape=_latent_shape(config, vae))
  null_tokens = tokenizer.encode([""])[0][0]

  def build_step(state_shardings, batch_sharding, rules):
    return jit_train_step(config, model, diffusion, tx, null_tokens, state_shardings,
                          batch_sharding, rules, vae=vae)

  return Task(init_params=lambda key: model.init(key, *inputs)["params"], tx=tx,
              build_step=build_step)


def _latent_shape(config, vae):
  if vae is None:
    return None
  return vae.latent_shape(config.data.num_frames, config.data.height, config.data.width)


def check_latent_model(config, vae) -> None:
  """The DiT must fit the VAE's latents: channels and patch divisibility, one clear line."""
  from videogen.config import ConfigError
  shape = _latent_shape(config, vae)
  if config.model.channels != shape[-1]:
    raise ConfigError(f"model.channels={config.model.channels} but the VAE at "
                      f"{config.vae.checkpoint!r} has {shape[-1]} latent channels")
  for axis, size, patch in zip(("frames", "height", "width"), shape, config.model.patch_size):
    if size % patch:
      raise ConfigError(f"latent {axis}={size} (of data shape {config.data.num_frames}×"
                        f"{config.data.height}×{config.data.width}) is not divisible by "
                        f"model.patch_size entry {patch}")


def build_task(config: ml_collections.ConfigDict, mesh, rules) -> Task:
  if config.task == "vae":
    from videogen.vae.training import vae_task
    return vae_task(config)
  return dit_task(config, mesh, rules)
