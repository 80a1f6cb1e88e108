"""Two real `jax.distributed` processes on localhost (4 fake CPU devices each) train exactly
like one process with 8 devices: per-host data rows, coordinated Orbax checkpoints, and a
hybrid mesh whose data axis crosses the processes (`mesh.dcn_data`, as slices of a TPU
multislice job or nodes of a GPU cluster) while FSDP stays inside each."""
import json
import os
import subprocess
import sys

import numpy as np

from conftest import REPO


def test_two_processes_match_one_process(tmp_path):
  common = ["--config.train.num_steps=3", "--config.checkpoint.every_steps=3"]
  env = {**os.environ, "PY": sys.executable, "DEVICES_PER_PROCESS": "4"}
  hybrid = ["--config.mesh.dcn_data=2", "--config.mesh.data=1", "--config.mesh.fsdp=-1"]
  two = subprocess.run(["bash", "launch/local_multiprocess.sh", "2", "configs/tiny.py:test",
                        str(tmp_path / "two"), *common, *hybrid], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=400)
  assert two.returncode == 0, two.stderr[-3000:]
  one = subprocess.run([sys.executable, "-m", "videogen.train", "--config=configs/tiny.py:test",
                        f"--workdir={tmp_path / 'one'}", *common], cwd=REPO,
                       capture_output=True, text=True, timeout=400)
  assert one.returncode == 0, one.stderr[-3000:]
  losses = lambda d: [json.loads(l)["loss"] for l in open(tmp_path / d / "metrics.jsonl")]
  assert len(losses("two")) == 3
  assert "mesh {'data': 2, 'fsdp': 4" in two.stderr
  np.testing.assert_allclose(losses("two"), losses("one"), rtol=1e-5)
  data_states = sorted(f for f in os.listdir(tmp_path / "two" / "checkpoints" / "3" / "data")
                       if f.endswith(".json"))
  assert data_states == ["process_0-of-2.json", "process_1-of-2.json"]


def test_dcn_axes_need_as_many_slices_or_processes():
  import pytest
  from videogen.config import base_config
  from videogen.parallel.mesh import create_mesh
  config = base_config()
  config.mesh.dcn_data = 2
  with pytest.raises(ValueError, match="spans 2 slices or processes; there are 1 slices and 1"):
    create_mesh(config.mesh)
