"""A preempted pod job, rehearsed: two real `jax.distributed` processes × 4 CPU devices
(`mesh.dcn_data=2`, FSDP inside each), the workdir in a bucket on a GCS emulator. SIGTERM
reaches one process only; both stop at the same step, save one checkpoint and exit 0; the
restart continues with the losses of an uninterrupted run; an export from both processes
equals one process's; FVD and CLIP scores computed by both processes equal one process's."""
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO
from test_gcs_workdir import CONFIG, logged_rows, ok, saved_steps

POD = ["--config.mesh.dcn_data=2", "--config.mesh.data=1", "--config.mesh.fsdp=-1"]
# A constant learning rate after warm-up: the schedule then ignores train.num_steps, so runs
# of different lengths take the same steps.
FLAT_LR = "--config.train.final_lr_fraction=1.0"


def pod_env(base: dict, process: int, port: int) -> dict:
  """Process `process` of a two-process job with 4 CPU devices each. Without the suite's
  shared persistent compilation cache: with it, a two-process export hung in CI (not
  diagnosed; the training runs get their own cache through --compile_cache)."""
  env = {k: v for k, v in base.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  # The suite's other XLA flags stay (the one-process references compile under them too).
  flags = [f for f in base.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  return {**env, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
          "JAX_PROCESS_ID": str(process),
          "XLA_FLAGS": " ".join([*flags, "--xla_force_host_platform_device_count=4"])}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_pod(bucket, cwd, module, *args):
  """`python -m MODULE ARGS` as process 0 and 1 of a two-process job on this machine."""
  port = free_port()
  return [subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=pod_env(bucket.env, i, port)) for i in range(2)]


def finish(processes, timeout=300):
  results = [p.communicate(timeout=timeout) for p in processes]
  for p, (_, stderr) in zip(processes, results):
    assert p.returncode == 0, stderr[-3000:]
  return [stderr for _, stderr in results]


def safetensors_in(bucket, prefix):
  from safetensors.numpy import load
  return load(bucket.read(f"{prefix}/model.safetensors"))


def test_sigterm_to_one_host_of_a_pod_saves_once_and_resumes_exactly(gcs_bucket, tmp_path):
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  workdir = gcs_bucket.uri("pod")
  train = ["videogen.train", f"--config={CONFIG}", f"--workdir={workdir}", FLAT_LR, *POD,
           f"--compile_cache={tmp_path / 'pod_cache'}"]
  pod = start_pod(gcs_bucket, cwd, *train, "--config.train.num_steps=100000",
                  "--config.checkpoint.every_steps=100000")
  deadline = time.time() + 240
  while time.time() < deadline and not logged_rows(gcs_bucket, "pod"):
    assert all(p.poll() is None for p in pod), pod[0].communicate()[1][-3000:]
    time.sleep(0.3)
  pod[1].send_signal(signal.SIGTERM)  # process 1 logs nothing: only the sync point tells 0
  stderr = finish(pod)
  assert "SIGTERM" in stderr[0] and "mesh {'data': 2, 'fsdp': 4" in stderr[0]
  stopped = logged_rows(gcs_bucket, "pod")[-1]["step"]
  assert saved_steps(gcs_bucket, "pod") == [stopped] and stopped < 100000
  data_states = [n.rsplit("/", 1)[1] for n in gcs_bucket.objects(f"pod/checkpoints/{stopped}/data/")
                 if n.endswith(".json")]
  assert sorted(data_states) == ["process_0-of-2.json", "process_1-of-2.json"]

  finish(start_pod(gcs_bucket, cwd, *train, f"--config.train.num_steps={stopped + 2}"))
  one = tmp_path / "one"
  ok(subprocess.run([sys.executable, "-m", "videogen.train", f"--config={CONFIG}",
                     f"--workdir={one}", FLAT_LR, f"--config.train.num_steps={stopped + 2}",
                     "--config.checkpoint.every_steps=100000"],  # the losses, not checkpoints
                    cwd=REPO, capture_output=True, text=True, timeout=300))
  pod_losses = [row["loss"] for row in logged_rows(gcs_bucket, "pod") if "loss" in row]
  one_losses = [json.loads(line)["loss"] for line in open(one / "metrics.jsonl")]
  assert len(pod_losses) == stopped + 2
  np.testing.assert_allclose(pod_losses, one_losses, rtol=1e-5)

  # Both processes export (each gathers its shards; process 0 writes); one process exports
  # the same checkpoint onto its own single-host mesh: the same tensors.
  export = ["videogen.export", f"--workdir={workdir}", "--format=safetensors"]
  finish(start_pod(gcs_bucket, cwd, *export, f"--output={gcs_bucket.uri('pod_export2')}"))
  ok(subprocess.run([sys.executable, "-m", *export, f"--output={gcs_bucket.uri('pod_export1')}"],
                    cwd=cwd, env=gcs_bucket.env, capture_output=True, text=True, timeout=300))
  two, single = safetensors_in(gcs_bucket, "pod_export2"), safetensors_in(gcs_bucket, "pod_export1")
  assert two.keys() == single.keys() and len(two) > 10
  for name in two:
    np.testing.assert_array_equal(two[name], single[name], err_msg=name)
  assert os.listdir(cwd) == []


def test_fvd_and_clip_from_two_processes_equal_one_process(tmp_path):
  """FVD (I3D batches sharded over both processes' 8 devices, gathered back) and the CLIP
  score (each process scores on its own devices) agree with one process."""
  pytest.importorskip("transformers")
  from conftest import write_random_i3d
  from test_clip import EOS, _hf_clip, _write_tokenizer
  weights = write_random_i3d(str(tmp_path / "i3d.safetensors"))
  clip = tmp_path / "clip"
  clip.mkdir()
  vocab = _write_tokenizer(clip)
  _hf_clip("quick_gelu", vocab_size=len(vocab), eos=vocab[EOS], max_length=12).save_pretrained(
      clip, safe_serialization=True)
  script, port = os.path.join(REPO, "tests", "multihost_eval.py"), free_port()
  pod = [subprocess.Popen(
      [sys.executable, script, weights, str(clip), str(tmp_path / f"process{i}.json")],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=pod_env(os.environ, i, port)) for i in range(2)]
  finish(pod)
  ok(subprocess.run([sys.executable, script, weights, str(clip), str(tmp_path / "one.json")],
                    cwd=REPO, capture_output=True, text=True, timeout=300))
  one = json.load(open(tmp_path / "one.json"))
  for i in range(2):
    two = json.load(open(tmp_path / f"process{i}.json"))
    assert two["devices"] == 8 and one["fvd"] > 0
    np.testing.assert_allclose([two["fvd"], two["clip"]], [one["fvd"], one["clip"]], rtol=1e-5)
