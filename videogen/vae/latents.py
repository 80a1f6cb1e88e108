"""The DiT's view of a trained VAE: frozen params, normalised latents, and their statistics.

Latents are normalised per channel, `(z - mean) / std`, with the statistics measured on data
after VAE training and stored with every VAE checkpoint (`metadata.latent_stats`), so the
diffusion model sees roughly unit-variance inputs whatever the VAE.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from videogen import checkpoints
from videogen.vae import chunked
from videogen.vae.model import Autoencoder, spec_from_config, split_moments


def example_video(spec, batch: int = 1, frames: int | None = None, size: int | None = None):
  frames = frames or 1 + spec.temporal_factor
  size = size or spec.spatial_factor
  return jnp.zeros((batch, frames, size, size, spec.codecs[0].in_channels), jnp.float32)


def init_params(model: Autoencoder, key: jax.Array):
  """Boxed (logically named) params; shapes do not depend on the clip shape."""
  return model.init(key, example_video(model.spec))["params"]


def param_shardings(model: Autoencoder, mesh, rules):
  abstract = jax.eval_shape(lambda k: init_params(model, k), jax.random.PRNGKey(0))
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, rules)
  return nn.meta.unbox(abstract), shardings


def measure_latent_stats(model: Autoencoder, params, videos: np.ndarray,
                         chunk_frames: int | None = None) -> dict[str, list[float]]:
  """Per-channel mean and std of the posterior means of `videos` (the normaliser)."""
  moments = chunked.encode(model, params, jnp.asarray(videos), chunk_frames, on_host=True)
  mean = moments[..., :model.spec.latent_channels].reshape(-1, model.spec.latent_channels)
  return {"mean": mean.mean(0).tolist(), "std": np.maximum(mean.std(0), 1e-6).tolist()}


def latents_from_moments(moments: jax.Array, key: jax.Array | None, stats) -> jax.Array:
  """Posterior moments → normalised latents; samples the posterior when `key` is given."""
  mean, logvar = split_moments(moments)
  z = mean if key is None else mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
  return (z - jnp.asarray(stats["mean"])) / jnp.asarray(stats["std"])


def denormalize(latents: jax.Array, stats) -> jax.Array:
  return latents * jnp.asarray(stats["std"]) + jnp.asarray(stats["mean"])


@dataclasses.dataclass
class FrozenVae:
  """A trained VAE loaded for a DiT: `model`, EMA `params` on the mesh, `config`, `stats`."""

  model: Autoencoder
  params: dict
  config: ml_collections.ConfigDict
  stats: dict

  @classmethod
  def load(cls, path: str, mesh, rules) -> "FrozenVae":
    config = checkpoints.load_config(path)
    if config.get("task") != "vae":
      raise checkpoints.CheckpointNotFoundError(
          f"vae.checkpoint={path!r} holds a {config.get('task', 'dit')!r} model, not a VAE")
    stats = checkpoints.load_metadata(path).get("latent_stats")
    if stats is None:
      raise checkpoints.CheckpointNotFoundError(
          f"vae.checkpoint={path!r} has no latent statistics (saved by an older version?)")
    model = Autoencoder(spec_from_config(config.vae))
    abstract, shardings = param_shardings(model, mesh, rules)
    with jax.set_mesh(mesh):
      params = checkpoints.load_ema_params(path, abstract, shardings)
    return cls(model, params, config, stats)

  def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    return (*self.model.spec.latent_shape(frames, height, width), self.model.spec.latent_channels)

  def _tiled(self, run, x, scale: float):
    vae, factor = self.config.vae, self.model.spec.spatial_factor
    if vae.tile <= 0:
      return run(x)
    unit = factor if scale > 1 else 1  # tile sizes are pixels; decode tiles latents
    return chunked.tiled(run, x, vae.tile // unit, vae.tile_overlap // unit, scale)

  def encode_moments(self, video) -> np.ndarray:
    """Video → posterior moments (host array), in temporal chunks of `vae.chunk_frames` and,
    when `vae.tile` > 0, in overlapping spatial tiles."""
    run = lambda v: chunked.encode(self.model, self.params, v, self.config.vae.chunk_frames,
                                   on_host=True)
    return self._tiled(run, video, 1 / self.model.spec.spatial_factor)

  def encode(self, video) -> np.ndarray:
    """Video in [-1, 1] → normalised latents (posterior means; host array)."""
    return np.asarray(latents_from_moments(jnp.asarray(self.encode_moments(video)), None,
                                           self.stats))

  def decode(self, latents) -> np.ndarray:
    """Normalised latents → video in [-1, 1] (host array), in temporal chunks of
    `vae.chunk_latents` and, when `vae.tile` > 0, in overlapping spatial tiles."""
    z = denormalize(jnp.asarray(latents), self.stats)
    run = lambda z: chunked.decode(self.model, self.params, z, self.config.vae.chunk_latents,
                                   on_host=True)
    return self._tiled(run, z, self.model.spec.spatial_factor)
