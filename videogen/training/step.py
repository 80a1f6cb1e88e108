"""The jitted train step: one pure function of (state, batch) with explicit shardings.

The state's buffers are donated: the new state reuses the old one's memory.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from videogen.diffusion.objectives import Diffusion
from videogen.models.text_to_video import TextToVideo
from videogen.training.state import TrainState, ema_decay
from videogen.vae.latents import latents_from_moments


def clean_sample(batch: dict, vae_params, key: jax.Array, vae) -> jax.Array:
  """The diffusion model's x0: pixels, or normalised VAE latents (encoded here by the frozen
  VAE, or pre-encoded moments from `videogen.encode_dataset`: the same draw either way)."""
  if vae is None:
    return batch["video"]
  if "latent_moments" in batch:
    moments = batch["latent_moments"]
  else:
    moments = vae.model.apply({"params": vae_params}, batch["video"], method="encode_moments")
  sample_key = key if vae.config.vae.sample_posterior else None
  return jax.lax.stop_gradient(latents_from_moments(moments, sample_key, vae.stats))


def train_step(state: TrainState, batch: dict, vae_params=None, *, model: TextToVideo,
               diffusion: Diffusion, tx: optax.GradientTransformation, null_tokens: jax.Array,
               caption_dropout: float, ema: float, vae=None):
  """One optimisation step. `batch`: `video` (B,T,H,W,C) or `latent_moments`, and
  `tokens`/`token_mask` (B,L)."""
  rng, step_key = jax.random.split(state.rng)
  time_key, noise_key, drop_key, latent_key = jax.random.split(step_key, 4)
  x0 = clean_sample(batch, vae_params, latent_key, vae)
  n = x0.shape[0]

  # Caption dropout to the null caption trains the unconditional branch used by CFG.
  drop = jax.random.bernoulli(drop_key, caption_dropout, (n,))[:, None]
  tokens = jnp.where(drop, null_tokens[None], batch["tokens"])
  token_mask = tokens != 0

  t = diffusion.sample_time(time_key, n)
  noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
  x_t = diffusion.corrupt(x0, noise, t)

  def loss_fn(params):
    prediction = model.apply({"params": params}, x_t, diffusion.network_time(t), tokens,
                             token_mask)
    return diffusion.loss(prediction, x0, noise, t)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  decay = ema_decay(state.step, ema)
  new_ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state.ema, params)
  metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
  new_state = state.replace(step=state.step + 1, params=params, ema=new_ema,
                            opt_state=opt_state, rng=rng)
  return new_state, metrics


def jit_train_step(config, model, diffusion, tx, null_tokens, state_shardings, batch_sharding,
                   rules, vae=None):
  """`train_step` bound to a config and compiled with in/out shardings and donation.

  Returns `step(state, batch)`; a frozen VAE's params are passed in (not baked in as
  constants) with their own shardings."""
  step = functools.partial(train_step, model=model, diffusion=diffusion, tx=tx,
                           null_tokens=jnp.asarray(null_tokens),
                           caption_dropout=config.train.caption_dropout, ema=config.train.ema_decay,
                           vae=vae)

  def with_rules(state, batch, vae_params):
    with nn.logical_axis_rules(rules):
      return step(state, batch, vae_params)

  vae_params = vae.params if vae is not None else None
  vae_shardings = jax.tree.map(lambda x: x.sharding, vae_params)
  compiled = jax.jit(with_rules, in_shardings=(state_shardings, batch_sharding, vae_shardings),
                     out_shardings=(state_shardings, None), donate_argnums=(0,))
  return lambda state, batch: compiled(state, batch, vae_params)
