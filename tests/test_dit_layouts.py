"""The three DiT layouts: shapes at many (T, H, W), AdaLN-Zero at init, factorized attention
that never crosses its axis, padding-independent text, and sharded = unsharded."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import perturbed
from videogen.models import embeddings
from videogen.models.dit import DiT, DiTBlock, DiTSpec

LAYOUTS = [("joint", "per_block"), ("joint", "single"), ("expert", "per_block"),
           ("factorized", "per_block"), ("factorized", "single")]


def _spec(layout, adaln, **overrides):
  return DiTSpec(**{"width": 32, "depth": 2, "num_heads": 2, "patch_size": (1, 2, 2),
                    "channels": 3, "layout": layout, "adaln": adaln, **overrides})


def _inputs(shape=(3, 8, 12), batch=2, text_length=5, seed=0):
  keys = jax.random.split(jax.random.key(seed), 2)
  x = jax.random.normal(keys[0], (batch, *shape, 3))
  context = jax.random.normal(keys[1], (batch, text_length, 8))
  mask = jnp.arange(text_length)[None] < jnp.array([[3], [5]])[:batch]
  return x, jnp.array([10.0, 700.0])[:batch], context, mask


def _init(spec, inputs):
  return nn.unbox(DiT(spec).init(jax.random.key(0), *inputs)["params"])


@pytest.mark.parametrize("layout,adaln", LAYOUTS)
def test_one_model_runs_at_many_shapes_and_starts_at_zero(layout, adaln):
  spec = _spec(layout, adaln)
  params = _init(spec, _inputs())
  apply = jax.jit(lambda p, *a: DiT(spec).apply({"params": p}, *a))  # one compile per shape
  for shape in [(3, 8, 12), (5, 16, 8), (1, 6, 6)]:
    inputs = _inputs(shape)
    out = apply(params, *inputs)
    assert out.shape == inputs[0].shape
    np.testing.assert_array_equal(out, 0.0)  # AdaLN-Zero: zero output layer at init
  moved = apply(perturbed(params), *inputs)
  assert bool(jnp.isfinite(moved).all()) and float(jnp.abs(moved).max()) > 0
  spec_2x = _spec(layout, adaln, patch_size=(2, 2, 2))
  inputs = _inputs((6, 8, 10))
  assert jax.eval_shape(lambda *a: DiT(spec_2x).init_with_output(jax.random.key(0), *a)[0],
                        *inputs).shape == (2, 6, 8, 10, 3)


@pytest.mark.parametrize("layout,adaln", LAYOUTS)
def test_gated_branches_are_off_at_init(layout, adaln):
  """With the modulation still at its zero init, every gated branch (self-attention and MLP;
  for expert, everything) contributes nothing: re-drawing those weights changes no output."""
  spec = _spec(layout, adaln)
  inputs = _inputs()
  params = _init(spec, inputs)
  awake = dict(perturbed({k: v for k, v in params.items() if k in ("final_proj",)}))
  base = {**params, **awake}

  def redraw(path, leaf):
    names = [getattr(p, "key", "") for p in path]
    gated = any(n in ("self_attn", "mlp", "attn") for n in names)
    return leaf + jax.random.normal(jax.random.key(len(names)), leaf.shape) if gated else leaf

  redrawn = jax.tree_util.tree_map_with_path(redraw, base)
  np.testing.assert_allclose(DiT(spec).apply({"params": base}, *inputs),
                             DiT(spec).apply({"params": redrawn}, *inputs), atol=1e-6)


def test_factorized_blocks_never_cross_their_axis():
  """Perturbing frame 0 leaves a spatial block's other frames unchanged; perturbing one
  position leaves a temporal block's other positions unchanged (in every frame)."""
  spec = _spec("factorized", "per_block")
  grid = (3, 4, 6)
  tokens = jax.random.normal(jax.random.key(0), (2, 72, 32))
  cond = jax.random.normal(jax.random.key(1), (2, 32))
  context = jax.random.normal(jax.random.key(2), (2, 5, 32))
  mask = jnp.ones((2, 5), bool)
  for attend in ("space", "time"):
    block = DiTBlock(spec, attend, grid)
    params = perturbed(nn.unbox(block.init(jax.random.key(3), tokens, cond, context, mask,
                                           None)["params"]))
    out = block.apply({"params": params}, tokens, cond, context, mask, None)
    touched = np.zeros((3, 24), bool)
    if attend == "space":
      touched[0, :] = True   # every token of frame 0
    else:
      touched[:, 5] = True   # position 5 in every frame
    delta = jnp.where(touched.reshape(1, 72, 1), 1.0, 0.0)
    moved = block.apply({"params": params}, tokens + delta, cond, context, mask, None)
    changed = np.abs(np.asarray(moved - out)).max(axis=(0, 2)).reshape(3, 24) > 1e-6
    np.testing.assert_array_equal(changed, touched)


@pytest.mark.parametrize("layout,adaln,token_adaln", [*((*l, False) for l in LAYOUTS),
                                                    ("joint", "per_block", True)])
def test_padded_text_does_not_matter(layout, adaln, token_adaln):
  spec = _spec(layout, adaln, token_adaln=token_adaln)
  x, t, context, mask = _inputs()
  params = perturbed(_init(spec, (x, t, context, mask)))
  garbage = jnp.where(mask[..., None], context, 50.0 * jax.random.normal(jax.random.key(9),
                                                                         context.shape))
  out = DiT(spec).apply({"params": params}, x, t, context, mask)
  np.testing.assert_allclose(DiT(spec).apply({"params": params}, x, t, garbage, mask), out,
                             atol=1e-5)
  assert not np.allclose(DiT(spec).apply({"params": params}, x, t, garbage, mask | True), out,
                         atol=1e-3)


def test_an_mlp_head_draws_patches_a_linear_head_cannot():
  """The linear output layer draws every patch from `width` + 1 directions (its kernel and
  bias), however many frames a patch holds; `model.head_mlp_ratio` draws outside that span."""
  x, t, context, mask = _inputs((4, 16, 16))  # 2 × 32 tokens of 2 × 4 × 4 × 3 = 96 numbers

  def patch_rank(spec):
    params = perturbed(_init(spec, (x, t, context, mask)), 0.5)
    out = DiT(spec).apply({"params": params}, x, t, context, mask)
    singular = np.linalg.svd(np.asarray(embeddings.patchify(out, spec.patch_size)).reshape(64, -1),
                             compute_uv=False)
    return int((singular > 1e-4 * singular[0]).sum())

  linear = _spec("joint", "per_block", patch_size=(2, 4, 4))
  assert patch_rank(linear) <= linear.width + 1
  assert patch_rank(dataclasses.replace(linear, head_mlp_ratio=2.0)) > linear.width + 1


def _sharded_forward(spec, inputs, mesh_shape, params=None):
  """(single-device output, output on a `(data, fsdp, tensor, sequence)` mesh with the
  default rules, compiled HLO text) of the same perturbed params."""
  from jax.sharding import NamedSharding
  from videogen.parallel.mesh import AXES, DEFAULT_RULES
  boxed = DiT(spec).init(jax.random.key(0), *inputs)["params"]
  params = perturbed(nn.unbox(boxed)) if params is None else params
  want = DiT(spec).apply({"params": params}, *inputs)
  mesh = jax.make_mesh(mesh_shape, AXES, devices=jax.devices()[:int(np.prod(mesh_shape))],
                       axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))
  specs = nn.logical_to_mesh(nn.get_partition_spec(boxed), DEFAULT_RULES)
  sharded = jax.tree.map(lambda p, s: jax.device_put(p, NamedSharding(mesh, s)), params, specs)
  with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
    forward = jax.jit(lambda p, *a: DiT(spec).apply({"params": p}, *a)).lower(
        sharded, *inputs).compile()
    got = forward(sharded, *inputs)
  return np.asarray(want), np.asarray(got), forward.as_text()


@pytest.mark.parametrize("layout,adaln,extra", [
    ("expert", "per_block", {}), ("factorized", "single", {}),
    ("joint", "per_block", {"token_adaln": True, "head_mlp_ratio": 2.0})])
def test_sharded_forward_equals_single_device(layout, adaln, extra):
  """fsdp × tensor sharding of params and activations (the default rules) changes nothing."""
  spec = _spec(layout, adaln, width=64, num_heads=4, **extra)
  want, got, _ = _sharded_forward(spec, _inputs(batch=2), (1, 2, 2, 1))
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("strategy", ["all_gather", "ulysses", "ring"])
def test_sequence_parallel_forward_equals_single_device(strategy):
  """Tokens split over the `sequence` mesh axis (× tensor): every strategy computes the
  single-device function; Ulysses with all-to-alls, ring by passing k/v blocks around."""
  spec = _spec("joint", "per_block", width=64, num_heads=4, sequence_parallel=strategy)
  want, got, hlo = _sharded_forward(spec, _inputs((4, 8, 8), batch=2), (1, 1, 2, 2))
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
  if strategy != "all_gather":
    assert {"ulysses": "all-to-all", "ring": "collective-permute"}[strategy] in hlo


def test_remat_policies_change_memory_not_results():
  """CPU-capable policies give the no-remat gradients, and `full` needs less temporary
  memory than `none` (offload needs pinned host memory: GPU/TPU)."""
  inputs = _inputs((8, 16, 16))
  reference, temp_bytes = None, {}
  for policy in ("none", "full", "save_attention_out"):
    spec = _spec("joint", "per_block", remat_policy=policy, depth=2)
    params = perturbed(_init(spec, inputs))
    grad = jax.jit(jax.grad(lambda p: jnp.sum(DiT(spec).apply({"params": p}, *inputs) ** 2)))
    compiled = grad.lower(params).compile()
    temp_bytes[policy] = compiled.memory_analysis().temp_size_in_bytes
    grads = compiled(params)
    reference = reference or grads
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(reference)):
      # float32 sums differ in their last bits at the leaf's own scale (entries up to ~2e3).
      scale = float(np.abs(np.asarray(b)).max())
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6 * scale, rtol=1e-4)
  assert temp_bytes["full"] < temp_bytes["none"], temp_bytes


@pytest.mark.parametrize("layout", ["joint", "expert", "factorized"])
def test_cudnn_path_takes_masks_as_key_lengths_and_matches_reference(layout, monkeypatch):
  """The cuDNN kernel wants padding as a key length, so every mask a layout builds must be a
  prefix. Off a GPU, the same call runs on XLA's kernel (which honours key lengths too)."""
  calls = []
  kernel = jax.nn.dot_product_attention

  def cudnn_on_cpu(*args, implementation=None, **kwargs):
    assert implementation == "cudnn" and kwargs.get("mask") is None
    calls.append(kwargs.get("key_value_seq_lengths") is not None)
    return kernel(*args, implementation="xla", **kwargs)

  inputs = _inputs()
  params = perturbed(_init(_spec(layout, "per_block"), inputs))
  monkeypatch.setattr(jax.nn, "dot_product_attention", cudnn_on_cpu)
  want = DiT(_spec(layout, "per_block", attention_backend="reference")).apply(
      {"params": params}, *inputs)
  got = DiT(_spec(layout, "per_block", attention_backend="cudnn")).apply(
      {"params": params}, *inputs)
  np.testing.assert_allclose(got, want, atol=2e-5)
  assert any(calls)  # the masked attention went through key lengths


def test_splash_backend_sharded_equals_reference_single_device():
  """The Pallas splash kernel (interpreted off TPU) inside the model, per (batch, heads)
  shard under shard_map on a 2 data × 2 tensor mesh, against the einsum reference."""
  spec = _spec("expert", "per_block", width=64, num_heads=4)
  inputs = _inputs(batch=2)
  params = perturbed(_init(spec, inputs))
  want = DiT(dataclasses.replace(spec, attention_backend="reference")).apply(
      {"params": params}, *inputs)
  splash = dataclasses.replace(spec, attention_backend="splash")
  _, got, _ = _sharded_forward(splash, inputs, (2, 1, 2, 1), params=params)
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
