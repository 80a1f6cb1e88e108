"""Export a training run's EMA params (no optimizer state) plus its config.

    python -m videogen.export --workdir DIR --output OUT
    python -m videogen.sample --checkpoint OUT --prompt ... --output video.mp4
"""
import os
import sys

from absl import flags

from videogen.config import exit_with_error, parse_flags_or_exit

_WORKDIR = flags.DEFINE_string("workdir", None, "Training directory to export from.",
                               required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Export directory (must not exist).", required=True)


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  if os.path.exists(_OUTPUT.value):
    exit_with_error(f"--output {_OUTPUT.value!r} already exists; choose a new directory")
  from videogen import checkpoints
  from videogen.generate import load_or_exit
  generator = load_or_exit(_WORKDIR.value)
  checkpoints.export_params(_OUTPUT.value, generator.params, generator.config)
  print(_OUTPUT.value)


if __name__ == "__main__":
  main(sys.argv)
