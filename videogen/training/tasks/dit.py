"""The `dit` task: the text-to-video denoiser, in pixel space or, when `vae.checkpoint` names a
trained VAE, in its normalised latent space (encoded inside the step, or read pre-encoded),
and conditioned through `config.text` (`videogen.text.conditioning`).
"""
import jax
import ml_collections
import optax

from videogen.config import ConfigError
from videogen.data.pipeline import source_captions
from videogen.data.synthetic import VOCABULARY
from videogen.diffusion.objectives import from_config as diffusion_from_config
from videogen.models.text_to_video import build_model, example_inputs
from videogen.text import embedding_cache
from videogen.text.conditioning import TOKENIZER_TRAINING_CAPTIONS, TextConditioning
from videogen.text.tokenizer import TokenFeatures
from videogen.training import state as state_lib
from videogen.training.step import jit_train_step
from videogen.training.tasks.base import Task
from videogen.vae.latents import FrozenVae


def text_features(config, conditioning):
  """The pipeline's caption → arrays map: token ids, or an `encode_text` cache lookup."""
  path = config.text.embeddings_path
  if not path:
    return TokenFeatures(conditioning.tokenizer)
  if conditioning.encoder is None:
    raise ConfigError("text.embeddings_path needs a frozen encoder (text.encoder='t5')")
  try:
    embedding_cache.check_fingerprint(path, conditioning.fingerprint())
  except (ValueError, FileNotFoundError) as e:
    raise ConfigError(str(e)) from None
  return embedding_cache.TextEmbeddingCache(path, config.text.max_length)


def dit_task(config: ml_collections.ConfigDict, mesh, rules, workdir: str | None = None) -> Task:
  conditioning = TextConditioning.create(
      config, workdir, mesh, rules, vocabulary=VOCABULARY,
      training_captions=lambda: source_captions(config, TOKENIZER_TRAINING_CAPTIONS))
  model = build_model(config, conditioning.model_vocab_size, conditioning.dim)
  tx = state_lib.make_optimizer(config.train, config.model.lora_rank)
  diffusion = diffusion_from_config(config.diffusion)
  vae = None
  if config.vae.checkpoint:
    vae = FrozenVae.load(config.vae.checkpoint, mesh, rules)
    check_latent_model(config, vae)
  inputs = example_inputs(config, model, latent_shape=_latent_shape(config, vae))
  null_text = conditioning.null_text()

  def build_step(state_shardings, batch_sharding, rules):
    return jit_train_step(config, model, diffusion, tx, null_text, state_shardings,
                          batch_sharding, rules, vae=vae, text_encoder=conditioning.encoder)

  return Task(init_params=lambda key: model.init(key, *inputs)["params"], tx=tx,
              build_step=build_step, text_features=text_features(config, conditioning))


def _latent_shape(config, vae):
  if vae is None:
    return None
  return vae.latent_shape(config.data.num_frames, config.data.height, config.data.width)


def check_latent_model(config, vae) -> None:
  """The DiT must fit the VAE's latents: channels and patch divisibility, one clear line."""
  shape = _latent_shape(config, vae)
  if config.model.channels != shape[-1]:
    raise ConfigError(f"model.channels={config.model.channels} but the VAE at "
                      f"{config.vae.checkpoint!r} has {shape[-1]} latent channels")
  for axis, size, patch in zip(("frames", "height", "width"), shape, config.model.patch_size):
    if size % patch:
      raise ConfigError(f"latent {axis}={size} (of data shape {config.data.num_frames}×"
                        f"{config.data.height}×{config.data.width}) is not divisible by "
                        f"model.patch_size entry {patch}")

