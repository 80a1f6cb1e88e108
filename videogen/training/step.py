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


def train_step(state: TrainState, batch: dict, *, model: TextToVideo, diffusion: Diffusion,
               tx: optax.GradientTransformation, null_tokens: jax.Array,
               caption_dropout: float, ema: float):
  """One optimisation step. `batch`: `video` (B,T,H,W,C), `tokens`/`token_mask` (B,L)."""
  rng, step_key = jax.random.split(state.rng)
  time_key, noise_key, drop_key = jax.random.split(step_key, 3)
  x0 = batch["video"]
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
  metrics = {"loss": loss, "grad_norm": optax.global_norm(grads)}
  new_state = state.replace(step=state.step + 1, params=params, ema=new_ema,
                            opt_state=opt_state, rng=rng)
  return new_state, metrics


def jit_train_step(config, model, diffusion, tx, null_tokens, state_shardings, batch_sharding,
                   rules):
  """`train_step` bound to a config and compiled with in/out shardings and donation."""
  step = functools.partial(train_step, model=model, diffusion=diffusion, tx=tx,
                           null_tokens=jnp.asarray(null_tokens),
                           caption_dropout=config.train.caption_dropout, ema=config.train.ema_decay)

  def with_rules(state, batch):
    with nn.logical_axis_rules(rules):
      return step(state, batch)

  batch_shardings = {"video": batch_sharding, "tokens": batch_sharding,
                     "token_mask": batch_sharding}
  return jax.jit(with_rules, in_shardings=(state_shardings, batch_shardings),
                 out_shardings=(state_shardings, None), donate_argnums=(0,))
