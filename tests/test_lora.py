"""LoRA adapters (videogen/models/lora.py): a fresh adapter is the base model, merging is
exact, only adapters train, and adapters round-trip through disk, export and `apply_adapter`."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_cli, tiny_config
from videogen import checkpoints
from videogen.config import ConfigError
from videogen.models import lora
from videogen.models.dit import DiT, DiTSpec
from videogen.training import loop

RANK, ALPHA = 4, 8.0


def _spec(layout="joint", **overrides):
  return DiTSpec(**{"width": 32, "depth": 2, "num_heads": 2, "patch_size": (1, 2, 2),
                    "layout": layout, **overrides})


def _inputs():
  keys = jax.random.split(jax.random.key(0), 2)
  x = jax.random.normal(keys[0], (2, 2, 4, 4, 3))
  context = jax.random.normal(keys[1], (2, 5, 8))
  return x, jnp.array([10.0, 700.0]), context, jnp.arange(5)[None] < jnp.array([[3], [5]])


def _init(spec, seed=0):
  return nn.unbox(DiT(spec).init(jax.random.key(seed), *_inputs())["params"])


def _perturbed(params, seed=1):
  """Every leaf (zero-initialised gates, output layer and LoRA B included) made non-zero."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [p + 0.2 * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, keys)])


@functools.cache
def _forward(spec):
  return jax.jit(lambda params, *inputs: DiT(spec).apply({"params": params}, *inputs))


def _apply(spec, params):
  return np.asarray(_forward(spec)(params, *_inputs()))


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("layout", ["joint", "expert", "factorized"])
def test_fresh_adapters_compute_the_base_model_exactly(layout):
  base_spec, lora_spec = _spec(layout), _spec(layout, lora_rank=RANK)
  fresh = _init(lora_spec)
  base, adapter = lora.split_adapter(fresh)
  _assert_trees_equal(base, _init(base_spec))  # adapters leave the base's init unchanged
  kernels = 4 * (2 if layout != "expert" else 1) * (2 if layout == "factorized" else 1)
  assert len(jax.tree.leaves(adapter)) == 2 * kernels  # q, k, v, out of every attention
  trained_base = _perturbed(base)
  np.testing.assert_array_equal(_apply(lora_spec, lora.with_adapter(trained_base, adapter)),
                                _apply(base_spec, trained_base))


@pytest.mark.parametrize("layout,scan,remat", [("joint", True, "none"), ("expert", True, "full"),
                                               ("factorized", False, "none")])
def test_merged_params_compute_the_adapted_model_and_unmerge_restores_the_base(layout, scan,
                                                                               remat):
  depth = 2 if scan else 1  # stacked kernels gain a leading layer axis; unrolled ones do not
  lora_spec = _spec(layout, lora_rank=RANK, lora_alpha=ALPHA, scan_layers=scan,
                    remat_policy=remat, depth=depth)
  base_spec = _spec(layout, scan_layers=scan, depth=depth)
  params = _perturbed(_init(lora_spec))
  merged = lora.merge(params, RANK, ALPHA)
  assert not any(lora.is_lora_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(merged))
  want = _apply(lora_spec, params)
  assert np.abs(want - _apply(base_spec, lora.split_adapter(params)[0])).max() > 1e-2
  np.testing.assert_allclose(_apply(base_spec, merged), want, atol=1e-5)
  restored = lora.unmerge(merged, lora.split_adapter(params)[1], RANK, ALPHA)
  assert jax.tree.structure(restored) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(params)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_adapter_round_trips_through_disk_and_apply_adapter_reproduces_the_lora_model(tmp_path):
  lora_spec, base_spec = _spec(lora_rank=RANK, lora_alpha=ALPHA), _spec()
  params = _perturbed(_init(lora_spec))
  base, adapter = lora.split_adapter(params)
  lora.save_adapter(str(tmp_path / "a"), adapter, lora.adapter_meta(lora_spec))
  loaded, meta = lora.load_adapter(str(tmp_path / "a"), base)
  _assert_trees_equal(loaded, jax.device_get(adapter))
  assert meta == {"rank": RANK, "alpha": ALPHA, "base": lora.fingerprint(base_spec)}
  np.testing.assert_allclose(_apply(base_spec, lora.apply_adapter(base, str(tmp_path / "a"),
                                                                  base_spec)),
                             _apply(lora_spec, params), atol=1e-5)

  other = _spec(width=64)  # no kernel shape fits
  with pytest.raises(ValueError, match=r"self_attn/\w+_kernel has A .* do not fit its kernel") as error:
    lora.load_adapter(str(tmp_path / "a"), _init(other))
  assert "\n" not in str(error.value)
  with pytest.raises(ValueError, match=r"different base model: width=32 \(this model: 64\)"):
    lora.apply_adapter(_init(other), str(tmp_path / "a"), other)
  with pytest.raises(FileNotFoundError, match="no LoRA adapter"):
    lora.load_adapter(str(tmp_path / "missing"))


def test_lora_needs_adapters_and_an_existing_init_from(tmp_path):
  with pytest.raises(ConfigError, match="set model.lora_rank > 0"):
    loop.train(tiny_config(**{"train.trainable": "lora"}), str(tmp_path / "a"))
  with pytest.raises(ConfigError, match="train.init_from='nowhere' does not exist"):
    loop.train(tiny_config(**{"train.init_from": "nowhere"}), str(tmp_path / "b"))


def test_lora_fine_tune_from_a_base_trains_only_adapters_and_exports_them(tmp_path):
  """init_from an export → 3 steps with trainable="lora" → export --adapter_only."""
  from flax import traverse_util
  from videogen.parallel import mesh as mesh_lib
  from videogen.training import state as state_lib
  from videogen.training.tasks import build_task

  def initial_params(config):
    mesh = mesh_lib.create_mesh(config.mesh)
    rules = mesh_lib.rules_from_config(config.mesh)
    task = build_task(config, mesh, rules)
    state, _ = state_lib.create_train_state(task.init_params, task.tx, config.seed, mesh, rules)
    return jax.device_get(state.params)

  base_config = tiny_config(**{"seed": 7})
  base = _perturbed(initial_params(base_config))  # a "trained" base: gates awake
  checkpoints.export_params(str(tmp_path / "base"), base, base_config)
  config = tiny_config(**{"model.lora_rank": RANK, "train.trainable": "lora",
                          "train.init_from": str(tmp_path / "base"), "train.num_steps": 3,
                          "train.warmup_steps": 1, "checkpoint.every_steps": 100})
  fresh = traverse_util.flatten_dict(lora.split_adapter(initial_params(config))[1])

  final = jax.device_get(loop.train(config, str(tmp_path / "run")))
  for tree in (final.params, final.ema):  # the frozen base, bit for bit
    _assert_trees_equal(lora.split_adapter(tree)[0], base)
  trained = traverse_util.flatten_dict(lora.split_adapter(final.params)[1])
  assert trained.keys() == fresh.keys()
  for path, leaf in trained.items():
    assert not np.array_equal(leaf, fresh[path]), path  # every A and B has moved

  result = run_cli("videogen.export", "--workdir", str(tmp_path / "run"), "--output",
                   str(tmp_path / "adapter"), "--adapter_only", check=True)
  assert result.stdout.strip() == str(tmp_path / "adapter")
  exported, meta = lora.load_adapter(str(tmp_path / "adapter"), base)
  _assert_trees_equal(exported, lora.split_adapter(final.ema)[1])
  assert meta["rank"] == RANK and meta["base"]["width"] == config.model.width
  refused = run_cli("videogen.export", "--workdir", str(tmp_path / "base"), "--output",
                    str(tmp_path / "nothing"), "--adapter_only")
  assert refused.returncode == 2 and "has no LoRA adapters" in refused.stderr
