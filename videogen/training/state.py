"""Train state, optimizer, and sharded creation of both.

The state is created *directly sharded*: `jax.eval_shape` gives the abstract, logically
annotated tree, the rules turn its names into `NamedSharding`s, and `jax.jit(init,
out_shardings=...)` materialises every shard where it lives. Nothing is built on one device.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from videogen.config import ConfigError
from videogen.models import lora


class TrainState(struct.PyTreeNode):
  step: jax.Array
  params: Any
  ema: Any          # exponential moving average of params; what sampling and export use
  opt_state: Any
  rng: jax.Array    # raw uint32 PRNG key, split once per step


def learning_rate_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up, then cosine decay to `final_lr_fraction`. A flat tail (fraction 1) does
  not depend on `num_steps`, so a resumed run with a longer `num_steps` compiles the same
  step program (a persistent-cache hit) and takes the same values."""
  if train.final_lr_fraction == 1.0:
    return optax.linear_schedule(0.0, train.learning_rate, train.warmup_steps)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=train.learning_rate, warmup_steps=train.warmup_steps,
      decay_steps=max(train.num_steps, train.warmup_steps + 1),
      end_value=train.learning_rate * train.final_lr_fraction)


TRAINABLE = ("all", "lora")


def make_optimizer(train: ml_collections.ConfigDict,
                   lora_rank: int = 0) -> optax.GradientTransformation:
  """Global-norm clipping → AdamW (decay on matrices only) with warmup + cosine.

  `train.trainable="lora"`: that chain sees only the LoRA adapters (`model.lora_rank` of
  them); every other param gets a zero update and no optimizer state."""
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  tx = optax.chain(
      optax.clip_by_global_norm(train.grad_clip_norm),
      optax.adamw(learning_rate_schedule(train), b1=train.adam_b1, b2=train.adam_b2,
                  eps=train.adam_eps, weight_decay=train.weight_decay, mask=decay_mask))
  if train.trainable not in TRAINABLE:
    raise ConfigError(f"train.trainable={train.trainable!r} is not one of {TRAINABLE}")
  if train.trainable == "all":
    return tx
  if not lora_rank:
    raise ConfigError("train.trainable='lora' trains only LoRA adapters, and there are none: "
                      "set model.lora_rank > 0")
  labels = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: "adapter" if lora.is_lora_path(path) else "frozen", params)
  return optax.multi_transform({"adapter": tx, "frozen": optax.set_to_zero()}, labels)


def ema_decay(step: jax.Array, decay: float) -> jax.Array:
  """EMA warm-up: early steps average over a short horizon, so short runs are usable."""
  step = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema, params, step: jax.Array, decay: float):
  """The EMA after one step: `e + (1 - d)(p - e)` with `d = ema_decay(step, decay)`.

  Written this way, not `d e + (1 - d) p`, a leaf that equals its EMA (a frozen one) keeps
  it bit for bit."""
  d = ema_decay(step, decay)
  return jax.tree.map(lambda e, p: e + (1 - d) * (p - e), ema, params)


def next_state(state: TrainState, params, ema, opt_state, rng, loss: jax.Array,
               grad_norm: jax.Array, skip_nonfinite: bool) -> tuple[TrainState, jax.Array]:
  """(the state after one update, `nonfinite`: 1.0 when the loss or gradient norm is not
  finite). With `skip_nonfinite` such a step keeps the old params, EMA and optimizer
  moments (`train.nonfinite="skip"`); the step count and RNG move on either way."""
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  if skip_nonfinite:
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
    params, ema, opt_state = (keep(params, state.params), keep(ema, state.ema),
                              keep(opt_state, state.opt_state))
  new_state = state.replace(step=state.step + 1, params=params, ema=ema, opt_state=opt_state,
                            rng=rng)
  return new_state, 1.0 - finite.astype(jnp.float32)


def _init_boxed(init_params, tx, key: jax.Array) -> TrainState:
  init_key, rng = jax.random.split(key)
  params = init_params(init_key)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema=params,
                    opt_state=tx.init(params), rng=rng)


def state_shardings(init_params, tx, mesh, rules):
  """(abstract unboxed state, its NamedShardings) without allocating anything.

  `init_params(key)` returns the model's logically boxed params (`model.init(...)["params"]`)."""
  abstract = jax.eval_shape(lambda k: _init_boxed(init_params, tx, k), jax.random.PRNGKey(0))
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, rules)
  return nn.meta.unbox(abstract), shardings


def create_train_state(init_params, tx, seed: int, mesh, rules,
                       compiler_options: dict | None = None) -> tuple[TrainState, Any]:
  """Initialises the state sharded over `mesh`; same seed → same values on any mesh.
  `compiler_options`: XLA options for compiling the init (e.g. a lower optimisation level)."""
  _, shardings = state_shardings(init_params, tx, mesh, rules)
  init = jax.jit(lambda k: nn.meta.unbox(_init_boxed(init_params, tx, k)),
                 out_shardings=shardings)
  key = jax.random.PRNGKey(seed)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    if compiler_options:
      init = init.lower(key).compile(compiler_options)
    return init(key), shardings
