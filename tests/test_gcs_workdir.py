"""Bucket workdirs end to end, against a real GCS API on localhost (tests/gcs_emulator.py):
train on gs://, preempt, resume, sample, export to gs://, sample the export and evaluate,
with nothing written to the local disk; a bucket that cannot be reached is one line."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from conftest import REPO, one_line_error

CONFIG = os.path.join(REPO, "configs", "tiny.py:test")


def run(bucket, cwd, *args, env=None, timeout=300):
  return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env or bucket.env,
                        capture_output=True, text=True, timeout=timeout)


def ok(result):
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def logged_rows(bucket, prefix):
  text = bucket.read(f"{prefix}/metrics.jsonl")
  return [json.loads(line) for line in (text or b"").decode().splitlines() if line.strip()]


def saved_steps(bucket, prefix):
  names = bucket.objects(f"{prefix}/checkpoints/")
  return sorted({int(n.split("/")[2]) for n in names if n.split("/")[2].isdigit()})


def preempt(bucket, cwd, workdir_prefix, extra=(), min_rows=3):
  """Starts a long training run on the bucket, SIGTERMs it once `min_rows` steps are logged;
  returns (the finished process, its stderr)."""
  process = subprocess.Popen(
      [sys.executable, "-m", "videogen.train", f"--config={CONFIG}",
       f"--workdir={bucket.uri(workdir_prefix)}",
       f"--compile_cache={os.environ['JAX_COMPILATION_CACHE_DIR']}",  # the flag, shown working
       "--config.train.num_steps=100000", "--config.checkpoint.every_steps=100000", *extra],
      cwd=cwd, env=bucket.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while time.time() < deadline and len(logged_rows(bucket, workdir_prefix)) < min_rows:
    assert process.poll() is None, process.communicate()[1][-3000:]
    time.sleep(0.3)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=180)
  return process, stderr


def test_a_bucket_workdir_trains_resumes_samples_exports_and_evaluates(gcs_bucket, tmp_path):
  cwd = tmp_path / "cwd"  # every command runs here: nothing may land in it (no ./gs:/…)
  cwd.mkdir()
  # Checked every 2 steps (not 10), SIGTERM stops the run at step 4 or so, not 10.
  process, stderr = preempt(gcs_bucket, cwd, "run",
                            extra=("--config.checkpoint.preemption_check_every=2",))
  assert process.returncode == 0 and "SIGTERM" in stderr, stderr[-3000:]
  stopped = logged_rows(gcs_bucket, "run")[-1]["step"]
  assert saved_steps(gcs_bucket, "run") == [stopped]

  # Resume two steps further: each step logged once, the run continues from the checkpoint.
  workdir = gcs_bucket.uri("run")
  ok(run(gcs_bucket, cwd, "videogen.train", f"--config={CONFIG}", f"--workdir={workdir}",
         f"--config.train.num_steps={stopped + 2}"))
  steps = [row["step"] for row in logged_rows(gcs_bucket, "run") if "loss" in row]
  assert steps == list(range(1, stopped + 3))
  assert saved_steps(gcs_bucket, "run")[-1] == stopped + 2
  assert gcs_bucket.read("run/spiece.model") is None  # tiny:test tokenizes words
  assert any(n.startswith("run/tensorboard/") for n in gcs_bucket.objects("run/"))
  again = ok(run(gcs_bucket, cwd, "videogen.train", f"--config={CONFIG}",
                 f"--workdir={workdir}",
                 f"--config.train.num_steps={stopped + 2}"))
  assert f"already at step {stopped + 2} of {stopped + 2}" in again.stderr

  # Sample the workdir; export to the bucket; the export samples the same video.
  sample = ["--prompt=a red circle moving right", "--steps=2", "--seed=3"]
  ok(run(gcs_bucket, cwd, "videogen.sample", f"--workdir={workdir}", *sample,
         f"--output={tmp_path / 'from_run.gif'}"))
  export = gcs_bucket.uri("exports/tiny")
  ok(run(gcs_bucket, cwd, "videogen.export", f"--workdir={workdir}", f"--output={export}"))
  assert {"exports/tiny/config.json", "exports/tiny/metadata.json"} <= set(
      gcs_bucket.objects("exports/tiny/"))
  ok(run(gcs_bucket, cwd, "videogen.sample", f"--checkpoint={export}", *sample,
         f"--output={tmp_path / 'from_export.gif'}"))
  from videogen import video_io
  np.testing.assert_array_equal(video_io.read_video(str(tmp_path / "from_export.gif")),
                                video_io.read_video(str(tmp_path / "from_run.gif")))

  # Evaluation writes its report next to the run, in the bucket.
  ok(run(gcs_bucket, cwd, "videogen.evaluate", f"--workdir={workdir}", "--num_prompts=2",
         "--steps=2", "--metrics=synthetic"))
  report = json.loads(gcs_bucket.read("run/eval/report.json"))
  assert report["num_videos"] == 2
  assert gcs_bucket.read("run/eval/contact_sheet.png")[:4] == b"\x89PNG"
  assert os.listdir(cwd) == []


def test_an_unreachable_endpoint_or_missing_bucket_is_one_line(gcs_bucket, tmp_path):
  import socket
  with socket.socket() as s:  # a port on this machine that refuses connections
    s.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{s.getsockname()[1]}"
  refused = {**gcs_bucket.env, "STORAGE_EMULATOR_HOST": closed, "TENSORSTORE_GCS_HTTP_URL": closed,
             "VIDEOGEN_REACH_TIMEOUT_S": "5"}
  args = ("videogen.train", f"--config={CONFIG}")
  start = time.time()
  line = one_line_error(run(gcs_bucket, tmp_path, *args, f"--workdir={gcs_bucket.uri('x')}",
                            env=refused, timeout=200))
  assert "gs://test-bucket/x" in line and "within 5 s" in line and time.time() - start < 60, line
  line = one_line_error(run(gcs_bucket, tmp_path, *args, "--workdir=gs://no-such-bucket/run"))
  assert "gs://no-such-bucket/run" in line
