"""T5 / UMT5 encoder: parity with HF transformers on tiny random models, conversion errors,
and the XXL parameter count."""
import numpy as np
import pytest

import jax
import jax.numpy as jnp

from videogen.formats.t5 import convert_state_dict, load_t5
from videogen.text.t5 import PRESETS, T5Encoder, param_count, spec_from_hf_config

TINY = dict(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, relative_attention_max_distance=16,
            dropout_rate=0.0)


def _hf():
  """(torch, transformers): the tests that compare with HF skip where the test extra is not
  installed; the others run."""
  return pytest.importorskip("torch"), pytest.importorskip("transformers")


def _hf_model(kind: str, proj: str = "gated-gelu"):
  torch, transformers = _hf()
  torch.manual_seed(0)
  if kind == "t5":
    model = transformers.T5EncoderModel(transformers.T5Config(**TINY, feed_forward_proj=proj))
  else:
    model = transformers.UMT5EncoderModel(
        transformers.UMT5Config(**TINY, feed_forward_proj=proj))
  # HF's init is tiny for these dims; perturb every weight so mistakes show up in the output.
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.ndim == 1 else 0.0))
  return model.eval()


def _inputs():
  rng = np.random.default_rng(0)
  tokens = rng.integers(3, TINY["vocab_size"], (2, 12)).astype(np.int32)
  mask = np.ones((2, 12), bool)
  mask[:, -3:] = False
  tokens[~mask] = 0
  return tokens, mask


# transformers' meaning of each feed_forward_proj: "gated-gelu" alone is the tanh GELU.
@pytest.mark.parametrize("kind,proj,act", [
    ("t5", "gated-gelu", "gelu_new"), ("umt5", "gated-gelu", "gelu_new"), ("t5", "gelu", "gelu"),
    ("t5", "gelu_new", "gelu_new"), ("t5", "relu", "relu"), ("t5", "gated-silu", "silu")])
def test_matches_hf(tmp_path, kind, proj, act):
  torch, _ = _hf()
  model = _hf_model(kind, proj)
  assert model.config.dense_act_fn == act
  model.save_pretrained(tmp_path, safe_serialization=True)
  spec, params = load_t5(tmp_path)
  assert spec.per_layer_position_bias == (kind == "umt5")
  assert (spec.is_gated, spec.dense_act) == (proj.startswith("gated"), act)
  tokens, mask = _inputs()
  with torch.no_grad():
    want = model(input_ids=torch.from_numpy(tokens).long(),
                 attention_mask=torch.from_numpy(mask).long()).last_hidden_state.numpy()
  got = np.asarray(jax.jit(lambda p, t, m: T5Encoder(spec).apply({"params": p}, t, m))(
      params, jnp.asarray(tokens), jnp.asarray(mask)))
  assert got.shape == want.shape
  err = np.abs(got - want)[mask].max()
  print(f"{kind}/{proj}: max abs err {err:.2e} (output scale {np.abs(want).max():.2f})")
  assert err <= 1.5e-5, err  # docs/text.md's figure; measured 4.7e-6–7.2e-6 (outputs up to ~4)


def test_unexpected_and_missing_keys():
  model = _hf_model("t5")
  spec = spec_from_hf_config(model.config.to_dict())
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  convert_state_dict(state, spec)
  with pytest.raises(ValueError, match="unexpected.*encoder.block.9.extra"):
    convert_state_dict({**state, "encoder.block.9.extra": np.zeros(1)}, spec)
  missing = dict(state)
  del missing["encoder.final_layer_norm.weight"]
  with pytest.raises(ValueError, match="final_layer_norm"):
    convert_state_dict(missing, spec)


def test_unsupported_config():
  with pytest.raises(ValueError, match="feed_forward_proj"):
    spec_from_hf_config({"model_type": "t5", "feed_forward_proj": "gated-swishy"})
  with pytest.raises(ValueError, match="model_type"):
    spec_from_hf_config({"model_type": "bert"})
  # A config.json is data: degenerate or mistyped values are one line, not a traceback.
  for bad, message in (({"d_model": 0}, r"d_model=0 must be a whole number"),
                       ({"num_layers": "6"}, r"num_layers='6' must be a whole number"),
                       ({"feed_forward_proj": 3}, r"feed_forward_proj=3 is not supported"),
                       ({"layer_norm_epsilon": float("inf")}, r"layer_norm_epsilon=inf")):
    with pytest.raises(ValueError, match=message):
      spec_from_hf_config({"model_type": "t5", **bad})


def test_malformed_config_json_is_one_line(tmp_path):
  (tmp_path / "config.json").write_bytes(b"[" * 100_000 + b"]" * 100_000)
  with pytest.raises(ValueError, match="nests 100000 levels deep") as error:
    load_t5(tmp_path)
  assert "\n" not in str(error.value)


def test_xxl_param_count():
  s = PRESETS["t5-v1_1-xxl"]
  per_layer = 4 * s.d_model * s.num_heads * s.d_kv + 3 * s.d_model * s.d_ff + 2 * s.d_model
  expected = (s.vocab_size * s.d_model + s.num_layers * per_layer
              + s.relative_attention_num_buckets * s.num_heads + s.d_model)
  assert param_count(s) == expected
  assert abs(expected - 4.762e9) < 1e6
  u = PRESETS["umt5-xxl"]
  assert param_count(u) == expected + (u.vocab_size - s.vocab_size) * s.d_model + (
      s.num_layers - 1) * s.relative_attention_num_buckets * s.num_heads


def test_sharded_matches_unsharded():
  """Under a (data 1, fsdp 2, tensor 2, sequence 2) mesh with the default rules, sharded
  params and activation constraints compute the same function."""
  import flax.linen as nn
  from jax.sharding import NamedSharding
  from videogen.parallel.mesh import AXES, DEFAULT_RULES
  from videogen.text.t5 import abstract_params
  spec = PRESETS["tiny"]
  tokens, mask = _inputs()
  params = nn.unbox(T5Encoder(spec).init(jax.random.key(1), tokens, mask)["params"])
  want = np.asarray(T5Encoder(spec).apply({"params": params}, tokens, mask))
  mesh = jax.make_mesh((1, 2, 2, 2), AXES, devices=jax.devices()[:8],
                       axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))
  specs = nn.logical_to_mesh(nn.get_partition_spec(abstract_params(spec)), DEFAULT_RULES)
  sharded = jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), params, specs)
  q_spec = sharded["layers_0"]["attention"]["q_kernel"].sharding.spec
  assert q_spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
  with jax.set_mesh(mesh), nn.logical_axis_rules(DEFAULT_RULES):
    got = jax.jit(lambda p, t, m: T5Encoder(spec).apply({"params": p}, t, m))(
        sharded, jnp.asarray(tokens), jnp.asarray(mask))
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=1e-5)


def test_bfloat16_compute_close():
  import dataclasses
  import flax.linen as nn
  spec = PRESETS["tiny"]
  tokens, mask = _inputs()
  params = nn.unbox(T5Encoder(spec).init(jax.random.key(2), tokens, mask)["params"])
  f32 = T5Encoder(spec).apply({"params": params}, tokens, mask)
  bf16 = T5Encoder(dataclasses.replace(spec, dtype="bfloat16")).apply(
      {"params": params}, tokens, mask)
  assert bf16.dtype == jnp.bfloat16
  rel = np.abs(np.asarray(bf16, np.float32) - np.asarray(f32)).max() / np.abs(f32).max()
  assert rel < 5e-2, rel


def test_relative_position_buckets_match_a_hand_computed_table():
  """8 bidirectional buckets, max distance 16: 4 per direction, distances 0 and 1 exact,
  then log-spaced (2..5 → 2, 6+ → 3); keys after the query (key − query > 0) add 4."""
  from videogen.text.t5 import relative_position_bucket
  table = {-20: 3, -8: 3, -6: 3, -5: 2, -4: 2, -3: 2, -2: 2, -1: 1, 0: 0,
           1: 5, 2: 6, 3: 6, 5: 6, 6: 7, 8: 7, 16: 7, 20: 7}
  rel = jnp.array(list(table))
  got = relative_position_bucket(rel, num_buckets=8, max_distance=16)
  assert dict(zip(table, np.asarray(got).tolist())) == table


def test_output_is_invariant_to_padding_length():
  """Valid positions' states do not depend on how many pad tokens follow them."""
  import flax.linen as nn
  spec = PRESETS["tiny"]
  tokens, mask = _inputs()  # 9 valid tokens then 3 pads
  params = nn.unbox(T5Encoder(spec).init(jax.random.key(3), tokens, mask)["params"])
  padded_tokens = np.concatenate([tokens, np.zeros((2, 20), np.int32)], axis=1)
  padded_mask = np.concatenate([mask, np.zeros((2, 20), bool)], axis=1)
  short = T5Encoder(spec).apply({"params": params}, tokens, mask)
  long = T5Encoder(spec).apply({"params": params}, padded_tokens, padded_mask)
  np.testing.assert_allclose(np.asarray(long)[:, :9], np.asarray(short)[:, :9], atol=1e-5)
