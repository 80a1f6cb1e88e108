"""Compile the train step ahead of time for a target topology and report per-device memory.

    python -m videogen.aot --config configs/dit_family.py:cogvideox_5b \\
        --config.mesh.fsdp=-1 --config.mesh.data=1 [--topology v5p:4x4x4] [--memory_gb 95]

Nothing is allocated: the state and batch are abstract (`jax.eval_shape` shapes with the
mesh's shardings), lowered and compiled for the devices of `--topology`, and XLA's memory
analysis of the compiled step is printed as JSON per device. Exit code 1 when it exceeds
`--memory_gb`: find out before renting the pod.

`--topology` = `local` (this machine's devices, e.g. 8 fake CPU devices via XLA_FLAGS) or a
TPU topology name such as `v5p:4x4x4` / `v5e:4x8`, which needs `libtpu` installed (pip
`jax[tpu]`) but no TPU: `jax.experimental.topologies` describes the slice from a CPU host.
Frozen VAE / text encoders are not included (their params add to the reported arguments on
the real run).
"""
import json
import sys

from absl import flags
from ml_collections import config_flags

from videogen.cli import exit_with_error, parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_CONFIG = config_flags.DEFINE_config_file("config", None, "DiT config.", lock_config=True)
_TOPOLOGY = flags.DEFINE_string("topology", "local", "'local' or a TPU topology (v5p:4x4x4).")
_MEMORY_GB = flags.DEFINE_float("memory_gb", 0.0, "Fail above this per-device total (0: off).")
flags.mark_flags_as_required(["config"])


def topology_devices(name: str):
  import jax
  if name == "local":
    return jax.devices()
  try:
    from jax.experimental import topologies
    platform, _, shape = name.partition(":")
    return topologies.get_topology_desc(
        platform="tpu", topology_name=f"{platform}:{shape}").devices
  except Exception as e:  # no libtpu, unknown name: say so in one line
    raise ValueError(f"--topology {name!r} is unavailable here ({str(e).splitlines()[0]}); "
                     f"install libtpu (pip install 'jax[tpu]') or use --topology local") from None


def compile_report(config, devices) -> dict:
  """Compiles the DiT train step for `devices` from abstract inputs; memory per device."""
  import jax
  import numpy as np
  from videogen.parallel import mesh as mesh_lib
  from videogen.training import state as state_lib
  from videogen.training.encoded_step import encoded_step
  mesh = mesh_lib.create_mesh(config.mesh, devices)
  rules = mesh_lib.rules_from_config(config.mesh)
  task = encoded_step(config, rules)
  abstract, shardings = state_lib.state_shardings(task.init_params, task.tx, mesh, rules)
  state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                       abstract, shardings)
  batch_sharding = mesh_lib.batch_sharding(mesh)
  batch = {name: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=batch_sharding)
           for name, s in task.batch_shapes.items()}
  step = task.build_step(shardings, batch_sharding)
  with jax.set_mesh(mesh):
    compiled = step.jitted.lower(state, batch, (None, None)).compile()
  memory = compiled.memory_analysis()
  gb = lambda n: round(n / 1e9, 3)  # noqa: E731
  arguments, outputs, temp = (memory.argument_size_in_bytes, memory.output_size_in_bytes,
                              memory.temp_size_in_bytes)
  params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract.params))
  return {"devices": len(devices), "device_kind": devices[0].device_kind,
          "mesh": dict(mesh.shape), "params_B": round(params / 1e9, 4),
          "per_device_GB": {"arguments": gb(arguments), "outputs": gb(outputs),
                            "temp": gb(temp),
                            # donated state: outputs reuse argument buffers
                            "total": gb(max(arguments, outputs) + temp)}}


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv)
  try:
    report = compile_report(_CONFIG.value, topology_devices(_TOPOLOGY.value))
  except ValueError as e:
    exit_with_error(str(e))
  print(json.dumps(report, indent=2))
  if _MEMORY_GB.value and report["per_device_GB"]["total"] > _MEMORY_GB.value:
    print(f"error: needs {report['per_device_GB']['total']} GB per device, above "
          f"--memory_gb {_MEMORY_GB.value}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main(sys.argv)
