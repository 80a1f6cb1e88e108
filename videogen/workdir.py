"""Every path in a run directory, on a local disk or in a bucket (`gs://`).

    WORKDIR/
      checkpoints/<step>/<item>/   Orbax training checkpoints (videogen/checkpoints.py), one
                              folder per item of `CHECKPOINT_ITEMS`
      set_aside/step_<N>.unrestorable/   a checkpoint that failed to restore, kept for a look
      metrics.jsonl           one JSON object per logged step
      tensorboard/            TensorBoard events
      jax_cache/              the persistent compilation cache (unless `--compile_cache` or
                              JAX_COMPILATION_CACHE_DIR names another folder, e.g. a local one
                              for a bucket workdir)
      eval/step_<N>/          the evaluation during training at step N: an evaluation folder
      eval/                   `videogen.evaluate`'s evaluation folder when no --output_dir is
                              given
      spiece.model            a tokenizer trained for this run (a run file: exports carry it)
      report.html             `videogen.report`'s page

    an evaluation folder (the two above, or `videogen.evaluate --output_dir`):
      report.json             the judge's and the metrics' figures
      contact_sheet.png       every video's frames with its prompt and verdict
      videos/NN.webm          the sample videos (evaluations during training)

Paths are `etils.epath.Path`s, so local folders and `gs://bucket/run` work alike: Orbax and
TensorStore write checkpoint arrays to the bucket directly, the small files go through
`epath` (gcsfs on a bucket; `EPATH_USE_TF=true` selects TensorFlow's gfile instead).
A local path is made absolute here, once; nothing else in videogen joins paths under a
workdir or opens its files with `open()` (tests/test_layering.py checks the joins).

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
REPORT_PAGE_FILE = "report.html"
# Items of a training checkpoint, each a folder of checkpoints/<step>/ (videogen/checkpoints.py
# says what each holds); a JSON item (Orbax's JsonSave) is one file, `JSON_ITEM_FILE`, in it.
CHECKPOINT_ITEMS = ("state", "ema", "data", "config", "metadata", "digests")
JSON_ITEM_FILE = "metadata"
UNRESTORABLE_SUFFIX = ".unrestorable"
STEP_PREFIX = "step_"  # eval/step_N, set_aside/step_N.unrestorable
# An evaluation folder's files.
EVAL_REPORT_FILE = "report.json"
CONTACT_SHEET_FILE = "contact_sheet.png"
EVAL_VIDEOS = "videos"
EVAL_VIDEO_SUFFIX = ".webm"
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


def checkpoint(workdir, step: int) -> epath.Path:
  """WORKDIR/checkpoints/<step>: one training checkpoint."""
  return checkpoints(workdir) / str(step)


def checkpoint_item(workdir, step: int, item: str) -> epath.Path:
  """WORKDIR/checkpoints/<step>/<item>, `item` one of `CHECKPOINT_ITEMS`."""
  if item not in CHECKPOINT_ITEMS:
    raise ValueError(f"{item!r} is not a checkpoint item (one of {CHECKPOINT_ITEMS})")
  return checkpoint(workdir, step) / item


def checkpoint_json(workdir, step: int, item: str) -> epath.Path:
  """The one file of a JSON item (config, metadata, digests) of checkpoint `step`."""
  return checkpoint_item(workdir, step, item) / JSON_ITEM_FILE


def set_aside(workdir) -> epath.Path:
  """Where checkpoints that failed to restore are moved (never deleted): WORKDIR/set_aside."""
  return path(workdir) / SET_ASIDE


def unrestorable(workdir, step: int) -> epath.Path:
  """Where checkpoint `step` goes when it fails to restore: set_aside/step_<N>.unrestorable."""
  return set_aside(workdir) / f"{STEP_PREFIX}{step}{UNRESTORABLE_SUFFIX}"


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
  return base if step is None else base / f"{STEP_PREFIX}{step}"


def eval_steps(workdir) -> list[tuple[int, epath.Path]]:
  """(step, WORKDIR/eval/step_N) of each evaluation during training, in step order; [] when
  there is none."""
  root = eval_dir(workdir)
  found = []
  if root.is_dir():
    for folder in root.iterdir():
      number = folder.name.removeprefix(STEP_PREFIX)
      if folder.name.startswith(STEP_PREFIX) and number.isdigit() and folder.is_dir():
        found.append((int(number), folder))
  return sorted(found)


def eval_report_file(folder) -> epath.Path:
  """An evaluation folder's report.json."""
  return path(folder) / EVAL_REPORT_FILE


def contact_sheet_file(folder) -> epath.Path:
  """An evaluation folder's contact_sheet.png."""
  return path(folder) / CONTACT_SHEET_FILE


def eval_videos(folder) -> epath.Path:
  """An evaluation folder's videos/ (its sample videos)."""
  return path(folder) / EVAL_VIDEOS


def eval_video(folder, number: int) -> epath.Path:
  """An evaluation folder's videos/NN.webm, video `number`."""
  return eval_videos(folder) / f"{number:02d}{EVAL_VIDEO_SUFFIX}"


def eval_video_files(folder) -> list[epath.Path]:
  """An evaluation folder's saved videos (`eval_video`), in number order; [] when none."""
  videos = eval_videos(folder)
  return sorted(videos.glob(f"*{EVAL_VIDEO_SUFFIX}")) if videos.is_dir() else []


def tokenizer_file(workdir) -> epath.Path:
  return path(workdir) / TOKENIZER_FILE


def run_file(directory, name: str) -> epath.Path:
  """DIRECTORY/name: a file the run keeps at the top of its workdir, which an export carries
  at the top of its own (`videogen.text.conditioning.run_files`, e.g. `TOKENIZER_FILE`)."""
  return path(directory) / name


def report_page(workdir) -> epath.Path:
  """WORKDIR/report.html, `videogen.report`'s default page."""
  return path(workdir) / REPORT_PAGE_FILE


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
