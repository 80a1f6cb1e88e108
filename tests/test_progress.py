"""Honest progress and labelled outputs: the training bar counts finished steps, the contact
sheet carries each row's prompt and verdict (the CLIs' bars and summaries: test_cli.py)."""
import io

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from videogen.eval import report as report_lib
from videogen.training.loop import FinishedStepBar


def test_training_bar_counts_finished_steps_not_dispatched_ones():
  @jax.jit
  def step(x):  # ~tens of ms on CPU: dispatch returns long before it finishes
    return jax.lax.fori_loop(0, 40, lambda _, y: jnp.tanh(y @ y.T) / 8, x)

  bar = tqdm.tqdm(total=8, file=io.StringIO())
  finished = FinishedStepBar(bar, lead=2)
  x = jnp.ones((256, 256))
  losses = []
  for k in range(8):
    x = step(x)
    losses.append(x[0, 0])
    finished.dispatched(losses[-1])
    assert bar.n == max(0, k + 1 - 2)  # two steps stay queued on the device
    assert all(loss.is_ready() for loss in losses[:bar.n])  # counted = finished
  finished.wait()
  assert bar.n == 8 and all(loss.is_ready() for loss in losses)


def _pixels(sheet, colour):
  return int(np.all(np.abs(sheet.astype(int) - colour) < 40, axis=-1).sum())


def test_contact_sheet_rows_carry_prompt_and_verdict():
  videos = [np.full((4, 8, 8, 3), 60 * i, np.uint8) for i in range(3)]
  checks = [{"colour": True, "direction": True}, {"colour": True, "direction": False},
            {"colour": False, "direction": False}]
  report = {"per_video": [{"prompt": f"prompt {i}", "checks": c} for i, c in enumerate(checks)]}
  sheet = report_lib.contact_sheet(report, videos, upscale=4)
  rows = np.split(sheet, 3)
  assert sheet.shape[1] > 4 * 8 * 4 + 40  # a label column right of the frames
  labels = [row[:, 4 * 8 * 4:] for row in rows]
  assert _pixels(labels[0], (0, 140, 0)) > 5 and _pixels(labels[0], (210, 0, 0)) == 0
  assert _pixels(labels[1], (210, 0, 0)) > 5 and _pixels(labels[1], (0, 140, 0)) == 0
  assert _pixels(labels[2], (210, 0, 0)) > _pixels(labels[1], (210, 0, 0))  # two failed checks
  # Each row's prompt is drawn in black: a different prompt, different pixels.
  other = report_lib.contact_sheet(
      {"per_video": [dict(v, prompt="another") for v in report["per_video"]]}, videos)
  assert not np.array_equal(other, sheet) and _pixels(labels[0], (0, 0, 0)) > 5
  # Without the judge: prompts only.
  plain = report_lib.contact_sheet({}, videos, ["a", "b", "c"])
  assert _pixels(plain, (210, 0, 0)) == _pixels(plain, (0, 140, 0)) == 0
