"""Every path in a run directory, on a local disk or in a bucket (`gs://`).

    WORKDIR/
      checkpoints/<step>/     Orbax training checkpoints (videogen/checkpoints.py)
      set_aside/step_<N>.unrestorable/   a checkpoint that failed to restore, kept for a look
      metrics.jsonl           one JSON object per logged step
      tensorboard/            TensorBoard events
      jax_cache/              the persistent compilation cache (unless `--compile_cache` or
                              JAX_COMPILATION_CACHE_DIR names another folder, e.g. a local one
                              for a bucket workdir)
      eval/step_<N>/          the reports and contact sheets of evaluations during training
      eval/                   `videogen.evaluate`'s report when no --output_dir is given
      spiece.model            a tokenizer trained for this run

Paths are `etils.epath.Path`s, so local folders and `gs://bucket/run` work alike: Orbax and
TensorStore write checkpoint arrays to the bucket directly, the small files go through
`epath` (gcsfs on a bucket; `EPATH_USE_TF=true` selects TensorFlow's gfile instead).
A local path is made absolute here, once; nothing else in videogen joins paths under a
workdir or opens its files with `open()`.

Tests and emulators: TensorStore reads `TENSORSTORE_GCS_HTTP_URL`, gcsfs and
google-cloud-storage read `STORAGE_EMULATOR_HOST` (tests/gcs_emulator.py).
"""
import contextlib
import json
import logging
import os
import queue
import tempfile
import threading

# gcsfs (the `gcs` extra) rather than TensorFlow's gfile for gs:// paths: read by etils at the
# first bucket path, so it must precede any.
os.environ.setdefault("EPATH_USE_TF", "false")

from etils import epath  # noqa: E402

CHECKPOINTS = "checkpoints"
SET_ASIDE = "set_aside"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD = "tensorboard"
COMPILE_CACHE = "jax_cache"
EVAL = "eval"
TOKENIZER_FILE = "spiece.model"
# How long start-up waits for a workdir to answer (VIDEOGEN_REACH_TIMEOUT_S overrides).
REACH_TIMEOUT_S = float(os.environ.get("VIDEOGEN_REACH_TIMEOUT_S", 30.0))


class WorkdirError(OSError):
  """A run directory that cannot be reached or written: one line for the user."""


def path(location) -> epath.Path:
  """`location` as a Path: a bucket URI as it is, a local path made absolute."""
  location = os.fspath(location)
  if is_remote(location):
    return epath.Path(location)
  return epath.Path(os.path.abspath(location))


def is_remote(location) -> bool:
  return "://" in os.fspath(location)


def checkpoints(workdir) -> epath.Path:
  return path(workdir) / CHECKPOINTS


def set_aside(workdir) -> epath.Path:
  """Where checkpoints that failed to restore are moved (never deleted): WORKDIR/set_aside."""
  return path(workdir) / SET_ASIDE


def metrics_file(workdir) -> epath.Path:
  return path(workdir) / METRICS_FILE


def tensorboard_dir(workdir) -> epath.Path:
  return path(workdir) / TENSORBOARD


def compile_cache(workdir, override: str | None = None) -> epath.Path:
  """The persistent compilation cache: `override` when given (a local folder for a bucket
  workdir avoids many small remote reads at start-up), else JAX's own
  `JAX_COMPILATION_CACHE_DIR` when set, else WORKDIR/jax_cache."""
  chosen = override or os.environ.get("JAX_COMPILATION_CACHE_DIR")
  return path(chosen) if chosen else path(workdir) / COMPILE_CACHE


def eval_dir(workdir, step: int | None = None) -> epath.Path:
  """WORKDIR/eval, or WORKDIR/eval/step_N for the evaluation at training step N."""
  base = path(workdir) / EVAL
  return base if step is None else base / f"step_{step}"


def tokenizer_file(workdir) -> epath.Path:
  return path(workdir) / TOKENIZER_FILE


def ensure_reachable(workdir) -> epath.Path:
  """Creates `workdir` if needed and proves it can be written within `REACH_TIMEOUT_S`: a
  missing bucket or an unreachable endpoint is one WorkdirError line at start-up, not minutes
  of retries or a traceback at the first checkpoint."""
  root = path(workdir)
  # gcsfs logs each failed retry with a traceback; the one line below says it all.
  client_log = logging.getLogger("gcsfs")
  level, client_log.level = client_log.level, logging.CRITICAL + 1
  outcome = queue.Queue()

  def touch():
    try:
      root.mkdir(parents=True, exist_ok=True)
      (root / ".reachable").write_text("ok")
      outcome.put(None)
    except Exception as e:  # noqa: BLE001 (any client's error: gcsfs, google-auth, OSError)
      outcome.put(e)

  threading.Thread(target=touch, daemon=True).start()  # daemon: a hung client cannot block exit
  try:
    error = outcome.get(timeout=REACH_TIMEOUT_S)
  except queue.Empty:
    raise WorkdirError(f"workdir {workdir}: no answer within {REACH_TIMEOUT_S:.0f} s (is the "
                       f"bucket's endpoint reachable?)") from None
  client_log.setLevel(level)
  if error is not None:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise WorkdirError(f"workdir {workdir} cannot be written: {first}")
  return root


def read_json(file) -> dict:
  return json.loads(epath.Path(file).read_text())


def write_json(file, value) -> None:
  epath.Path(file).write_text(json.dumps(value, indent=2))


def local_copy(file):
  """A context giving a local path that holds `file`'s bytes, for readers that need one (a
  bucket object is downloaded to a temporary file first; a local file is used in place)."""
  return _through_local_file(file, download=True)


def local_target(file):
  """A context giving a local path to write `file` through: a bucket object is uploaded when
  the block ends without error; a local file is written in place."""
  return _through_local_file(file, download=False)


@contextlib.contextmanager
def _through_local_file(file, download: bool):
  file = epath.Path(file)
  if not is_remote(file):
    yield str(file)
    return
  with tempfile.TemporaryDirectory() as folder:
    local = epath.Path(folder) / file.name
    if download:
      file.copy(local)
    yield str(local)
    if not download:
      local.copy(file, overwrite=True)


class JsonLines:
  """An append-only JSON-lines file, local or in a bucket. Bucket objects cannot be appended
  to, so there each `append` rewrites the object (metrics files are small); locally it
  appends. `truncate_after(step)` drops rows logged after a resumed checkpoint's step, so a
  preempted run logs each step once."""

  def __init__(self, file):
    self.file = epath.Path(file)
    self._remote = is_remote(self.file)
    self._rows = self.read() if self._remote else None

  def read(self) -> list[dict]:
    if not self.file.exists():
      return []
    return [json.loads(line) for line in self.file.read_text().splitlines() if line.strip()]

  def truncate_after(self, step: int) -> None:
    rows = self.read()
    kept = [row for row in rows if row.get("step", 0) <= step]
    if len(kept) != len(rows):
      self._rewrite(kept)

  def append(self, row: dict) -> None:
    if self._remote:
      self._rows.append(row)
      self._rewrite(self._rows)
      return
    self.file.parent.mkdir(parents=True, exist_ok=True)
    with self.file.open("a") as f:
      f.write(json.dumps(row) + "\n")

  def _rewrite(self, rows: list[dict]) -> None:
    if self._remote:
      self._rows = list(rows)
    self.file.write_text("".join(json.dumps(row) + "\n" for row in rows))
