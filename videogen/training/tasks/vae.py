"""The `vae` task, training the video autoencoder: reconstruction + KL, an optional 3D patch
GAN, held-out PSNR/SSIM, and the latent statistics saved with each checkpoint. Plugged into
the shared loop as a `Task`.

With the discriminator on, params are `{"vae", "discriminator"}` under one optax
`multi_transform`, and one step updates both: the VAE on L_rec + w_kl·KL + λ·w·L_G, the
discriminator on the hinge loss. λ is the VQGAN adaptive weight ‖∇L_rec‖ / ‖∇L_G‖ at the
decoder's last layer; both adversarial terms are zero before `vae.disc.start_step`.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from videogen.data import pipeline
from videogen.training import state as state_lib
from videogen.training.tasks.base import Task
from videogen.vae import losses
from videogen.vae.discriminator import PatchDiscriminator3D
from videogen.vae.latents import example_video, measure_latent_stats
from videogen.vae.latents import init_params as init_vae_params
from videogen.vae.model import Autoencoder, spec_from_config


def decoder_last_kernel(vae_params):
  """The kernel of the layer that writes pixels (where the adaptive weight is measured)."""
  decoder = vae_params.get("decoder", vae_params.get("spatial_decoder"))
  return decoder["conv_out"]["conv"]["kernel"]


def _vae_loss_terms(vae_params, disc_params, x, key, *, model, disc, vae_config):
  """(L_rec + w_kl·KL, L_G, metrics) for one batch."""
  recon, mean, logvar = model.apply({"params": vae_params}, x,
                                    key if vae_config.sample_posterior else None)
  rec = losses.reconstruction_loss(x, recon, vae_config.recon_loss)
  kl = losses.kl_loss(mean, logvar)
  gan = (losses.generator_adversarial_loss(disc.apply({"params": disc_params}, recon))
         if disc is not None else jnp.zeros(()))
  return rec + vae_config.kl_weight * kl, gan, (recon, {"rec_loss": rec, "kl": kl})


def _plain_gradients(params, x, key, step, *, model, vae_config):
  """Reconstruction + KL only: (loss, grads, metrics)."""
  del step

  def loss_fn(vae_params):
    main, _, (_, metrics) = _vae_loss_terms(vae_params, None, x, key, model=model, disc=None,
                                            vae_config=vae_config)
    return main, metrics
  (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  return loss, grads, metrics


def _adversarial_gradients(params, x, key, step, *, model, disc, vae_config):
  """VAE and discriminator gradients of one GAN step: (loss, grads, metrics)."""
  active = (step >= vae_config.disc.start_step).astype(jnp.float32)

  def terms(vae_params):
    main, gan, aux = _vae_loss_terms(vae_params, params["discriminator"], x, key,
                                     model=model, disc=disc, vae_config=vae_config)
    return (main, gan), aux
  # One forward, two backward passes: the adaptive weight needs each term's own gradient.
  (main, gan), vjp, (recon, metrics) = jax.vjp(terms, params["vae"], has_aux=True)
  main_grads, = vjp((jnp.ones(()), jnp.zeros(())))
  gan_grads, = vjp((jnp.zeros(()), jnp.ones(())))
  weight = vae_config.disc.weight * (
      losses.adaptive_weight(optax.tree.norm(decoder_last_kernel(main_grads)),
                             optax.tree.norm(decoder_last_kernel(gan_grads)))
      if vae_config.disc.adaptive else 1.0)
  vae_grads = jax.tree.map(lambda a, b: a + active * weight * b, main_grads, gan_grads)

  def disc_loss_fn(disc_params):
    real = disc.apply({"params": disc_params}, x)
    fake = disc.apply({"params": disc_params}, jax.lax.stop_gradient(recon))
    return losses.hinge_discriminator_loss(real, fake)
  disc_loss, disc_grads = jax.value_and_grad(disc_loss_fn)(params["discriminator"])
  grads = {"vae": vae_grads, "discriminator": jax.tree.map(lambda g: active * g, disc_grads)}
  metrics = {**metrics, "gan_loss": gan, "disc_loss": disc_loss, "gan_weight": weight * active}
  return main + active * weight * gan, grads, metrics


def vae_train_step(state, batch, *, model, disc, tx, vae_config, ema,
                   skip_nonfinite: bool = False):
  rng, key = jax.random.split(state.rng)
  gradients = (functools.partial(_plain_gradients, model=model, vae_config=vae_config)
               if disc is None else
               functools.partial(_adversarial_gradients, model=model, disc=disc,
                                 vae_config=vae_config))
  loss, grads, metrics = gradients(state.params, batch["video"], key, state.step)
  params = state.params
  updates, opt_state = tx.update(grads, state.opt_state, params)
  params = optax.apply_updates(params, updates)
  new_ema = state_lib.ema_update(state.ema, params, state.step, ema)
  grad_norm = optax.tree.norm(grads)
  new_state, nonfinite = state_lib.next_state(state, params, new_ema, opt_state, rng, loss,
                                              grad_norm, skip_nonfinite)
  return new_state, {**metrics, "loss": loss, "grad_norm": grad_norm, "nonfinite": nonfinite}


def _make_optimizer(config, with_disc: bool) -> optax.GradientTransformation:
  vae_tx = state_lib.make_optimizer(config.train)
  if not with_disc:
    return vae_tx
  disc_train = ml_collections.ConfigDict(config.train.to_dict())
  disc_train.learning_rate = config.vae.disc.learning_rate
  disc_tx = state_lib.make_optimizer(disc_train)
  return optax.multi_transform({"vae": vae_tx, "discriminator": disc_tx},
                               {"vae": "vae", "discriminator": "discriminator"})


def vae_task(config: ml_collections.ConfigDict) -> Task:
  model = Autoencoder(spec_from_config(config.vae))
  disc_config = config.vae.disc
  disc = (PatchDiscriminator3D(disc_config.channels, disc_config.num_layers)
          if disc_config.enabled else None)
  tx = _make_optimizer(config, disc is not None)

  def init_params(key):
    vae_key, disc_key = jax.random.split(key)
    vae_params = init_vae_params(model, vae_key)
    if disc is None:
      return vae_params
    return {"vae": vae_params,
            "discriminator": disc.init(disc_key, example_video(model.spec))["params"]}

  def vae_params(params):
    return params["vae"] if disc is not None else params

  def build_step(state_shardings, batch_sharding, rules):
    step = functools.partial(vae_train_step, model=model, disc=disc, tx=tx,
                             vae_config=config.vae, ema=config.train.ema_decay,
                             skip_nonfinite=config.train.nonfinite == "skip")

    def with_rules(state, batch):
      with nn.logical_axis_rules(rules):
        return step(state, {"video": batch["video"]})
    return jax.jit(with_rules, in_shardings=(state_shardings, batch_sharding),
                   out_shardings=(state_shardings, None), donate_argnums=(0,))

  # Both sets are prefixes of one held-out stream: render it once.
  clips = pipeline.held_out_videos(config, max(config.vae.eval_clips, config.vae.stats_clips))
  held_out, stats_clips = clips[:config.vae.eval_clips], clips[:config.vae.stats_clips]
  reconstruct = jax.jit(lambda p, x: model.apply({"params": p}, x)[0])

  def evaluate(state):
    """PSNR and SSIM of EMA reconstructions of held-out clips (never trained on)."""
    recon = reconstruct(vae_params(state.ema), held_out)
    return {"eval_psnr": float(losses.psnr(held_out, recon).mean()),
            "eval_ssim": float(losses.ssim(held_out, recon).mean())}

  def metadata(state):
    return {"latent_stats": measure_latent_stats(model, vae_params(state.ema), stats_clips,
                                                 config.vae.chunk_frames)}

  # The init runs once; unoptimised it compiles ~5x faster on CPU, to the same values (checked
  # bit for bit on the test VAEs; the DiT's init would differ in the last bits, so it keeps O2).
  fast_init = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
  return Task(init_params=init_params, tx=tx, build_step=build_step, evaluate=evaluate,
              metadata=metadata, init_compiler_options=fast_init)
