"""A damaged newest checkpoint never stops a run: it is set aside (never deleted) with one
warning line, and the next older one is restored; none restoring is one clear error."""
import os
import shutil

import numpy as np
import pytest

from conftest import tiny_config
from videogen import checkpoints
from videogen.training import loop
from videogen.training.metrics import read_metrics


def _damage_array_bytes(step_dir):
  """Random bytes over every OCDBT data file of the `state` item (`…/d/<hash>`)."""
  rng = np.random.default_rng(0)
  for root, _, files in os.walk(step_dir / "state"):
    for name in files if os.path.basename(root) == "d" else ():
      path = os.path.join(root, name)
      with open(path, "r+b") as f:
        f.write(rng.integers(0, 256, os.path.getsize(path), np.uint8).tobytes())


def _damage_metadata(step_dir):
  for root, _, files in os.walk(step_dir):
    for name in files:
      if "METADATA" in name.upper():
        open(os.path.join(root, name), "wb").write(b"\0" * 16)


def _remove_item(step_dir):
  shutil.rmtree(step_dir / "ema")


@pytest.fixture(scope="module")
def trained_to_six(tmp_path_factory):
  """Checkpoints at steps 4 and 6 (keep 2) of a 6-step run."""
  workdir = tmp_path_factory.mktemp("six")
  config = tiny_config(**{"train.num_steps": 6, "checkpoint.every_steps": 2,
                          "checkpoint.keep": 2})
  loop.train(config, str(workdir))
  assert sorted(int(s) for s in os.listdir(workdir / "checkpoints") if s.isdigit()) == [4, 6]
  return workdir


@pytest.mark.parametrize("damage", [_damage_array_bytes, _damage_metadata, _remove_item])
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_older_one_resumes(
    trained_to_six, tmp_path, capfd, damage):
  workdir = tmp_path / "run"
  shutil.copytree(trained_to_six, workdir)
  damage(workdir / "checkpoints" / "6")
  config = tiny_config(**{"train.num_steps": 8, "checkpoint.every_steps": 2,
                          "checkpoint.keep": 2})
  state = loop.train(config, str(workdir))
  assert int(state.step) == 8
  warnings = [l for l in capfd.readouterr().err.splitlines() if l.startswith("warning: checkpoint 6")]
  assert len(warnings) == 1, warnings
  assert (workdir / "set_aside" / "step_6.unrestorable").is_dir()  # kept, not deleted
  # Steps 5 and 6 were trained again from step 4: each step is logged once.
  assert [row["step"] for row in read_metrics(str(workdir)) if "loss" in row] == list(range(1, 9))


def test_no_restorable_checkpoint_is_one_error_naming_the_directory(trained_to_six, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(trained_to_six, workdir)
  for step in ("4", "6"):
    _remove_item(workdir / "checkpoints" / step)
  with pytest.raises(checkpoints.CheckpointNotFoundError, match="no checkpoint in .* restores"):
    loop.train(tiny_config(**{"train.num_steps": 8}), str(workdir))
  assert len(os.listdir(workdir / "set_aside")) == 2
