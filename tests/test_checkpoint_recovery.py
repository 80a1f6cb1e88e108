"""A damaged newest checkpoint never stops a run: it is set aside (never deleted) with one
warning line, and the next older one is restored; none restoring is one clear error."""
import os
import shutil

import jax
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


_ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"


def _damage_metadata(step_dir):
  for root, _, files in os.walk(step_dir):
    for name in files:
      if "METADATA" in name.upper():
        open(os.path.join(root, name), "wb").write(b"\0" * 16)


def _remove_item(step_dir):
  shutil.rmtree(step_dir / "ema")


def _tensorboard_purge_steps(folder) -> list[int]:
  """Steps of the SessionLog.START events (TensorBoard's purge marker) in a run's event
  files, read as TFRecords: u64 length, u32 crc, the Event proto, u32 crc."""
  import struct
  from tensorboardX.proto import event_pb2
  steps = []
  for name in os.listdir(folder):
    data = open(os.path.join(folder, name), "rb").read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack_from("<Q", data, offset)
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      if event.session_log.status == event_pb2.SessionLog.START:
        steps.append(event.step)
      offset += 16 + length
  return steps


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
  # Steps 5 and 6 were trained again from step 4: each step is logged once, and TensorBoard
  # is told to purge what the first run logged after step 4.
  assert [row["step"] for row in read_metrics(str(workdir)) if "loss" in row] == list(range(1, 9))
  assert 5 in _tensorboard_purge_steps(workdir / "tensorboard")


def test_no_restorable_checkpoint_is_one_error_naming_the_directory(trained_to_six, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(trained_to_six, workdir)
  for step in ("4", "6"):
    _remove_item(workdir / "checkpoints" / step)
  with pytest.raises(checkpoints.CheckpointNotFoundError, match="no checkpoint in .* restores"):
    loop.train(tiny_config(**{"train.num_steps": 8}), str(workdir))
  assert len(os.listdir(workdir / "set_aside")) == 2


def test_single_bit_flips_in_saved_arrays_never_restore_silently(trained_to_six, tmp_path,
                                                                 capfd):
  """Each trial flips one bit in one data file of checkpoint 6's EMA; restoring either falls
  back to step 4 (a decode error or a checksum mismatch) or returns exactly the saved values
  (the bit was in bytes no array reads), never changed values. Trial 0 flips a bit inside the
  first zstd frame of the largest value file, array bytes that must fall back; the others pick
  file and bit at random, and may all miss every array (six random flips once did).

  OCDBT's layout varies from save to save: a value file starts with zstd frames of array
  chunks and may end with b-tree nodes that the merged top-level manifest supersedes, so its
  middle byte is not always read (a CI run flipped one there and restored step 6)."""
  from videogen.data import pipeline
  from videogen.parallel import mesh as mesh_lib
  from videogen.training import state as state_lib
  from videogen.training.tasks import build_task
  config = tiny_config(**{"train.num_steps": 6})
  mesh = mesh_lib.create_mesh(config.mesh)
  rules = mesh_lib.rules_from_config(config.mesh)
  task = build_task(config, mesh, rules)
  abstract, shardings = state_lib.state_shardings(task.init_params, task.tx, mesh, rules)
  def restore(workdir):
    manager = checkpoints.make_manager(str(workdir))
    with jax.set_mesh(mesh):
      restored = checkpoints.restore_train_state(
          manager, abstract, shardings, iter(pipeline.make_dataset(config)), str(workdir))
    manager.close()
    return restored

  saved = jax.tree.map(np.asarray, restore(trained_to_six).ema)
  rng, fell_back = np.random.default_rng(1), 0
  for trial in range(6):
    workdir = tmp_path / f"trial{trial}"
    shutil.copytree(trained_to_six, workdir)
    # By size, then name: OCDBT names its data files at random.
    files = sorted((os.path.getsize(os.path.join(root, name)), os.path.join(root, name))
                   for root, _, names in os.walk(workdir / "checkpoints" / "6" / "ema")
                   for name in names if os.path.basename(root) == "d")
    if trial == 0:
      path = [p for _, p in files if open(p, "rb").read(4) == _ZSTD_FRAME_MAGIC][-1]
      bit = 64 * 8  # past the frame and block headers, inside the first array chunk
    else:
      path = files[rng.integers(len(files))][1]
      bit = int(rng.integers(os.path.getsize(path) * 8))
    data = bytearray(open(path, "rb").read())
    data[bit // 8] ^= 1 << (bit % 8)
    open(path, "wb").write(bytes(data))
    restored = restore(workdir)
    if int(restored.step) == 4:
      fell_back += 1
      continue
    assert trial > 0, "a flipped bit in the middle of the largest data file restored"
    for a, b in zip(jax.tree.leaves(restored.ema), jax.tree.leaves(saved)):
      np.testing.assert_array_equal(np.asarray(a), b, err_msg=f"trial {trial}")
  warnings = [l for l in capfd.readouterr().err.splitlines() if l.startswith("warning:")]
  assert len(warnings) == fell_back


def test_an_array_rewritten_with_other_values_fails_its_checksum(trained_to_six, tmp_path,
                                                                  capfd):
  """Silent corruption that still decodes (here: the EMA item re-saved by Orbax with one value
  changed) is caught by the digests and set aside like any damaged checkpoint."""
  import orbax.checkpoint as ocp
  workdir = tmp_path / "run"
  shutil.copytree(trained_to_six, workdir)
  ema_dir = workdir / "checkpoints" / "6" / "ema"
  with ocp.StandardCheckpointer() as checkpointer:
    ema = jax.tree.map(np.array, checkpointer.restore(ema_dir))
    jax.tree.leaves(ema)[0].reshape(-1)[0] += 1e-3
    shutil.rmtree(ema_dir)
    checkpointer.save(ema_dir, ema)
  state = loop.train(tiny_config(**{"train.num_steps": 8, "checkpoint.every_steps": 2,
                                    "checkpoint.keep": 2}), str(workdir))
  assert int(state.step) == 8
  assert (workdir / "set_aside" / "step_6.unrestorable").is_dir()
  assert "ema arrays differ from their saved checksums" in capfd.readouterr().err


def test_a_failed_save_is_a_warning_and_the_next_checkpoint_step_retries(tmp_path, capfd,
                                                                          monkeypatch):
  """Fault injection: the save at step 2 raises (a full disk); training goes on, step 4
  saves, and the run ends normally with its final checkpoint."""
  real, calls = checkpoints.save, []

  def failing_once(*args, **kwargs):
    calls.append(1)
    if len(calls) == 1:
      raise OSError("[Errno 28] No space left on device")
    return real(*args, **kwargs)

  monkeypatch.setattr(checkpoints, "save", failing_once)
  state = loop.train(tiny_config(**{"train.num_steps": 6, "checkpoint.every_steps": 2,
                                    "checkpoint.keep": 3}), str(tmp_path))
  assert int(state.step) == 6
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()) == [4, 6]
  warnings = [l for l in capfd.readouterr().err.splitlines() if l.startswith("warning:")]
  assert warnings == ["warning: checkpoint 2 was not saved (OSError: [Errno 28] No space left "
                      "on device); training goes on, the next checkpoint step retries"]
