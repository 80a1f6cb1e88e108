import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import perturbed, tiny_config
from videogen.config import ConfigError
from videogen.models import attention, embeddings
from videogen.models.text_to_video import CaptionEncoder, build_model, example_inputs


def test_patchify_round_trip():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 8, 12, 3))
  tokens = embeddings.patchify(x, (2, 4, 4))
  assert tokens.shape == (2, 2 * 2 * 3, 2 * 4 * 4 * 3)
  np.testing.assert_array_equal(embeddings.unpatchify(tokens, (2, 2, 3), (2, 4, 4), 3), x)


def test_patchify_rejects_indivisible_shape():
  with pytest.raises(ValueError, match="not divisible by model.patch_size"):
    embeddings.patchify(jnp.zeros((1, 3, 8, 8, 3)), (2, 4, 4))


@pytest.mark.parametrize("pos_embed", ["rope", "sincos"])
def test_one_set_of_weights_runs_at_many_shapes(pos_embed):
  config = tiny_config(**{"model.pos_embed": pos_embed})
  model = build_model(config, vocab_size=40)
  params = model.init(jax.random.PRNGKey(0), *example_inputs(config, model))["params"]
  tokens = jnp.array([[5, 6, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]] * 2)
  no_drop = jnp.zeros((2,), bool)
  for shape in [(4, 16, 16), (8, 16, 32), (2, 24, 8)]:
    x = jax.random.normal(jax.random.PRNGKey(1), (2, *shape, 3))
    out = model.apply({"params": params}, x, jnp.array([10.0, 500.0]), tokens, tokens > 0,
                      no_drop)
    assert out.shape == x.shape
    assert bool(jnp.isfinite(out).all())


def test_positions_distinguish_every_token():
  cos, sin = embeddings.rope_3d((2, 3, 4), head_dim=32)
  angles = np.asarray(jnp.arctan2(sin, cos))
  assert angles.shape == (24, 16)
  assert len({tuple(np.round(a, 5)) for a in angles}) == 24
  table = np.asarray(embeddings.sincos_3d((2, 3, 4), 64))
  assert len({tuple(np.round(r, 5)) for r in table}) == 24


def test_rope_is_relative():
  """Rotated q·k depends only on the position offset: shift both, same score."""
  q, k = jax.random.normal(jax.random.PRNGKey(0), (2, 1, 1, 1, 32))
  cos, sin = embeddings.rope_3d((1, 1, 16), head_dim=32)
  score = lambda i, j: float((attention.apply_rope(q, cos[i:i + 1], sin[i:i + 1])
                              * attention.apply_rope(k, cos[j:j + 1], sin[j:j + 1])).sum())
  assert score(2, 5) == pytest.approx(score(9, 12), rel=1e-4)
  assert score(2, 5) != pytest.approx(score(2, 9), rel=1e-3)


def test_attention_backends_agree_with_padding_mask():
  kq, kk, kv = jax.random.split(jax.random.PRNGKey(0), 3)
  q = jax.random.normal(kq, (2, 6, 2, 16))
  k = jax.random.normal(kk, (2, 5, 2, 16))
  v = jax.random.normal(kv, (2, 5, 2, 16))
  mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  reference = attention.dot_product_attention(q, k, v, mask, backend="reference")
  xla = attention.dot_product_attention(q, k, v, mask, backend="xla")
  np.testing.assert_allclose(xla, reference, atol=1e-5)
  # Masked keys have no influence.
  v_changed = v.at[0, 3:].set(100.0)
  np.testing.assert_allclose(attention.dot_product_attention(q, k, v_changed, mask), xla,
                             atol=1e-5)


def test_scan_and_unrolled_stacks_compute_the_same_function():
  scanned_config = tiny_config()
  unrolled_config = tiny_config(**{"model.scan_layers": False})
  scanned, unrolled = (build_model(c, 40) for c in (scanned_config, unrolled_config))
  inputs = example_inputs(scanned_config, scanned, batch=2)
  x = jax.random.normal(jax.random.PRNGKey(3), inputs[0].shape)
  inputs = (x, jnp.array([100.0, 700.0]), *inputs[2:])
  params = nn.meta.unbox(scanned.init(jax.random.PRNGKey(0), *inputs)["params"])
  # Give the zero-initialised gates and output non-zero values so the blocks matter.
  params = perturbed(params, 0.05)
  dit = dict(params["dit"])
  blocks = dit.pop("blocks")
  for i in range(scanned_config.model.depth):
    dit[f"block_{i}"] = jax.tree.map(lambda p, i=i: p[i], blocks)
  unrolled_params = {**params, "dit": dit}
  np.testing.assert_allclose(scanned.apply({"params": params}, *inputs),
                             unrolled.apply({"params": unrolled_params}, *inputs), atol=1e-5)


def test_bfloat16_compute_keeps_float32_params_and_tracks_float32():
  f32_config = tiny_config()
  bf16_config = tiny_config(**{"model.dtype": "bfloat16"})
  f32_model, bf16_model = build_model(f32_config, 40), build_model(bf16_config, 40)
  inputs = example_inputs(f32_config, f32_model, batch=2)
  x = jax.random.normal(jax.random.PRNGKey(3), inputs[0].shape)
  inputs = (x, jnp.array([100.0, 700.0]), *inputs[2:])
  params = nn.meta.unbox(f32_model.init(jax.random.PRNGKey(0), *inputs)["params"])
  params = perturbed(params, 0.05)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(
      bf16_model.init(jax.random.PRNGKey(0), *inputs)["params"]))
  reference = f32_model.apply({"params": params}, *inputs)
  low = bf16_model.apply({"params": params}, *inputs)
  assert low.dtype == jnp.float32  # outputs (and losses) are computed in f32
  assert float(jnp.abs(low - reference).max()) < 0.05 * float(jnp.abs(reference).max())


def test_blockwise_attention_equals_reference_in_value_gradient_and_uses_less_memory():
  """Key blocks of 64 over 300 keys (a ragged last block), a padding mask, f32: the flash
  recurrence gives the reference output and gradients without the (Lq, Lk) score matrix."""
  kq, kk, kv = jax.random.split(jax.random.PRNGKey(1), 3)
  q = jax.random.normal(kq, (2, 300, 2, 16))
  k = jax.random.normal(kk, (2, 300, 2, 16))
  v = jax.random.normal(kv, (2, 300, 2, 16))
  mask = jnp.arange(300)[None] < jnp.array([[200], [300]])

  def loss(backend, block=None):
    def f(q, k, v):
      out = (attention.blockwise_attention(q, k, v, mask, block) if block
             else attention.dot_product_attention(q, k, v, mask, backend))
      return jnp.sum(jnp.sin(out))
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))

  want = loss("reference")(q, k, v)
  got = loss(None, block=64)(q, k, v)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-4, rtol=1e-4)
  temp = {name: fn.lower(q, k, v).compile().memory_analysis().temp_size_in_bytes
          for name, fn in (("reference", loss("reference")), ("blockwise", loss(None, 64)))}
  assert temp["blockwise"] < temp["reference"], temp


def test_splash_attention_kernel_equals_reference_in_value_and_gradient():
  """The TPU Pallas kernel, run by the Pallas interpreter: ragged lengths (padded to whole
  blocks internally) and a key-padding mask."""
  kq, kk, kv = jax.random.split(jax.random.PRNGKey(0), 3)
  q = jax.random.normal(kq, (2, 130, 2, 32))
  k, v = jax.random.normal(kk, (2, 70, 2, 32)), jax.random.normal(kv, (2, 70, 2, 32))
  mask = jnp.arange(70)[None] < jnp.array([[50], [70]])
  weights = jnp.cos(jnp.arange(32.0))

  def value_and_grads(attend):
    return jax.value_and_grad(lambda q, k, v: (attend(q, k, v) * weights).sum(),
                              argnums=(0, 1, 2))(q, k, v)

  want = value_and_grads(lambda q, k, v: attention.dot_product_attention(q, k, v, mask,
                                                                          "reference"))
  got = value_and_grads(lambda q, k, v: attention.splash_attention(q, k, v, mask,
                                                                   interpret=True))
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for g, w in zip(got[1], want[1]):
    np.testing.assert_allclose(g, w, atol=2e-5)


@pytest.mark.parametrize("text_layers", [0, 2])
def test_only_a_caption_encoder_reads_word_order(text_layers):
  """The bare caption embedding is a bag of words: swapping two caption words (two clauses'
  directions) leaves the output unchanged, so no direction can be bound to its object. The
  caption encoder's positions and self-attention make the swap matter; padding still does
  not."""
  config = tiny_config(**{"model.text_layers": text_layers})
  model = build_model(config, vocab_size=40)
  x, t, _, _, drop = example_inputs(config, model, batch=1)
  x = jax.random.normal(jax.random.key(0), x.shape)
  tokens = jnp.array([[5, 6, 7, 8, 9, 10, 11, 12, 13, 0, 0, 0, 0, 0, 0, 0]])
  swapped = tokens.at[0, 3].set(12).at[0, 7].set(8)
  mask = tokens > 0
  params = model.init(jax.random.key(1), x, t, tokens, mask, drop)["params"]
  params = perturbed(params, 0.05)  # wake the zero-initialised gates
  run = lambda text: model.apply({"params": params}, x, t, text, mask, drop)  # noqa: E731
  out, out_swapped = run(tokens), run(swapped)
  np.testing.assert_allclose(run(tokens.at[0, 12].set(30)), out, atol=1e-6)  # padding
  if text_layers:
    assert np.abs(out - out_swapped).max() > 1e-3
    assert "caption_encoder" in params
  else:
    np.testing.assert_allclose(out, out_swapped, atol=1e-5)
    assert "caption_encoder" not in params


def test_the_caption_encoder_binds_words_to_their_neighbours_without_learned_positions():
  """Learned positions stay small in training (docs/experiments.md, "Binding in two- and
  three-object prompts"): with them at zero, attention alone must still tell "a red … left
  and a blue … right" from the directions swapped, in the states of the words *not* swapped
  (the colours the DiT binds a direction to). Order-blind attention leaves those unchanged."""
  encoder = CaptionEncoder(layers=2, heads=2)
  embedded = jax.random.normal(jax.random.key(0), (1, 16, 64))
  mask = jnp.arange(16)[None] < 12
  params = nn.unbox(encoder.init(jax.random.key(1), embedded, mask)["params"])
  params = {**params, "positions": jnp.zeros_like(params["positions"])}
  swapped = embedded.at[0, 3].set(embedded[0, 9]).at[0, 9].set(embedded[0, 3])
  states, states_swapped = (encoder.apply({"params": params}, e, mask) for e in (embedded,
                                                                               swapped))
  untouched = np.array([i for i in range(12) if i not in (3, 9)])
  change = np.abs(states - states_swapped)[0, untouched].max(-1)
  assert change.min() > 1e-3, change


def test_the_caption_convolution_mixes_only_neighbouring_words():
  """`model.text_conv=K` gives each word state its K-word neighbourhood before attention:
  alone (no blocks), changing word 8 moves the states of words 6-10 (K = 5) and no others,
  and padding is read as nothing."""
  encoder = CaptionEncoder(layers=0, heads=1, conv_width=5)
  embedded = jax.random.normal(jax.random.key(0), (1, 16, 64))
  mask = jnp.arange(16)[None] < 12
  params = encoder.init(jax.random.key(1), embedded, mask)
  run = lambda e: encoder.apply(params, e, mask)[0]  # noqa: E731
  states = run(embedded)
  other = jax.random.normal(jax.random.key(2), (64,))
  change = np.abs(run(embedded.at[0, 8].set(other)) - states).max(-1)
  assert change[6:11].min() > 1e-3 and change[:6].max() == 0 and change[11:].max() == 0, change
  np.testing.assert_allclose(run(embedded.at[0, 13].set(other))[:12], states[:12])


def test_per_token_adaln_starts_as_the_per_example_block():
  """`model.token_adaln` adds to each block's MLP modulation a zero-initialised term read from
  the token's own cross-attention output: at that zero the network is the per-example one with
  the same weights; once the term has weights, the output moves."""
  config = tiny_config(**{"model.token_adaln": True})
  model, plain = build_model(config, vocab_size=40), build_model(tiny_config(), vocab_size=40)
  x, t, text, mask, drop = example_inputs(config, model, batch=2)
  x = jax.random.normal(jax.random.key(0), x.shape)
  text = jnp.tile(jnp.arange(5, 5 + text.shape[1]), (2, 1))
  params = perturbed(model.init(jax.random.key(1), x, t, text, mask, drop)["params"], 0.05)
  zeroed = jax.tree_util.tree_map_with_path(
      lambda path, p: np.zeros_like(p) if "token_adaln" in jax.tree_util.keystr(path) else p,
      params)
  run = lambda m, p: m.apply({"params": p}, x, t, text, mask, drop)  # noqa: E731
  np.testing.assert_allclose(run(model, zeroed), run(plain, _without(params, "token_adaln")),
                             atol=1e-6)
  assert np.abs(run(model, params) - run(model, zeroed)).max() > 1e-3


def test_a_self_conditioned_model_reads_its_estimate_and_none_means_zeros():
  """`model.self_condition` widens the patch embedding by the estimate's channels; no
  estimate is the zero estimate (the sampler's first step), and the estimate moves the
  output."""
  config = tiny_config(**{"model.self_condition": True})
  model = build_model(config, vocab_size=40)
  x, t, text, mask, drop = example_inputs(config, model, batch=2)
  x = jax.random.normal(jax.random.key(0), x.shape)
  params = perturbed(model.init(jax.random.key(1), x, t, text, mask, drop)["params"], 0.05)
  plain = nn.unbox(build_model(tiny_config(), 40).init(
      jax.random.key(1), x, t, text, mask, drop)["params"])
  embed = lambda p: nn.unbox(p)["dit"]["patch_embed"]["kernel"].shape[0]  # noqa: E731
  assert embed(params) == 2 * embed(plain)
  run = lambda estimate: model.apply({"params": params}, x, t, text, mask, drop,  # noqa: E731
                                     None, estimate)
  np.testing.assert_array_equal(run(None), run(jnp.zeros_like(x)))
  assert np.abs(run(x) - run(None)).max() > 1e-3


def test_registers_are_read_but_have_no_position():
  """`model.registers` learned tokens join the sequence with the identity rotation: the output
  keeps the video's shape, depends on the register values, and not on their order."""
  config = tiny_config(**{"model.registers": 3})
  model = build_model(config, vocab_size=40)
  x, t, text, mask, drop = example_inputs(config, model, batch=2)
  x = jax.random.normal(jax.random.key(0), x.shape)
  params = nn.unbox(perturbed(model.init(jax.random.key(1), x, t, text, mask, drop)["params"],
                              0.05))
  with_registers = lambda r: {**params, "dit": {**params["dit"], "registers": r}}  # noqa: E731
  run = lambda p: model.apply({"params": p}, x, t, text, mask, drop)  # noqa: E731
  registers = params["dit"]["registers"]
  out = run(params)
  assert out.shape == x.shape
  np.testing.assert_allclose(run(with_registers(registers[::-1])), out, atol=1e-5)
  moved = registers + jax.random.normal(jax.random.key(2), registers.shape)
  assert np.abs(run(with_registers(moved)) - out).max() > 1e-3
  with pytest.raises(ConfigError, match="model.registers needs model.layout='joint'"):
    build_model(tiny_config(**{"model.registers": 3, "model.layout": "expert"}), 40)


def _without(tree, name: str):
  """A params dict without the entries called `name`, at any depth."""
  if not isinstance(tree, dict):
    return tree
  return {k: _without(v, name) for k, v in tree.items() if k != name}
