"""The scaling-law fit recovers a known power law; the CLI fits and plots real runs."""
import json

import numpy as np
from PIL import Image

from conftest import run_cli, tiny_config
from videogen.eval.scaling import fit_power_law, flops_per_step, plot
from videogen.training import loop


def test_fit_recovers_a_known_power_law(tmp_path):
  compute = np.logspace(12, 16, 9)
  loss = 7.5 * compute ** -0.12 * np.exp(np.random.default_rng(0).normal(0, 1e-3, 9))
  a, b = fit_power_law(compute, loss)
  assert abs(b - 0.12) < 2e-3 and abs(a / 7.5 - 1) < 0.1
  plot({"run": (list(compute), list(loss))}, (a, b), str(tmp_path / "fit.png"))
  assert Image.open(tmp_path / "fit.png").size == (640, 440)


def test_cli_fits_two_real_runs(tmp_path):
  runs = []
  for width in (32, 64):
    config = tiny_config(**{"model.width": width, "train.num_steps": 3,
                            "checkpoint.every_steps": 3})
    loop.train(config, str(tmp_path / f"w{width}"))
    runs.append(str(tmp_path / f"w{width}"))
  assert flops_per_step(tiny_config(**{"model.width": 64})) > 2 * flops_per_step(tiny_config())
  result = run_cli("videogen.scaling_fit", f"--runs={','.join(runs)}",
                   f"--output={tmp_path / 'fit.png'}", check=True)
  report = json.loads(result.stdout)
  assert set(report["final_points"]) == {"w32", "w64"} and np.isfinite(report["b"])
  assert Image.open(tmp_path / "fit.png").format == "PNG"
