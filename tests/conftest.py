"""Test set-up: 8 fake CPU devices and a persistent compilation cache, before JAX loads."""
import os

# LLVM at -O0 unless XLA_FLAGS names a level, in-process and in every subprocess: the suite
# is compile-bound and checks what programs compute, not how fast (the whole suite went from
# 1,237 to 848 s on 2 cores). `make bench`, the demo and users compile at XLA's default.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _flags:
  _flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One persistent compilation cache for the suite, in-process and in every CLI subprocess
# (which inherit these; `videogen.train` takes JAX's own variable over WORKDIR/jax_cache).
# A set JAX_COMPILATION_CACHE_DIR wins: an empty folder there measures a clean clone.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_REPO, ".cache", "jax"))
# Every program, however quick to compile: each CLI run would otherwise recompile the ~170
# small ones Orbax's save and restore build (5-6 s a run; `videogen.train` reads this too).
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def tiny_config(**overrides):
  """The `configs/tiny.py:test` config with dotted-key overrides."""
  from videogen.config import load_config_file
  config = load_config_file(os.path.join(_REPO, "configs", "tiny.py:test"))
  for key, value in overrides.items():
    section, _, name = key.rpartition(".")
    node = config
    for part in filter(None, section.split(".")):
      node = node[part]
    if name not in node:  # a typo would otherwise add a key nothing reads
      raise KeyError(f"tiny_config: no config key {key!r}")
    node[name] = value
  return config


def word_features(config):
  """The data pipeline's caption → `tokens`/`token_mask` map for a words-tokenizer config."""
  from videogen.data.synthetic import VOCABULARY
  from videogen.text.conditioning import tokenizer_from_config
  from videogen.text.tokenizer import TokenFeatures
  return TokenFeatures(tokenizer_from_config(config, vocabulary=VOCABULARY))


@pytest.fixture
def config():
  return tiny_config()


REPO = _REPO


def run_cli(*args, timeout=300, check=False):
  """`python -m ARGS` in a real subprocess (CLIs own their absl flags, so never in-process)."""
  import subprocess
  import sys
  result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
  if check and result.returncode != 0:
    raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stderr[-3000:]}")
  return result


def perturbed(params, scale=0.2, seed=1):
  """`params` with every leaf moved by `scale`·N(0, 1) noise, so zero-initialised gates and
  output layers matter. Numpy noise: `jax.random.normal` per leaf compiles a program per
  parameter shape (~7 s for a two-block DiT, eager or jitted)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: (p + scale * rng.standard_normal(p.shape)).astype(p.dtype),
                      jax.device_get(params))


def one_line_error(result):
  """A CLI run that failed with exactly one `error: …` line on stderr; returns that line."""
  assert result.returncode != 0
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith("error: ")
  return lines[0]


def once_per_run(tmp_path_factory, name: str, build) -> str:
  """`build(workdir)` once per test run, shared by every pytest-xdist worker: under
  `--dist loadfile` the files that need it usually land on different workers; the first to
  ask builds it in the run's temp directory common to its workers, holding a file lock, and
  the others wait for it and read it. Returns the workdir."""
  if not os.environ.get("PYTEST_XDIST_WORKER"):
    workdir = str(tmp_path_factory.mktemp(name))
    build(workdir)
    return workdir
  import fcntl
  shared = tmp_path_factory.getbasetemp().parent  # this run's pytest-N, not earlier runs'
  workdir, done = shared / name, shared / f"{name}.done"
  with open(shared / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if not done.exists():
      build(str(workdir))
      done.touch()
  return str(workdir)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
  """A 4-step CLI run of configs/tiny.py:test on all 8 fake devices (data=-1 → 8-way data
  parallel), evaluated at steps 2 and 4, shared by the test files that sample, export, evaluate
  or report on it (read-only), on every worker (`once_per_run`)."""
  import pathlib

  def train(workdir):
    result = run_cli("videogen.train", "--config=configs/tiny.py:test", f"--workdir={workdir}",
                     "--config.eval.every_steps=2", "--config.eval.num_prompts=2",
                     "--config.eval.steps=2", check=True)
    # The closing summary names what the run wrote.
    assert f"trained to step 4 of 4 in {workdir}: checkpoints {workdir}/checkpoints" in (
        result.stdout), result.stdout

  return pathlib.Path(once_per_run(tmp_path_factory, "run", train))


def vae_config(**overrides):
  from videogen.config import load_config_file
  config = load_config_file(os.path.join(_REPO, "configs", "vae_tiny.py:test"))
  for key, value in overrides.items():
    node = config
    *sections, name = key.split(".")
    for part in sections:
      node = node[part]
    node[name] = value
  return config


@pytest.fixture(scope="session")
def trained_vae(tmp_path_factory):
  """A VAE trained 30 steps on synthetic clips, shared by the VAE and latent-DiT tests.
  Held-out PSNR goes 6.6 → 16.7 dB and SSIM 0.004 → 0.19 by step 30 (measured; 17.1 dB and
  0.21 by step 60): well over the +6 dB and +0.1 bars.

  Trained once per test run, shared by the workers (`once_per_run`)."""
  config = vae_config(**{"train.num_steps": 30, "checkpoint.every_steps": 30,
                         "train.log_every": 15})
  from videogen.training import loop
  return once_per_run(tmp_path_factory, "trained_vae", lambda w: loop.train(config, w)), config


@pytest.fixture(scope="session")
def gcs_bucket(tmp_path_factory):
  """An empty bucket on a GCS emulator running on localhost for the session."""
  import gcs_emulator
  server, bucket = gcs_emulator.start(str(tmp_path_factory.mktemp("gcs")))
  yield bucket
  server.terminate()
  server.wait(timeout=10)


def write_random_i3d(path: str) -> str:
  """He-scaled random I3D weights with unit BatchNorm, in the converted format FVD reads
  (jitting InceptionI3d.init would take ~15 s on CPU)."""
  import numpy as np
  from videogen.eval import i3d
  from videogen.formats.weight_files import write_safetensors
  rng = np.random.default_rng(0)
  ones = ("var", "scale")
  write_safetensors(path, {
      "/".join(key): (np.ones(shape, np.float32) if key[-1] in ones else
                      rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape).astype(np.float32)
                      if len(shape) > 1 else np.zeros(shape, np.float32))
      for key, shape in i3d.expected_shapes().items()})
  return path
