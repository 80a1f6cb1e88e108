import jax
import pytest

from conftest import tiny_config
from videogen.models.flops import dit_forward_flops
from videogen.models.text_to_video import build_model, example_inputs, spec_from_config


@pytest.mark.parametrize("layout,adaln,text_projection,token_adaln,head_mlp_ratio,registers", [
    ("joint", "per_block", "linear", False, 0.0, 0), ("joint", "single", "mlp", True, 2.0, 4),
    ("expert", "per_block", "linear", False, 0.0, 0),
    ("factorized", "single", "linear", False, 0.0, 0)])
def test_analytic_flops_match_xla_cost_analysis(layout, adaln, text_projection, token_adaln,
                                                head_mlp_ratio, registers):
  config = tiny_config(**{"model.width": 256, "model.num_heads": 4, "model.depth": 2,
                          "model.patch_size": (1, 4, 4), "model.text_dim": 64,
                          "model.layout": layout, "model.adaln": adaln,
                          "model.text_projection": text_projection,
                          "model.token_adaln": token_adaln,
                          "model.head_mlp_ratio": head_mlp_ratio,
                          "model.registers": registers,
                          # XLA counts a while-loop body once, so compare the unrolled stack.
                          "model.scan_layers": False,
                          "data.num_frames": 4, "data.height": 32, "data.width": 32})
  model = build_model(config, 128)
  inputs = example_inputs(config, model, batch=2)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *inputs))["params"]
  compiled = jax.jit(lambda p, *a: model.apply({"params": p}, *a)).lower(params, *inputs).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  analytic = dit_forward_flops(spec_from_config(config.model), 4, 32, 32,
                               config.text.max_length, config.model.text_dim, batch=2)
  # XLA also counts elementwise work (norms, softmax, GELU); matmuls dominate at this width:
  # the analytic count is 1-2% under (docs/models.md; measured 0.984-0.987).
  assert 0.98 <= analytic / cost["flops"] <= 0.99, (analytic, cost["flops"])
