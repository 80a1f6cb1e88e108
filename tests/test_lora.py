"""LoRA adapters (videogen/models/lora.py): a fresh adapter is the base model, merging is
exact, only adapters train, and adapters round-trip through disk, export and `apply_adapter`."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import perturbed, run_cli, tiny_config
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


def _init(spec):
  return nn.unbox(DiT(spec).init(jax.random.key(0), *_inputs())["params"])


def _random(spec):
  """Random params for `spec` without running its initialisers."""
  abstract = jax.eval_shape(lambda: _init(spec))
  return perturbed(jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract))


@functools.cache
def _forward(spec):
  return jax.jit(lambda params, *inputs: DiT(spec).apply({"params": params}, *inputs))


def _apply(spec, params):
  return np.asarray(_forward(spec)(params, *_inputs()))


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_adapters_start_at_zero_and_leave_the_base_initialisation_unchanged():
  from videogen.models.attention import MultiHeadAttention
  x, context = jnp.ones((1, 6, 32)), jnp.ones((1, 5, 32))

  def init(rank):
    attention = MultiHeadAttention(num_heads=2, lora_rank=rank)
    return jax.jit(lambda key: nn.unbox(attention.init(key, x, context)["params"]))(
        jax.random.key(0))

  base, adapter = lora.split_adapter(init(RANK))
  _assert_trees_equal(base, init(0))
  assert sorted(adapter) == ["key_lora", "out_lora", "query_lora", "value_lora"]
  for name, fan_in in (("query_lora", 32), ("out_lora", 32)):
    a, b = adapter[name]["a"], adapter[name]["b"]
    assert a.shape[-1] == b.shape[0] == RANK
    np.testing.assert_array_equal(b, 0.0)  # B = 0: the update starts at exactly nothing
    assert 0 < float(jnp.abs(a).max()) <= fan_in ** -0.5  # A ~ U(±1/√fan_in), as peft


@pytest.mark.parametrize("layout", ["joint", "expert", "factorized"])
def test_zero_b_adapters_compute_the_base_model_exactly(layout):
  base_spec, lora_spec = _spec(layout), _spec(layout, lora_rank=RANK, lora_alpha=ALPHA)
  base, adapter = lora.split_adapter(_random(lora_spec))
  kernels = 4 * (2 if layout != "expert" else 1) * (2 if layout == "factorized" else 1)
  assert len(jax.tree.leaves(adapter)) == 2 * kernels  # q, k, v, out of every attention
  fresh = jax.tree_util.tree_map_with_path(
      lambda path, w: np.zeros_like(w) if path[-1].key == "b" else w, adapter)
  np.testing.assert_array_equal(_apply(lora_spec, lora.with_adapter(base, fresh)),
                                _apply(base_spec, base))


@pytest.mark.parametrize("layout,scan,remat", [("joint", True, "none"), ("expert", True, "full"),
                                               ("factorized", False, "none")])
def test_merged_params_compute_the_adapted_model_and_unmerge_restores_the_base(layout, scan,
                                                                               remat):
  depth = 2 if scan else 1  # stacked kernels gain a leading layer axis; unrolled ones do not
  lora_spec = _spec(layout, lora_rank=RANK, lora_alpha=ALPHA, scan_layers=scan,
                    remat_policy=remat, depth=depth)
  base_spec = _spec(layout, scan_layers=scan, depth=depth)
  params = _random(lora_spec)
  merged = lora.merge(params, RANK, ALPHA)
  assert not any(lora.is_lora_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(merged))
  want = _apply(lora_spec, params)
  assert np.abs(want - _apply(base_spec, lora.split_adapter(params)[0])).max() > 1e-2
  np.testing.assert_allclose(_apply(base_spec, merged), want, atol=1e-5)
  restored = lora.unmerge(merged, lora.split_adapter(params)[1], RANK, ALPHA)
  assert jax.tree.structure(restored) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(params)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  with pytest.raises(ValueError, match=f"do not fit its kernel .* at rank {RANK + 1}"):
    lora.merge(params, RANK + 1)


def test_adapter_round_trips_through_disk_and_apply_adapter_reproduces_the_lora_model(tmp_path):
  lora_spec, base_spec = _spec(lora_rank=RANK, lora_alpha=ALPHA), _spec()
  params = _random(lora_spec)
  base, adapter = lora.split_adapter(params)
  checkpoints.save_adapter(str(tmp_path / "a"), adapter, lora.adapter_meta(lora_spec))
  loaded, meta = checkpoints.load_adapter(str(tmp_path / "a"), base)
  _assert_trees_equal(loaded, jax.device_get(adapter))
  assert meta == {"rank": RANK, "alpha": ALPHA, "base": lora.fingerprint(base_spec)}
  applied = checkpoints.apply_adapter(base, str(tmp_path / "a"), base_spec)
  np.testing.assert_allclose(_apply(base_spec, applied), _apply(lora_spec, params), atol=1e-5)

  other = _spec(width=64)  # no kernel shape fits
  with pytest.raises(ValueError, match=r"_attn/\w+_kernel has A .* do not fit its kernel") as error:
    checkpoints.load_adapter(str(tmp_path / "a"), jax.eval_shape(lambda: _init(other)))
  assert "\n" not in str(error.value)
  with pytest.raises(ValueError, match=r"different base model: width=32 \(this model: 64\)"):
    checkpoints.apply_adapter(_random(other), str(tmp_path / "a"), other)
  with pytest.raises(FileNotFoundError, match="no LoRA adapter"):
    checkpoints.load_adapter(str(tmp_path / "missing"))


def test_lora_needs_adapters_and_init_from_a_base_of_the_same_model(tmp_path):
  """Each refusal is one ConfigError line, raised before anything compiles."""
  with pytest.raises(ConfigError, match="set model.lora_rank > 0"):
    loop.train(tiny_config(**{"train.trainable": "lora"}), str(tmp_path / "a"))
  with pytest.raises(ConfigError, match="train.init_from='nowhere' does not exist"):
    loop.train(tiny_config(**{"train.init_from": "nowhere"}), str(tmp_path / "b"))
  params = {"x": np.zeros(1, np.float32)}  # only the saved config is read
  checkpoints.export_params(str(tmp_path / "wide"), params, tiny_config(**{"model.width": 64}))
  checkpoints.export_params(str(tmp_path / "lora"), params, tiny_config(**{"model.lora_rank": 2}))
  for source, message in (("wide", r"is another model: model.width=32 \(there: 64\)$"),
                          ("lora", r"is itself a LoRA run \(model.lora_rank=2\)")):
    with pytest.raises(ConfigError, match=message):
      loop.train(tiny_config(**{"train.init_from": str(tmp_path / source)}), str(tmp_path / "c"))


def test_lora_fine_tune_from_a_base_trains_only_adapters_and_exports_them(tmp_path):
  """init_from an export → 3 steps with trainable="lora" → export --adapter_only."""
  from flax import traverse_util
  from videogen.parallel import mesh as mesh_lib
  from videogen.training import state as state_lib
  from videogen.training.tasks import build_task

  config = tiny_config(**{"model.lora_rank": RANK, "train.trainable": "lora",
                          "train.init_from": str(tmp_path / "base"), "train.num_steps": 3,
                          "train.warmup_steps": 1, "checkpoint.every_steps": 100})
  mesh = mesh_lib.create_mesh(config.mesh)
  rules = mesh_lib.rules_from_config(config.mesh)
  task = build_task(config, mesh, rules)
  state, _ = state_lib.create_train_state(task.init_params, task.tx, config.seed, mesh, rules)
  base, fresh = lora.split_adapter(jax.device_get(state.params))
  base = perturbed(base)  # a "trained" base: gates awake
  checkpoints.export_params(str(tmp_path / "base"), base, tiny_config())
  fresh = traverse_util.flatten_dict(fresh)
  assert not any(leaf.any() for path, leaf in fresh.items() if path[-1] == "b")

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
  exported, meta = checkpoints.load_adapter(str(tmp_path / "adapter"), base)
  _assert_trees_equal(exported, lora.split_adapter(final.ema)[1])
  assert meta["rank"] == RANK and meta["base"]["width"] == config.model.width
  refused = run_cli("videogen.export", "--workdir", str(tmp_path / "base"), "--output",
                    str(tmp_path / "nothing"), "--adapter_only")
  assert refused.returncode == 2 and "has no LoRA adapters" in refused.stderr
