"""The jitted train step: one pure function of (state, batch) with explicit shardings.

The state's buffers are donated: the new state reuses the old one's memory.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from videogen.diffusion.conditions import training_frame_masks
from videogen.diffusion.objectives import Diffusion
from videogen.models import camera, lora
from videogen.models.text_to_video import TextToVideo
from videogen.text.conditioning import encode_tokens
from videogen.training.state import TrainState, ema_update, next_state
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


def text_input(batch: dict, text_params, text_encoder) -> tuple[jax.Array, jax.Array]:
  """What the DiT reads: token ids (its own embedding), a frozen encoder's states computed
  here, or states pre-computed by `videogen.encode_text` (the same values either way)."""
  if "text_embedding" in batch:
    return batch["text_embedding"], batch["text_mask"]
  tokens, mask = batch["tokens"], batch["token_mask"]
  if text_encoder is None:
    return tokens, mask
  return jax.lax.stop_gradient(encode_tokens(text_encoder.model, text_params, tokens, mask)), mask


def drop_captions(key, text, mask, probability: float, null_text):
  """Caption dropout, which trains the unconditional branch used by CFG: `drop` flags rows
  for the DiT's own null embedding, or (null="empty") they become the encoded empty prompt."""
  drop = jax.random.bernoulli(key, probability, (text.shape[0],))
  if null_text is not None:
    null, null_mask = null_text
    rows = drop.reshape((-1,) + (1,) * (text.ndim - 1))
    text = jnp.where(rows, null.astype(text.dtype), text)
    mask = jnp.where(drop[:, None], null_mask, mask)
  return text, mask, drop


def accumulated_value_and_grad(loss_fn, params, inputs, micro_batches: int):
  """Mean loss and gradient of `loss_fn(params, inputs)` over `micro_batches` equal slices of
  the batch axis, computed one slice at a time (`lax.scan`): the activation memory of one
  micro-batch. Slices are strided (rows i, i+m, …) so each stays spread over the devices."""
  if micro_batches == 1:
    return jax.value_and_grad(loss_fn)(params, inputs)
  sliced = jax.tree.map(lambda a: a.reshape(a.shape[0] // micro_batches, micro_batches,
                                            *a.shape[1:]).swapaxes(0, 1), inputs)

  def body(total, micro):
    return jax.tree.map(jnp.add, total, jax.value_and_grad(loss_fn)(params, micro)), None

  zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
  (loss, grads), _ = jax.lax.scan(body, zeros, sliced)
  return jax.tree.map(lambda v: v / micro_batches, (loss, grads))


def given_frames(key, x0: jax.Array, kind: str, probabilities: dict | None):
  """`(B, T, 1, 1, 1)` mask of the frames shown to a frame-conditioned model this step (an
  Open-Sora-style random mask per clip), or None for an unconditioned model."""
  if kind == "none":
    return None
  masks = training_frame_masks(key, x0.shape[0], x0.shape[1], probabilities or {})
  return masks[:, :, None, None, None]


def self_condition_estimate(key, first_pass, like: jax.Array) -> jax.Array:
  """Self-conditioning's extra input (Chen et al. 2022, "Analog Bits"): on a random half of
  the steps the model's own x0 estimate from `first_pass()`, a pass without gradient; on the
  other half zeros, what the sampler's first step reads. `lax.cond` skips the pass's compute
  on the zero half, so it costs about half a forward a step on average."""
  return jax.lax.cond(jax.random.bernoulli(key), lambda: jax.lax.stop_gradient(first_pass()),
                      lambda: jnp.zeros_like(like))


def train_step(state: TrainState, batch: dict, frozen=(None, None), *, model: TextToVideo,
               diffusion: Diffusion, tx: optax.GradientTransformation, null_text,
               caption_dropout: float, ema: float, vae=None, text_encoder=None,
               micro_batches: int = 1, adapters_only: bool = False,
               frame_masks: dict | None = None, skip_nonfinite: bool = False):
  """One optimisation step. `batch`: `video` (B,T,H,W,C) or `latent_moments`, and
  `tokens`/`token_mask` (B,L) or `text_embedding`/`text_mask`. `frozen`: the frozen VAE's
  and text encoder's params (or None). `adapters_only`: no gradient flows to the non-LoRA
  params (`train.trainable="lora"`; the optimizer leaves them unchanged too).
  `skip_nonfinite`: a step with a non-finite loss or gradient leaves params, EMA and optimizer
  state unchanged; `metrics["nonfinite"]` is 1 for it either way."""
  vae_params, text_params = frozen
  rng, step_key = jax.random.split(state.rng)
  time_key, noise_key, drop_key, latent_key, mask_key = jax.random.split(step_key, 5)
  x0 = clean_sample(batch, vae_params, latent_key, vae)
  n = x0.shape[0]
  text, text_mask = text_input(batch, text_params, text_encoder)
  text, text_mask, drop = drop_captions(drop_key, text, text_mask, caption_dropout, null_text)

  t = diffusion.sample_time(time_key, n)
  noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
  x_t = diffusion.corrupt(x0, noise, t)
  given = given_frames(mask_key, x0, model.frame_condition, frame_masks)
  cameras = camera.at_frames(batch.get("camera"), x0.shape[1]) if model.spec.camera else None
  frames = None if given is None else (x0, given)
  estimate = None
  if model.self_condition:  # its own key: the other draws match an unconditioned model's
    t_net = diffusion.network_time(t)
    estimate = self_condition_estimate(
        jax.random.fold_in(step_key, 1), lambda: diffusion.x0_estimate(model.apply(
            {"params": state.params}, x_t, t_net, text, text_mask, drop, frames,
            cameras=cameras), x_t, t_net), x_t)

  def loss_fn(params, inputs):
    x_t, t, text, text_mask, drop, x0, noise, given, cameras, estimate = inputs
    if adapters_only:  # spares the backward pass the frozen weights' gradients
      params = jax.tree_util.tree_map_with_path(
          lambda path, p: p if lora.is_lora_path(path) else jax.lax.stop_gradient(p), params)
    frames = None if given is None else (x0, given)
    prediction = model.apply({"params": params}, x_t, diffusion.network_time(t), text,
                             text_mask, drop, frames, estimate, cameras=cameras)
    if diffusion.is_flow:
      prediction = diffusion.velocity(prediction, x_t, t)
    # Given frames are inputs, not targets: the loss covers the generated ones.
    return diffusion.loss(prediction, x0, noise, t, None if given is None else 1.0 - given)

  # Every random draw above covers the whole batch, so accumulation changes only the order
  # of the sums, not the maths.
  loss, grads = accumulated_value_and_grad(
      loss_fn, state.params,
      (x_t, t, text, text_mask, drop, x0, noise, given, cameras, estimate),
      micro_batches)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_ema = ema_update(state.ema, params, state.step, ema)
  grad_norm = optax.tree.norm(grads)
  new_state, nonfinite = next_state(state, params, new_ema, opt_state, rng, loss, grad_norm,
                                    skip_nonfinite)
  metrics = {"loss": loss, "grad_norm": grad_norm, "nonfinite": nonfinite}
  return new_state, metrics


def jit_train_step(config, model, diffusion, tx, null_text, state_shardings, batch_sharding,
                   rules, vae=None, text_encoder=None):
  """`train_step` bound to a config and compiled with in/out shardings and donation.

  Returns `step(state, batch)`; frozen VAE and text-encoder params are passed in (not baked
  in as constants) with their own shardings."""
  step = functools.partial(train_step, model=model, diffusion=diffusion, tx=tx,
                           null_text=null_text, caption_dropout=config.train.caption_dropout,
                           ema=config.train.ema_decay, vae=vae, text_encoder=text_encoder,
                           micro_batches=config.train.grad_accum_steps,
                           adapters_only=config.train.trainable == "lora",
                           frame_masks=config.train.frame_masks.to_dict(),
                           skip_nonfinite=config.train.nonfinite == "skip")

  def with_rules(state, batch, frozen):
    with nn.logical_axis_rules(rules):
      return step(state, batch, frozen)

  frozen = (vae.params if vae is not None else None,
            text_encoder.params if text_encoder is not None else None)
  frozen_shardings = jax.tree.map(lambda x: x.sharding, frozen)
  compiled = jax.jit(with_rules, in_shardings=(state_shardings, batch_sharding, frozen_shardings),
                     out_shardings=(state_shardings, None), donate_argnums=(0,))
  def step_fn(state, batch):
    return compiled(state, batch, frozen)

  step_fn.jitted = compiled  # exposes the compile cache (one program per batch shape)
  step_fn.frozen = frozen    # … and its last argument, for ahead-of-time lowering
  return step_fn
