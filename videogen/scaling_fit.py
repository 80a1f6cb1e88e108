"""Fit a loss-vs-compute power law to a sweep's runs and plot it.

    python -m videogen.scaling_fit --runs DIR1,DIR2,... --output fit.png

Each run's training compute is `step × train-step FLOPs` (the analytic per-layout counter
at the run's own config and batch); its loss is the mean of its last three logged losses.
The fit is least squares in log-log space, `L = a · C^(−b)`, over the runs' final points.
Writes the plot (every run's loss curve, the fit) and prints the fit as JSON.
"""
import json
import sys

from absl import flags

from videogen.cli import exit_with_error, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_RUNS = flags.DEFINE_list("runs", None, "Training directories of the sweep.")
_OUTPUT = flags.DEFINE_string("output", "scaling.png", "PNG to write.")
flags.mark_flags_as_required(["runs"])


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  # Imported once the flags are parsed: `--help` answers before jax loads.
  import numpy as np
  from videogen import checkpoints
  from videogen.eval.scaling import fit_power_law, plot, run_curve
  from videogen.training.metrics import read_metrics
  try:
    curves = {run.rstrip("/").split("/")[-1]:
              run_curve(checkpoints.load_config(run), read_metrics(run), run)
              for run in _RUNS.value}
  except (checkpoints.CheckpointNotFoundError, FileNotFoundError, ValueError) as e:
    exit_with_error(str(e))
  if len(curves) < 2:
    exit_with_error("a power law needs at least two runs")
  finals = {name: (cs[-1], float(np.mean(ls[-3:]))) for name, (cs, ls) in curves.items()}
  a, b = fit_power_law(*zip(*finals.values()))
  plot(curves, (a, b), _OUTPUT.value)
  print(json.dumps({"a": a, "b": b, "final_points": finals, "plot": _OUTPUT.value}, indent=2))


if __name__ == "__main__":
  main(sys.argv)
