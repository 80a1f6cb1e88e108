import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO, tiny_config, word_features
from videogen import checkpoints
from videogen.data import pipeline
from videogen.parallel import mesh as mesh_lib
from videogen.training import loop, state as state_lib
from videogen.training.metrics import read_metrics
from videogen.training.tasks import build_task


def _trainer(config, devices):
  """(initial state, jitted step, mesh) for `config` on `devices`."""
  mesh = mesh_lib.create_mesh(config.mesh, devices)
  rules = mesh_lib.rules_from_config(config.mesh)
  task = build_task(config, mesh, rules)
  state, shardings = state_lib.create_train_state(task.init_params, task.tx, config.seed, mesh,
                                                  rules, task.init_compiler_options)
  return state, task.build_step(shardings, mesh_lib.batch_sharding(mesh), rules), mesh


def _run_logged(config, devices, batch, num_steps):
  """(final state, per-step metrics as floats) of `num_steps` steps on one batch."""
  state, step, mesh = _trainer(config, devices)
  rows = []
  with jax.set_mesh(mesh):
    global_batch = pipeline.to_global_batch(batch, mesh_lib.batch_sharding(mesh))
    for _ in range(num_steps):
      state, metrics = step(state, global_batch)
      rows.append({k: float(v) for k, v in jax.device_get(metrics).items()})
  return state, rows


def _run(config, devices, batch, num_steps):
  state, rows = _run_logged(config, devices, batch, num_steps)
  return state, [row["loss"] for row in rows]


@pytest.fixture(scope="module")
def batch():
  config = tiny_config()
  return next(iter(pipeline.make_dataset(config, word_features(config))))


def test_loss_falls_when_overfitting_one_batch(batch):
  config = tiny_config(**{"train.num_steps": 60, "train.learning_rate": 3e-3,
                          "train.warmup_steps": 5, "train.caption_dropout": 0.0})
  _, losses = _run(config, jax.devices()[:1], batch, 60)
  # Fresh noise every step leaves an irreducible floor near 1; an untrained net sits at ~1.6.
  assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:5]), losses


@pytest.mark.parametrize("data,fsdp,tensor", [
    # (2, 2, 2) miscompiled on XLA CPU (jaxlib 0.10.2) while AdaLN split one Dense output
    # with jnp.split; since modulation reshapes to (B, chunks, width) it is exact. It covers
    # all three axes at once, so the two-axis meshes keep only one case each side of it.
    (2, 2, 1), (1, 2, 2), (2, 2, 2)])
def test_sharded_step_equals_single_device_step(batch, data, fsdp, tensor):
  """A sharded train step gives the same loss and parameters as one device."""
  # Adam divides by |g|: with eps = 1e-8, gradients that are ~0 turn float reduction-order
  # noise into full-size updates. A larger eps compares the sharding, not that conditioning.
  common = {"train.adam_eps": 1e-3}
  sharded_config = tiny_config(**common, **{"mesh.data": data, "mesh.fsdp": fsdp,
                                            "mesh.tensor": tensor})
  single_config = tiny_config(**common, **{"mesh.data": 1})
  sharded, sharded_losses = _run(sharded_config, jax.devices()[:data * fsdp * tensor], batch, 2)
  single, single_losses = _run(single_config, jax.devices()[:1], batch, 2)
  np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-5)
  # Parameters really are split: FSDP on embed, tensor parallel on heads.
  query = sharded.params["dit"]["blocks"]["self_attn"]["query_kernel"]
  depth, width, heads, head_dim = query.shape
  assert query.addressable_shards[0].data.shape == (depth, width // fsdp, heads // tensor,
                                                    head_dim)
  for a, b in zip(jax.tree.leaves((sharded.params, sharded.ema)),
                  jax.tree.leaves((single.params, single.ema))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("strategy,remat", [("ring", "full"), ("ulysses", "save_dots")])
def test_sequence_parallel_step_equals_single_device_step(batch, strategy, remat):
  """Tokens split over `sequence` (ring: k/v blocks passed around under shard_map; Ulysses:
  all-to-all to heads), with activation checkpointing: loss and update as on one device."""
  common = {"train.adam_eps": 1e-3, "model.remat_policy": remat}
  sharded_config = tiny_config(**common, **{"mesh.data": 2, "mesh.sequence": 2,
                                            "model.sequence_parallel": strategy})
  sharded, sharded_losses = _run(sharded_config, jax.devices()[:4], batch, 2)
  single, single_losses = _run(tiny_config(**common, **{"mesh.data": 1}), jax.devices()[:1],
                               batch, 2)
  np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(single.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_initial_params_do_not_depend_on_the_mesh():
  a, _, _ = _trainer(tiny_config(**{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2}),
                     jax.devices()[:8])
  b, _, _ = _trainer(tiny_config(**{"mesh.data": 1}), jax.devices()[:1])
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resumed_run_reproduces_the_uninterrupted_losses(tmp_path):
  config = tiny_config(**{"train.num_steps": 6, "checkpoint.every_steps": 100})
  loop.train(config, str(tmp_path / "straight"))
  loop.train(config, str(tmp_path / "resumed"), stop_after_step=3)
  assert [m["step"] for m in read_metrics(str(tmp_path / "resumed"))] == [1, 2, 3]
  loop.train(config, str(tmp_path / "resumed"))
  straight = [m["loss"] for m in read_metrics(str(tmp_path / "straight"))]
  resumed = [m["loss"] for m in read_metrics(str(tmp_path / "resumed"))]
  assert len(straight) == 6
  assert resumed == straight  # bit-identical on CPU


def test_checkpoint_round_trip_restores_every_leaf_and_onto_another_mesh(tmp_path):
  config = tiny_config(**{"train.num_steps": 2})
  final = loop.train(config, str(tmp_path))
  for devices, mesh_overrides in [(jax.devices(), {"mesh.data": 8}),
                                  (jax.devices()[:4], {"mesh.data": 1, "mesh.fsdp": 2,
                                                       "mesh.tensor": 2})]:
    other = tiny_config(**{"train.num_steps": 2, **mesh_overrides})
    mesh = mesh_lib.create_mesh(other.mesh, devices)
    rules = mesh_lib.rules_from_config(other.mesh)
    task = build_task(other, mesh, rules)
    abstract, shardings = state_lib.state_shardings(task.init_params, task.tx, mesh, rules)
    iterator = iter(pipeline.make_dataset(other))
    manager = checkpoints.make_manager(str(tmp_path))
    with jax.set_mesh(mesh):
      restored = checkpoints.restore_train_state(manager, abstract, shardings, iterator,
                                                 str(tmp_path))
    manager.close()
    assert int(restored.step) == 2
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(final)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert restored.params["dit"]["patch_embed"]["kernel"].sharding.mesh.shape == mesh.shape


def test_ema_tracks_params_with_warmup():
  assert float(state_lib.ema_decay(jnp.array(0), 0.999)) == pytest.approx(0.1)
  assert float(state_lib.ema_decay(jnp.array(10**6), 0.999)) == pytest.approx(0.999)


def test_replicated_fraction_reports_unsharded_bytes():
  config = tiny_config(**{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2})
  mesh = mesh_lib.create_mesh(config.mesh, jax.devices()[:8])
  task = build_task(config, mesh, mesh_lib.rules_from_config(config.mesh))
  abstract, shardings = state_lib.state_shardings(task.init_params, task.tx, mesh,
                                                  mesh_lib.rules_from_config(config.mesh))
  fraction = mesh_lib.replicated_fraction(shardings.params, abstract.params)
  assert 0.0 < fraction < 0.2


def test_gradient_accumulation_equals_one_big_batch(batch):
  """Micro-batches of 4 accumulated over 2 steps give the 8-clip step's loss and update."""
  common = {"train.adam_eps": 1e-3}  # compare the accumulation, not Adam's conditioning
  whole, whole_losses = _run(tiny_config(**common), jax.devices()[:2], batch, 2)
  accumulated, accumulated_losses = _run(
      tiny_config(**common, **{"train.grad_accum_steps": 2}), jax.devices()[:2], batch, 2)
  np.testing.assert_allclose(accumulated_losses, whole_losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(accumulated.params), jax.tree.leaves(whole.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6)


def test_self_conditioning_feeds_a_gradient_free_estimate_on_half_the_steps(batch):
  """The first pass's estimate reaches the loss but no gradient flows through it; it is used
  on about half the steps (zeros otherwise); a self-conditioned model trains with finite
  losses, sharded like any other."""
  from videogen.training.step import self_condition_estimate
  like = jnp.ones((2, 3))
  drawn = [self_condition_estimate(jax.random.key(i), lambda: 2 * like, like)
           for i in range(64)]
  used = [bool(d.any()) for d in drawn]
  assert all(np.array_equal(d, 2 * like) for d, u in zip(drawn, used) if u)
  assert 20 < sum(used) < 44, sum(used)
  key = next(jax.random.key(i) for i, u in enumerate(used) if u)
  grad = jax.grad(lambda p: jnp.sum(self_condition_estimate(key, lambda: p * like, like) * p))
  np.testing.assert_allclose(grad(3.0), 3.0 * like.sum())  # d/dp of p·sg(p·1) = sg(p·1)
  config = tiny_config(**{"model.self_condition": True})
  _, losses = _run(config, jax.devices()[:2], batch, 3)
  assert np.all(np.isfinite(losses)), losses


def test_replication_guardrail_stops_before_compiling(tmp_path):
  from videogen.config import ConfigError
  config = tiny_config(**{"mesh.max_replicated_fraction": 0.5})  # data-parallel: all replicated
  with pytest.raises(ConfigError, match="100.0% of parameter bytes stay replicated"):
    loop.train(config, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()  # stopped before initialising anything
  # FSDP leaves little replicated: the loop's check passes (measured without training).
  sharded = tiny_config(**{"mesh.max_replicated_fraction": 0.5, "mesh.data": 2,
                           "mesh.fsdp": 4})
  mesh = mesh_lib.create_mesh(sharded.mesh)
  rules = mesh_lib.rules_from_config(sharded.mesh)
  task = build_task(sharded, mesh, rules)
  abstract, shardings = state_lib.state_shardings(task.init_params, task.tx, mesh, rules)
  assert loop.check_replication(sharded, mesh, shardings.params, abstract.params) < 0.5


def test_aot_compiles_for_a_topology_without_allocating_and_checks_memory():
  import json
  from conftest import run_cli
  over = run_cli("videogen.aot", "--config=configs/tiny.py", "--config.mesh.data=2",
                 "--config.mesh.fsdp=4", "--memory_gb=0.001")
  report = json.loads(over.stdout)  # the report comes before the verdict
  assert report["devices"] == 8 and report["mesh"]["fsdp"] == 4
  assert 0 < report["per_device_GB"]["total"] < 1
  assert over.returncode == 1 and "above --memory_gb 0.001" in over.stderr
  import importlib.util
  from conftest import one_line_error
  tpu = run_cli("videogen.aot", "--config=configs/tiny.py", "--topology=v5p:4x4x4")
  if importlib.util.find_spec("libtpu") is None:  # a one-line error naming the fix
    assert tpu.returncode == 2
    assert "--topology 'v5p:4x4x4' is unavailable here" in one_line_error(tpu)
    assert "install libtpu" in tpu.stderr
  else:  # compiled for the 64 chips without one of them present
    assert tpu.returncode == 0, tpu.stderr[-3000:]
    assert json.loads(tpu.stdout)["devices"] == 64


def test_per_device_parameter_bytes_fall_as_one_over_fsdp():
  per_device = {}
  for fsdp in (1, 2, 4, 8):
    other = tiny_config(**{"model.width": 64, "model.num_heads": 4, "mesh.data": 8 // fsdp,
                           "mesh.fsdp": fsdp})
    mesh = mesh_lib.create_mesh(other.mesh)
    rules = mesh_lib.rules_from_config(other.mesh)
    task = build_task(other, mesh, rules)
    abstract, shardings = state_lib.state_shardings(task.init_params, task.tx, mesh, rules)
    per_device[fsdp] = sum(
        np.prod(s.shard_shape(p.shape)) * p.dtype.itemsize
        for p, s in zip(jax.tree.leaves(abstract.params), jax.tree.leaves(shardings.params)))
  total = per_device[1]
  for fsdp in (2, 4, 8):  # small vectors (norm scales, biases) may stay whole
    assert per_device[fsdp] < 1.15 * total / fsdp, per_device


def test_the_suite_variant_trains_on_suite_captions(tmp_path):
  """configs/tiny.py:suite's data and text path (its own config sections) at the test model's
  size: the run trains a sentencepiece model on its suite captions (speed words included,
  nothing unknown) and its steps run with finite losses."""
  from videogen import workdir as workdir_lib
  from videogen.config import load_config_file
  from videogen.data.synthetic_grammar import prompt_suite
  from videogen.text.sentencepiece_tokenizer import SentencePieceTokenizer
  suite = load_config_file(os.path.join(REPO, "configs", "tiny.py:suite"))
  config = tiny_config(**{"data.num_frames": suite.data.num_frames, "train.num_steps": 2,
                          # :suite's whole-clip tokens, MLP head and registers
                          "model.patch_size": suite.model.patch_size,
                          "model.head_mlp_ratio": suite.model.head_mlp_ratio,
                          "model.registers": suite.model.registers,
                          # and its caption encoder: a word convolution, then blocks
                          "model.text_conv": suite.model.text_conv,
                          "model.text_layers": suite.model.text_layers,
                          "checkpoint.every_steps": 100})
  config.data.synthetic, config.text = suite.data.synthetic, suite.text
  loop.train(config, str(tmp_path))
  tokenizer = SentencePieceTokenizer(workdir_lib.tokenizer_file(str(tmp_path)),
                                     suite.text.max_length)
  prompts = prompt_suite(pipeline.world_from_config(config.data), 48)
  assert not tokenizer.unknown(prompts)
  assert all(np.isfinite(m["loss"]) for m in read_metrics(str(tmp_path)))
  assert len(read_metrics(str(tmp_path))) == 2
