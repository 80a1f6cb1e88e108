"""Metric sinks: WORKDIR/metrics.jsonl (one object per logged step) and TensorBoard events,
local or in a bucket (videogen/workdir.py)."""
import jax

from videogen import workdir as workdir_lib


class MetricsWriter:
  """Writes from process 0 only; other processes get a silent writer. A resumed run
  (`resumed_step`) first drops the rows logged after that checkpoint, so each step is
  logged once however often the run was preempted."""

  def __init__(self, workdir: str, resumed_step: int = 0):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    from tensorboardX import SummaryWriter
    self._jsonl = workdir_lib.JsonLines(workdir_lib.metrics_file(workdir))
    self._jsonl.truncate_after(resumed_step)
    self._tensorboard = SummaryWriter(str(workdir_lib.tensorboard_dir(workdir)),
                                      purge_step=resumed_step + 1 if resumed_step else None)

  def write(self, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    self._jsonl.append({"step": step, **metrics})
    for name, value in metrics.items():
      self._tensorboard.add_scalar(name, value, step)

  def close(self) -> None:
    if self.enabled:
      self._tensorboard.close()


def read_metrics(workdir: str) -> list[dict]:
  return workdir_lib.JsonLines(workdir_lib.metrics_file(workdir)).read()
