"""The hybrid mesh's cross-slice axes (`mesh.dcn_*`) must match the slices or processes
present. Two real processes training like one (per-host data rows, coordinated checkpoints,
data across the processes and FSDP inside each) are rehearsed, preempted and resumed on a
bucket workdir in tests/test_pod_rehearsal.py."""
import pytest


def test_dcn_axes_need_as_many_slices_or_processes():
  from videogen.config import base_config
  from videogen.parallel.mesh import create_mesh
  config = base_config()
  config.mesh.dcn_data = 2
  with pytest.raises(ValueError, match="spans 2 slices or processes; there are 1 slices and 1"):
    create_mesh(config.mesh)
