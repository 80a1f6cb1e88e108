"""`train.nonfinite`: a diverging run never saves non-finite params nor rotates out a finite
checkpoint ("halt" stops with one line naming the step and the last good checkpoint; "skip"
drops those updates and counts them); nothing samples or exports non-finite params."""
import os

import jax
import numpy as np
import pytest

from conftest import tiny_config
from videogen import checkpoints
from videogen.sampling.generator import Generator
from videogen.training import loop
from videogen.training.metrics import read_metrics

SETTINGS = {"train.num_steps": 12, "checkpoint.every_steps": 2, "checkpoint.keep": 2}
POISONED_STEPS = (7, 8)  # their batches carry a NaN pixel


@pytest.fixture
def poisoned_batches(monkeypatch):
  """Fault injection: the batches of POISONED_STEPS get a NaN, so their loss is NaN."""
  from videogen.data import pipeline
  real, count = pipeline.to_global_batch, [0]

  def poisoned(local, sharding):
    count[0] += 1
    if count[0] in POISONED_STEPS:
      video = np.array(local["video"], np.float32)
      video.flat[0] = np.nan
      local = {**local, "video": video}
    return real(local, sharding)

  monkeypatch.setattr(pipeline, "to_global_batch", poisoned)


def _saved_steps(workdir):
  return sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit())


def _all_finite(tree):
  return all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(tree))


def test_halt_stops_at_the_first_bad_step_and_keeps_the_good_checkpoints(tmp_path,
                                                                          poisoned_batches):
  with pytest.raises(loop.NonFiniteError, match=r"step (\d+): the loss or gradient is not "
                     r"finite.*last good checkpoint is step (\d+)") as error:
    loop.train(tiny_config(**SETTINGS), str(tmp_path))
  assert str(error.value).startswith(f"step {POISONED_STEPS[0]}: ")
  assert _saved_steps(tmp_path) == [4, 6]  # nothing at or after the bad step was saved
  assert "last good checkpoint is step 6 " in str(error.value)
  generator = Generator.load(str(tmp_path))  # the newest checkpoint is finite and samples
  assert _all_finite(generator.params)


def test_skip_drops_the_bad_updates_counts_them_and_saves_finite_params(tmp_path,
                                                                         poisoned_batches):
  state = loop.train(tiny_config(**SETTINGS, **{"train.nonfinite": "skip"}), str(tmp_path))
  assert int(state.step) == 12 and _all_finite(state.params) and _all_finite(state.ema)
  rows = [row for row in read_metrics(str(tmp_path)) if "loss" in row]
  assert [row["nonfinite"] for row in rows] == [float(r["step"] in POISONED_STEPS) for r in rows]
  assert [row["nonfinite_skipped"] for row in rows][-1] == len(POISONED_STEPS)
  assert _saved_steps(tmp_path) == [10, 12]
  assert _all_finite(Generator.load(str(tmp_path)).params)


def test_non_finite_params_are_refused_by_sample_and_export(tmp_path, trained):
  generator = Generator.load(str(trained))
  params = jax.tree.map(np.asarray, generator.params)
  first = jax.tree_util.tree_leaves_with_path(params)[0][0]
  broken = jax.tree_util.tree_map_with_path(
      lambda path, x: np.full_like(x, np.nan) if path == first else x, params)
  checkpoints.export_params(str(tmp_path / "export"), broken, generator.config)
  with pytest.raises(ValueError, match="non-finite params .*1 arrays"):
    Generator.load(str(tmp_path / "export"))
