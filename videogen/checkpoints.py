"""Orbax checkpoints: training checkpoints, params-only exports, and loading either.

A training checkpoint `DIR/checkpoints/<step>/` holds five items:
  state     step, params, optimizer state, RNG          (StandardSave, sharded)
  ema       EMA params                                 (StandardSave, sharded)
  data      the Grain iterator position, one JSON per process
  config    the run's config as JSON
  metadata  what the task measured for users of the model, as JSON (a VAE's latent stats)
  digests   a checksum per array of `state` and `ema` (`digests`), verified on restore
EMA params are their own item so sampling and export restore them without knowing the
optimizer. An export `OUT/` holds `params/` (EMA, StandardCheckpointer) or `model.safetensors`
(the same tree, leaves named by `/`-joined paths), `config.json` and `metadata.json`.
Restores take an abstract tree with target shardings, so any checkpoint loads onto any mesh.
A LoRA adapter kept alone is `DIR/adapter.safetensors` plus `DIR/adapter.json`
(`save_adapter`, `load_adapter`, `apply_adapter`).
"""
import json
import os
import sys
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import safetensors.numpy
from flax import traverse_util
from jax.experimental import multihost_utils

from videogen import workdir as workdir_lib
from videogen.config import base_config
from videogen.models import lora
from videogen.formats.weight_files import _listing, parse_json, read_safetensors, write_safetensors

EXPORT_PARAMS_SUBDIR = "params"
EXPORT_SAFETENSORS_FILE = "model.safetensors"
EXPORT_CONFIG_FILE = "config.json"
EXPORT_METADATA_FILE = "metadata.json"


class CheckpointNotFoundError(FileNotFoundError):
  pass


def checkpoint_dir(workdir: str) -> str:
  return str(workdir_lib.checkpoints(workdir))


def make_manager(workdir: str, keep: int = 3, async_save: bool = True) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_names=workdir_lib.CHECKPOINT_ITEMS)


def _train_items(state) -> dict[str, Any]:
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
          "rng": state.rng}


def save(manager: ocp.CheckpointManager, state, data_iterator,
         config: ml_collections.ConfigDict, force: bool = False,
         metadata: dict | None = None) -> bool:
  """Starts an (async) save of the full training state at `state.step`."""
  step = int(state.step)
  return manager.save(step, force=force, args=ocp.args.Composite(
      state=ocp.args.StandardSave(_train_items(state)),
      ema=ocp.args.StandardSave(state.ema),
      data=grain.checkpoint.CheckpointSave(data_iterator),
      config=ocp.args.JsonSave(config.to_dict()),
      metadata=ocp.args.JsonSave(metadata or {}),
      digests=ocp.args.JsonSave({"state": digests(_train_items(state)),
                                 "ema": digests(state.ema)})))


def _leaf_digest(x: jax.Array) -> jax.Array:
  """A position-weighted wrapping sum of the bits of `x` (uint32): any single changed bit, and
  any swap of two different values, changes it."""
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  unsigned = jnp.dtype(f"uint{x.dtype.itemsize * 8}")
  bits = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).reshape(-1)
  weights = jnp.arange(bits.size, dtype=jnp.uint32) * 2 + 1
  return jnp.sum(bits * weights, dtype=jnp.uint32)


def digests(tree) -> dict[str, int]:
  """`{leaf path: checksum}` of a tree of arrays, computed where the arrays live (one jitted
  pass, sharded arrays included), for `save` to record and `restore_train_state` to check."""
  sums = jax.device_get(jax.jit(lambda t: jax.tree.map(_leaf_digest, t))(tree))
  return {jax.tree_util.keystr(path): int(value)
          for path, value in jax.tree_util.tree_leaves_with_path(sums)}


class DigestMismatchError(ValueError):
  pass


def _verify(manager, workdir: str, step: int, restored_state, restored_ema) -> None:
  """Compares the restored arrays with the digests saved beside them (checkpoints written
  before digests existed are not checked)."""
  if not workdir_lib.checkpoint_item(workdir, step, "digests").is_dir():
    return
  saved = manager.restore(step, args=ocp.args.Composite(digests=ocp.args.JsonRestore())).digests
  for item, tree in (("state", restored_state), ("ema", restored_ema)):
    differ = [k for k, v in digests(tree).items() if saved[item].get(k) != v]
    if differ:
      raise DigestMismatchError(f"{item} arrays differ from their saved checksums: "
                                f"{', '.join(differ[:3])}")


def _abstract(tree, shardings):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def restore_train_state(manager, abstract_state, shardings, data_iterator, workdir: str):
  """Restores the newest checkpoint that restores onto `shardings` and moves `data_iterator`
  to its position. One that fails (unreadable arrays, bad metadata, a missing item, arrays
  that do not match their saved digests) is
  reported in one warning line and moved to WORKDIR/set_aside (never deleted), and the next
  older one is tried; none left is a CheckpointNotFoundError naming the directory."""
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_abstract(_train_items(abstract_state),
                                                   _train_items(shardings))),
          ema=ocp.args.StandardRestore(_abstract(abstract_state.ema, shardings.ema)),
          data=grain.checkpoint.CheckpointRestore(data_iterator)))
      _verify(manager, workdir, step, restored.state, restored.ema)
    except Exception as e:  # noqa: BLE001 (TensorStore, JSON, Orbax and OS errors alike)
      _set_aside(manager, workdir, step, e)
      continue
    items = restored.state
    return abstract_state.replace(step=items["step"], params=items["params"],
                                  ema=restored.ema, opt_state=items["opt_state"],
                                  rng=items["rng"])
  raise CheckpointNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)} restores (each "
                                f"was moved to {workdir_lib.set_aside(workdir)}); move one "
                                f"back, or train in a new workdir")


def _set_aside(manager, workdir: str, step: int, error: Exception) -> None:
  """Moves checkpoint `step` out of the manager's sight, to set_aside/step_N.unrestorable."""
  reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
  target = workdir_lib.unrestorable(workdir, step)
  if jax.process_index() == 0:
    print(f"warning: checkpoint {step} does not restore ({type(error).__name__}: {reason}); "
          f"moved to {target}, trying the next older one", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    workdir_lib.checkpoint(workdir, step).rename(target)
  multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
  manager.reload()


def _latest_step(workdir: str) -> int:
  if not workdir_lib.checkpoints(workdir).is_dir():
    raise CheckpointNotFoundError(f"no checkpoint in {workdir!r}: {checkpoint_dir(workdir)} does "
                                  f"not exist (train first, or pass --checkpoint EXPORT_DIR)")
  # A listing of finalised steps, not a CheckpointManager: readers (sample, export,
  # evaluate) need no cross-process barrier, which hung a two-process export on a bucket.
  steps = ocp.utils.checkpoint_steps(checkpoint_dir(workdir))
  step = max(steps) if steps else None
  if step is None:
    raise CheckpointNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)!r} "
                                  f"(train first, or pass --checkpoint EXPORT_DIR)")
  return step


def has_checkpoint(workdir: str) -> bool:
  """Whether `workdir` holds a training checkpoint to resume from."""
  try:
    _latest_step(workdir)
  except CheckpointNotFoundError:
    return False
  return True


def is_export(path: str) -> bool:
  """Whether `path` is a params-only export (Orbax `params/` or `model.safetensors`)."""
  root = workdir_lib.path(path)
  return (root / EXPORT_PARAMS_SUBDIR).is_dir() or (root / EXPORT_SAFETENSORS_FILE).is_file()


def _load_json(path: str, export_file: str, item: str) -> dict:
  """A JSON item from an export directory or the latest checkpoint of a workdir; {} when
  that export or checkpoint has none (it predates the item)."""
  if is_export(path):
    exported = workdir_lib.path(path) / export_file
    return workdir_lib.read_json(exported) if exported.is_file() else {}
  saved = workdir_lib.checkpoint_json(path, _latest_step(path), item)
  return workdir_lib.read_json(saved) if saved.is_file() else {}


def load_config(path: str) -> ml_collections.ConfigDict:
  """The config saved with a training workdir's latest checkpoint, or with an export."""
  config = _load_json(path, EXPORT_CONFIG_FILE, "config")
  if not config:
    raise CheckpointNotFoundError(f"no config saved in {path!r}")
  return ml_collections.ConfigDict(_with_new_keys(config, base_config().to_dict()))


def _with_new_keys(saved: dict, defaults: dict, depth: int = 1) -> dict:
  """`saved` plus the keys added to the schema since it was written (sections and their
  direct keys only: deeper dicts such as bucket tables are values, not schema)."""
  for key, value in defaults.items():
    if key not in saved:
      saved[key] = value
    elif depth and isinstance(value, dict) and isinstance(saved[key], dict):
      _with_new_keys(saved[key], value, depth - 1)
  return saved


def load_metadata(path: str) -> dict:
  """The task's metadata (e.g. a VAE's `latent_stats`); {} when none was saved."""
  return _load_json(path, EXPORT_METADATA_FILE, "metadata")


def load_ema_params(path: str, abstract_params, shardings):
  """EMA params from a training workdir (latest step) or an export, onto `shardings`. Params
  with a NaN or infinity are a ValueError: nothing samples or exports from a diverged run."""
  params = _restore_ema_params(path, _abstract(abstract_params, shardings))
  finite = jax.device_get(jax.jit(lambda tree: jax.tree.map(
      lambda x: jax.numpy.isfinite(x).all(), tree))(params))
  bad = [jax.tree_util.keystr(p) for p, ok in jax.tree_util.tree_leaves_with_path(finite)
         if not ok]
  if bad:
    raise ValueError(f"{path} holds non-finite params ({len(bad)} arrays, e.g. {bad[0]}): "
                     f"the run diverged; use an earlier checkpoint or export")
  return params


def _restore_ema_params(path: str, target):
  export_params = workdir_lib.path(path) / EXPORT_PARAMS_SUBDIR
  if export_params.is_dir():
    with ocp.StandardCheckpointer() as checkpointer:
      return checkpointer.restore(export_params, target)
  if (workdir_lib.path(path) / EXPORT_SAFETENSORS_FILE).is_file():
    return load_safetensors_params(path, target)
  with ocp.StandardCheckpointer() as checkpointer:  # the item folder, as StandardSave wrote it
    return checkpointer.restore(workdir_lib.checkpoint_item(path, _latest_step(path), "ema"),
                                target)


def load_safetensors_params(directory: str, abstract_params):
  """The params tree of `directory/model.safetensors` (written by `export_safetensors`), cast
  to `abstract_params`' dtypes and placed on their shardings (`jax.ShapeDtypeStruct`s; without
  a sharding, numpy arrays). A missing, extra or misshapen tensor is a one-line ValueError."""
  path = workdir_lib.path(directory) / EXPORT_SAFETENSORS_FILE
  with workdir_lib.local_copy(path) as local:
    tensors = read_safetensors(local)
  wanted = traverse_util.flatten_dict(abstract_params, sep="/")
  for absent, what in ((set(wanted) - set(tensors), "lacks"), (set(tensors) - set(wanted),
                                                                 "has unexpected")):
    if absent:
      raise ValueError(f"{path} {what} {len(absent)} params: {_listing(absent)} (an export of "
                       f"a different model?)")
  params = {}
  for name, want in wanted.items():
    if tensors[name].shape != tuple(want.shape):
      raise ValueError(f"{path}: {name} has shape {tensors[name].shape}, the model's is "
                       f"{tuple(want.shape)}")
    value = tensors[name].astype(want.dtype)
    sharding = getattr(want, "sharding", None)
    params[name] = (value if sharding is None else
                    jax.make_array_from_callback(value.shape, sharding, lambda i, v=value: v[i]))
  return traverse_util.unflatten_dict(params, sep="/")


def on_host(params):
  """`params` as numpy arrays, whole on every process (gathered across hosts): what the
  file exporters write."""
  return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)),
                      params)


def export_safetensors(output: str, params, config: ml_collections.ConfigDict,
                       metadata: dict | None = None, dtype: str = "float32") -> None:
  """Writes `params` as one `model.safetensors` (leaves named by their `/`-joined paths, as
  LoRA adapters are, cast to `dtype`) plus config and metadata, loadable like `export_params`."""
  to = np.dtype(jax.numpy.dtype(dtype))
  tensors = {name: leaf.astype(to)
             for name, leaf in traverse_util.flatten_dict(on_host(params), sep="/").items()}
  if jax.process_index() == 0:
    with workdir_lib.local_target(make_export_dir(output) / EXPORT_SAFETENSORS_FILE) as local:
      write_safetensors(local, tensors, {"format": "videogen", "dtype": dtype})
  write_export_json(output, config, metadata)


def export_params(output: str, params, config: ml_collections.ConfigDict,
                  metadata: dict | None = None) -> None:
  """Writes a params-only checkpoint plus its config and metadata, loadable by
  `load_ema_params`, `load_config` and `load_metadata`."""
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(make_export_dir(output) / EXPORT_PARAMS_SUBDIR, params)
  write_export_json(output, config, metadata)


def write_export_json(output: str, config: ml_collections.ConfigDict,
                      metadata: dict | None) -> None:
  """An export's `config.json` and `metadata.json`."""
  if jax.process_index() == 0:
    root = make_export_dir(output)
    workdir_lib.write_json(root / EXPORT_CONFIG_FILE, config.to_dict())
    workdir_lib.write_json(root / EXPORT_METADATA_FILE, metadata or {})


def make_export_dir(output: str):
  """The export directory `output` (local or a bucket path), created if absent."""
  root = workdir_lib.path(output)
  root.mkdir(parents=True, exist_ok=True)
  return root


# LoRA adapters, kept alone: `DIR/adapter.safetensors` (leaves named by their `/`-joined
# paths) and `DIR/adapter.json` (rank, alpha and the base model's fingerprint).
ADAPTER_WEIGHTS_FILE = "adapter.safetensors"
ADAPTER_META_FILE = "adapter.json"


def save_adapter(directory: str, adapter, meta: dict) -> None:
  """Writes `adapter` to `directory/adapter.safetensors` and `meta` (`lora.adapter_meta`) to
  `directory/adapter.json`."""
  tensors = traverse_util.flatten_dict(on_host(adapter), sep="/")
  if jax.process_index() != 0:
    return
  os.makedirs(directory, exist_ok=True)
  safetensors.numpy.save_file(tensors, os.path.join(directory, ADAPTER_WEIGHTS_FILE))
  with open(os.path.join(directory, ADAPTER_META_FILE), "w") as f:
    json.dump(meta, f, indent=2)


def load_adapter(directory: str, params=None) -> tuple[dict, dict]:
  """(adapter, meta) saved by `save_adapter`. With `params` (base or LoRA params, arrays or
  shape structs), every adapter is checked against the kernel it adapts: a mismatch is a
  one-line ValueError naming it."""
  paths = [os.path.join(directory, name) for name in (ADAPTER_WEIGHTS_FILE, ADAPTER_META_FILE)]
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"no LoRA adapter at {directory!r}: {path} is missing (write "
                              f"one with `python -m videogen.export --adapter_only`)")
  flat_adapter = {tuple(k.split("/")): v for k, v in read_safetensors(paths[0]).items()}
  clash = next((k for k in flat_adapter if any(k[:n] in flat_adapter for n in range(1, len(k)))),
               None)
  if not flat_adapter or clash:
    raise ValueError(f"{paths[0]} holds " + (f"both a tensor and a scope at {'/'.join(clash)}"
                                             if clash else "no tensors"))
  adapter = traverse_util.unflatten_dict(flat_adapter)
  with open(paths[1], "rb") as f:
    meta = lora.check_meta(parse_json(f.read(), paths[1]), paths[1])
  if params is not None:
    lora.check_adapter(adapter, params, meta["rank"], f"adapter {directory!r}")
  return adapter, meta


def apply_adapter(params, adapter_dir: str, model_spec) -> dict:
  """`params` (same tree) with the adapter saved in `adapter_dir` folded into the kernels it
  adapts: a base model samples with it as it is. `model_spec` (a `DiTSpec`) must be the base
  the adapter was trained on (a mismatch is a one-line ValueError)."""
  adapter, meta = load_adapter(adapter_dir)
  return lora.fold_adapter(params, adapter, meta, model_spec, f"adapter {adapter_dir!r}")
