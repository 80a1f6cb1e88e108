"""The optimizer's pieces, without training: the learning-rate schedule, the weight-decay mask
and the EMA update that both the DiT and the VAE tasks use."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from videogen.config import base_config
from videogen.training import state as state_lib


def _train(**overrides) -> ml_collections.ConfigDict:
  train = base_config().train
  train.update(overrides)
  return train


def test_learning_rate_warms_up_linearly_then_cosine_decays_to_the_final_fraction():
  schedule = state_lib.learning_rate_schedule(
      _train(learning_rate=1e-3, warmup_steps=10, num_steps=110, final_lr_fraction=0.1))
  lr = lambda step: float(schedule(step))  # noqa: E731
  assert lr(0) == 0.0
  assert lr(5) == pytest.approx(5e-4, rel=1e-6)
  assert lr(10) == pytest.approx(1e-3, rel=1e-6)
  # Halfway through the cosine: final + (peak - final) / 2.
  assert lr(60) == pytest.approx(1e-4 + 0.5 * 9e-4, rel=1e-5)
  assert lr(110) == pytest.approx(1e-4, rel=1e-5)
  assert lr(500) == pytest.approx(1e-4, rel=1e-5)  # past num_steps it stays at the floor
  values = [lr(s) for s in range(10, 111)]
  assert all(a >= b for a, b in zip(values, values[1:]))


def test_a_flat_schedule_is_the_same_program_for_any_run_length():
  """final_lr_fraction=1: warm-up then flat, the cosine schedule's values exactly, and a
  step program that does not depend on num_steps (a longer resumed run hits the cache)."""
  flat = lambda n: _train(learning_rate=1e-3, warmup_steps=10, num_steps=n,  # noqa: E731
                          final_lr_fraction=1.0)
  cosine = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 10, 100, 1e-3)
  for step in (0, 5, 10, 50, 99, 500):
    assert float(state_lib.learning_rate_schedule(flat(100))(step)) == float(cosine(step))
  program = lambda n: jax.jit(state_lib.learning_rate_schedule(flat(n))).lower(0).as_text()  # noqa
  assert program(100) == program(100_000)


def test_weight_decay_applies_to_matrices_only():
  train = _train(learning_rate=0.5, warmup_steps=0, weight_decay=0.1, num_steps=10)
  tx = state_lib.make_optimizer(train)
  params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))},
            "norm": {"scale": jnp.ones((2,))}}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  # Zero gradients: Adam's part is 0, so the update is -lr * weight_decay * p where decayed.
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.05 * np.ones((3, 2)), rtol=1e-6)
  np.testing.assert_array_equal(updates["dense"]["bias"], np.zeros(2))
  np.testing.assert_array_equal(updates["norm"]["scale"], np.zeros(2))


def test_ema_update_keeps_a_frozen_leaf_bit_exact_and_moves_a_trained_one():
  frozen = jax.random.normal(jax.random.PRNGKey(0), (64, 64))
  ema = {"frozen": frozen, "trained": jnp.zeros((4,))}
  params = {"frozen": frozen, "trained": jnp.ones((4,))}
  for step in range(50):
    ema = state_lib.ema_update(ema, params, jnp.array(step), 0.999)
  np.testing.assert_array_equal(np.asarray(ema["frozen"]), np.asarray(frozen))
  # The plain d*e + (1-d)*p drifts off such a leaf by rounding; the shared formula must not.
  plain = frozen
  for step in range(50):
    d = state_lib.ema_decay(jnp.array(step), 0.999)
    plain = d * plain + (1 - d) * frozen
  assert np.any(np.asarray(plain) != np.asarray(frozen))
  # A trained leaf: 1 - prod(d_step) of the way from 0 to 1.
  expected = 1.0 - np.prod([min(0.999, (1 + s) / (10 + s)) for s in range(50)])
  np.testing.assert_allclose(ema["trained"], expected, rtol=1e-5)
