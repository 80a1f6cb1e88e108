"""Train a model from a config file.

    python -m videogen.train --config configs/tiny.py --workdir DIR [--config.KEY=VALUE ...]

Re-running with the same DIR resumes from its latest checkpoint.
"""
import sys

from absl import flags
from ml_collections import config_flags

from videogen.cli import exit_with_error, parse_flags_or_exit
from videogen.config import ConfigError
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics: a "
                                "local path or a bucket (gs://bucket/run).")
_COMPILE_CACHE = flags.DEFINE_string(
    "compile_cache", None, "Persistent compilation cache folder (default: "
    "$JAX_COMPILATION_CACHE_DIR, else WORKDIR/jax_cache); e.g. a local folder when the workdir "
    "is a bucket.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv)
  from videogen.parallel.distributed import initialize_from_env
  initialize_from_env()
  from videogen.data.manifest import ManifestError
  from videogen.data.recaption import RecaptionError
  from videogen.text.embedding_cache import MissingCaptionError
  from videogen.training.loop import NonFiniteError, enable_compilation_cache, train
  from videogen.workdir import WorkdirError, compile_cache
  enable_compilation_cache(str(compile_cache(_WORKDIR.value, _COMPILE_CACHE.value)))
  try:
    state = train(_CONFIG.value, _WORKDIR.value)
  # A DiT that does not fit its VAE, a missing tokenizer or checkpoint, a stale text cache,
  # a bucket that cannot be reached.
  except (ConfigError, FileNotFoundError, ManifestError, RecaptionError,
          MissingCaptionError, WorkdirError, NonFiniteError) as e:
    exit_with_error(f"invalid config: {e}" if isinstance(e, ConfigError) else str(e))
  _summary(_CONFIG.value, _WORKDIR.value, int(state.step))


def _summary(config, workdir: str, step: int) -> None:
  """What the run wrote, and the next command."""
  import jax
  from videogen import workdir as workdir_lib
  if jax.process_index():
    return
  wrote = [f"checkpoints {workdir_lib.checkpoints(workdir)}",
           f"metrics {workdir_lib.metrics_file(workdir)}",
           f"TensorBoard {workdir_lib.tensorboard_dir(workdir)}"]
  if config.eval.every_steps:
    wrote.append(f"evaluations {workdir_lib.eval_dir(workdir)}")
  print(f"trained to step {step} of {config.train.num_steps} in {workdir}: {'; '.join(wrote)}")
  if config.task == "dit":
    print(f"sample: python -m videogen.sample --workdir {workdir} --prompt \"...\" "
          "--output sample.mp4")


if __name__ == "__main__":
  main(sys.argv)
