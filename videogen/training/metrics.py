"""Metric sinks: WORKDIR/metrics.jsonl (one object per logged step) and TensorBoard events,
local or in a bucket (videogen/workdir.py). At each evaluation TensorBoard also gets the
labelled contact sheet and the sample videos (animated GIF image summaries, encoded here with
Pillow: tensorboardX's own `add_video` needs moviepy)."""
import jax
import numpy as np

from videogen import video_io
from videogen import workdir as workdir_lib


class MetricsWriter:
  """Writes from process 0 only; other processes get a silent writer. A resumed run
  (`resumed_step`) first drops the rows logged after that checkpoint, so each step is
  logged once however often the run was preempted."""

  def __init__(self, workdir: str, resumed_step: int = 0):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    # tensorboardX imports torch when it is installed (~1.5 s): only the writing process loads it.
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

  def write_evaluation(self, step: int, sheet_hwc: np.ndarray, videos, prompts: list[str],
                       fps: int = 8) -> None:
    """`eval/contact_sheet` (the labelled sheet), `eval/video/NN` (each sample, an animated
    GIF) and `eval/prompts` (what each NN was asked for), beside the step's scalars."""
    if not self.enabled:
      return
    from tensorboardX.proto.summary_pb2 import Summary  # as SummaryWriter above
    self._tensorboard.add_image("eval/contact_sheet", np.asarray(sheet_hwc), step,
                                dataformats="HWC")
    values = []
    for number, video in enumerate(videos):
      video = np.asarray(video, np.uint8)
      upscale = video_io.display_upscale(*video.shape[1:3])
      image = Summary.Image(height=video.shape[1] * upscale, width=video.shape[2] * upscale,
                            colorspace=3,
                            encoded_image_string=video_io.gif_bytes(video, fps, upscale))
      values.append(Summary.Value(tag=f"eval/video/{number:02d}", image=image))
    self._tensorboard._get_file_writer().add_summary(Summary(value=values), step)
    self._tensorboard.add_text("eval/prompts", "\n\n".join(
        f"{number:02d}: {prompt}" for number, prompt in enumerate(prompts)), step)

  def close(self) -> None:
    if self.enabled:
      self._tensorboard.close()


def read_metrics(workdir: str) -> list[dict]:
  return workdir_lib.JsonLines(workdir_lib.metrics_file(workdir)).read()
