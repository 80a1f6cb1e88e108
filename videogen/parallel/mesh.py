"""Device mesh and logical-axis rules from the `mesh` config section.

Model code names logical axes (`batch`, `length`, `embed`, `heads`, `mlp`, ...); the rules
table in config maps them onto the physical mesh axes below. Changing strategy is a config
edit, never a model edit.
"""
import math

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from videogen.config import DEFAULT_RULES  # noqa: F401 (the schema's default; re-exported)

AXES = ("data", "fsdp", "tensor", "sequence")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(mesh_config: ml_collections.ConfigDict, num_devices: int) -> tuple[int, ...]:
  """Resolves the `-1` entry of (data, fsdp, tensor, sequence) to the remaining devices."""
  sizes = [int(mesh_config[a]) for a in AXES]
  if sizes.count(-1) > 1:
    raise ValueError(f"at most one of mesh.{{{','.join(AXES)}}} may be -1; got {sizes}")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"mesh sizes {dict(zip(AXES, sizes))} do not divide {num_devices} devices")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f"mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices; "
                     f"{num_devices} are available (set one mesh.* key to -1)")
  return tuple(sizes)


def dcn_shape(mesh_config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """`mesh.dcn_<axis>`: how many slices (TPU multislice) or processes (GPU nodes) each axis
  spans over the data-centre network; the `mesh.<axis>` sizes are then per slice."""
  sizes = tuple(int(mesh_config.get(f"dcn_{a}", 1)) for a in AXES)
  if min(sizes) < 1:
    raise ValueError(f"mesh.dcn_* sizes must be >= 1; got {dict(zip(AXES, sizes))}")
  return sizes


def create_mesh(mesh_config: ml_collections.ConfigDict, devices=None) -> jax.sharding.Mesh:
  """The (data, fsdp, tensor, sequence) mesh, in the devices' physical order. With `dcn_*`
  sizes each axis is slices × per-slice devices (`mesh_utils.create_hybrid_device_mesh`), so
  only the axes named in `dcn_*` cross the slow network."""
  devices = jax.devices() if devices is None else list(devices)
  # Auto axis types: GSPMD propagation for linen code. (Explicit is the default in new JAX.)
  axis_types = (jax.sharding.AxisType.Auto,) * len(AXES)
  dcn = dcn_shape(mesh_config)
  granules = math.prod(dcn)
  if granules == 1:
    return jax.make_mesh(mesh_shape(mesh_config, len(devices)), AXES, axis_types=axis_types,
                         devices=devices)
  slices = len({getattr(d, "slice_index", 0) for d in devices})
  processes = len({d.process_index for d in devices})
  if granules not in (slices, processes):
    raise ValueError(f"mesh.dcn_* {dict(zip(AXES, dcn))} spans {granules} slices or "
                     f"processes; there are {slices} slices and {processes} processes")
  by_slice = slices == granules
  ici = mesh_shape(mesh_config, len(devices) // granules)
  array = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices,
                                               process_is_granule=not by_slice)
  return jax.sharding.Mesh(array, AXES, axis_types=axis_types)


def rules_from_config(mesh_config: ml_collections.ConfigDict):
  return tuple((name, tuple(axes) if isinstance(axes, list) else axes)
               for name, axes in mesh_config.rules)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis split over data × fsdp; other axes replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def replicated_fraction(shardings, shapes) -> float:
  """Share of parameter bytes that are fully replicated under the chosen rules."""
  total = replicated_bytes = 0
  for sharding, shape in zip(jax.tree.leaves(shardings), jax.tree.leaves(shapes)):
    nbytes = int(np.prod(shape.shape)) * shape.dtype.itemsize
    total += nbytes
    if sharding.is_fully_replicated:
      replicated_bytes += nbytes
  return replicated_bytes / max(total, 1)
