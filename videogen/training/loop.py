"""The training loop: the only Python loop over steps. Resumes, logs, checkpoints, and saves
on SIGTERM (preemption) before exiting cleanly."""
import collections
import json
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from videogen import checkpoints
from videogen import workdir as workdir_lib
from videogen.config import ConfigError
from videogen.data import pipeline
from videogen.data.videos import batch_sizes
from videogen.eval import report as report_lib
from videogen.models import lora
from videogen.parallel import mesh as mesh_lib
from videogen.sampling.generator import Generator
from videogen.training import state as state_lib
from videogen.training.metrics import MetricsWriter
from videogen.training.tasks import build_task


class PreemptionSignal:
  """When to stop for a preemption (SIGTERM), the same step on every process.

  One process: a Python handler records the signal, checked every step. Several processes:
  JAX's preemption sync point, where the coordination service hears SIGTERM on any host and
  names one step at which all of them stop (no collective per step); without that service,
  an allgather of the flag every `check_every` steps. The Python handler is not installed
  then: it would take SIGTERM from the service's own handler."""

  def __init__(self, check_every: int):
    self.received = False
    self._check_every = max(1, check_every)
    self._sync_point = jax.process_count() > 1 and jax.config.jax_enable_preemption_service
    self._previous = None
    if not self._sync_point:
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.received = True

  def should_stop(self, step: int) -> bool:
    if self._sync_point:
      return multihost_utils.reached_preemption_sync_point(step)
    if jax.process_count() == 1:
      return self.received
    if step % self._check_every:
      return False
    # Every process must agree, or the ones that keep going would hang in a collective.
    return bool(multihost_utils.process_allgather(np.array(self.received)).any())

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


NONFINITE = ("halt", "skip")  # `train.nonfinite`: stop the run, or drop the update


class NonFiniteError(RuntimeError):
  """`train.nonfinite="halt"` met a non-finite loss or gradient: one line for the user."""


class NonFiniteGuard:
  """Collects each step's `nonfinite` flag on the device (no host sync per step) and checks
  them before anything is logged, saved or sampled: under "halt" the first bad step raises
  NonFiniteError, so non-finite params are never saved and never rotate out a good
  checkpoint; under "skip" (the step already dropped the update) they are counted."""

  def __init__(self, policy: str, checkpoint_dir: str):
    self.policy, self.checkpoint_dir = policy, checkpoint_dir
    self.skipped = 0
    self._flags = []

  def add(self, metrics: dict) -> None:
    self._flags.append(metrics["nonfinite"])

  def check(self, step: int, last_saved: int) -> None:
    flags = np.asarray(jax.device_get(self._flags))
    self._flags.clear()
    bad = np.flatnonzero(flags)
    if bad.size and self.policy == "halt":
      first = step - len(flags) + 1 + int(bad[0])
      good = (f"the last good checkpoint is step {last_saved} in {self.checkpoint_dir}"
              if last_saved else "no checkpoint was saved")
      raise NonFiniteError(f"step {first}: the loss or gradient is not finite; stopped "
                           f"without saving (train.nonfinite='halt'); {good}. Lower "
                           f"train.learning_rate, or set train.nonfinite='skip'")
    self.skipped += bad.size


class FinishedStepBar:
  """A tqdm bar that counts finished steps, not dispatched ones. JAX dispatch runs far ahead
  of the device (on CPU by dozens of steps), so a bar counting dispatches swings its ETA and
  then freezes at the next host sync while the queue drains. Here the host waits on the loss
  of the step `lead` back before it goes on: the device still has `lead` steps queued, and
  the bar moves when steps finish, so its rate and ETA are the device's."""

  def __init__(self, bar: tqdm.tqdm, lead: int = 2):
    self.bar, self.lead = bar, lead
    self._queued = collections.deque()

  def dispatched(self, loss: jax.Array) -> None:
    self._queued.append(loss)
    self.wait(self.lead)

  def wait(self, keep: int = 0) -> None:
    """Blocks until at most `keep` dispatched steps are unfinished, counting each one."""
    while len(self._queued) > keep:
      self._queued.popleft().block_until_ready()
      self.bar.update(1)


def enable_compilation_cache(directory: str) -> None:
  jax.config.update("jax_compilation_cache_dir", directory)
  # Programs that compile in under a second are not worth a file, except where the caller
  # says otherwise (the test suite caches them all: its many short runs share them).
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 1.0)))


def _batch_sizes(config) -> list[tuple[int, str]]:
  """Every global batch size the data source can produce, with the config key that sets it."""
  if config.data.source not in pipeline.BUCKETED_SOURCES:
    return [(config.train.batch_size, "train.batch_size")]
  return [(size, "data.buckets batch size") for size in batch_sizes(config)]


# `model` keys a fine-tune may change: they leave the params' shapes alone.
RUNTIME_MODEL_KEYS = ("attention_backend", "sequence_parallel", "dtype", "remat_policy",
                      "lora_rank", "lora_alpha")


def check_init_from(config: ml_collections.ConfigDict) -> None:
  """`train.init_from` must be a base run or export of this run's model: one ConfigError line
  (before anything compiles) naming what differs."""
  path = config.train.init_from
  if not workdir_lib.path(path).exists():
    raise ConfigError(f"train.init_from={path!r} does not exist; point it at a training "
                      f"workdir or an export directory")
  try:
    source = checkpoints.load_config(path).model
  except FileNotFoundError as e:
    raise ConfigError(f"train.init_from={path!r}: {e}") from None
  if source.get("lora_rank", 0):
    raise ConfigError(f"train.init_from={path!r} is itself a LoRA run (model.lora_rank="
                      f"{source.lora_rank}); start from the base it was trained on")
  as_json = lambda v: json.loads(json.dumps(v))  # noqa: E731 (tuples and lists alike)
  differ = [f"model.{k}={v!r} (there: {source[k]!r})" for k, v in config.model.items()
            if k in source and k not in RUNTIME_MODEL_KEYS and as_json(source[k]) != as_json(v)]
  if differ:
    raise ConfigError(f"train.init_from={path!r} is another model: {', '.join(differ)}")


def initialise_from(path: str, state: state_lib.TrainState, abstract_state, shardings, mesh
                    ) -> state_lib.TrainState:
  """A fresh `state` whose params and EMA both start from the EMA params of the base run or
  export at `path` (`train.init_from`, checked by `check_init_from`). LoRA adapters are not
  in that checkpoint: they keep their fresh initialisation (B = 0: exactly the base model)."""
  base_abstract, _ = lora.split_adapter(abstract_state.params)
  base_shardings, _ = lora.split_adapter(shardings.params)
  try:
    with jax.set_mesh(mesh):
      base = checkpoints.load_ema_params(path, base_abstract, base_shardings)
  except ValueError as e:  # e.g. another text encoder's vocabulary
    raise ConfigError(f"train.init_from={path!r} holds params this model cannot take: "
                      f"{str(e).strip().splitlines()[0]}") from None
  _, adapter = lora.split_adapter(state.params)
  params = lora.with_adapter(base, adapter)
  # Separate buffers: the train step donates params and EMA.
  return state.replace(params=params, ema=jax.tree.map(jnp.copy, params))


def evaluate_during_training(generator, config: ml_collections.ConfigDict, workdir: str,
                             step: int, writer: MetricsWriter | None = None
                             ) -> dict[str, float]:
  """`eval.*`: sample the benchmark suite with `generator` (holding the EMA) and score it;
  the report, contact sheet and sample videos (`videos/NN.webm`) go to WORKDIR/eval/step_N,
  and the sheet and videos to TensorBoard through `writer` (process 0). Returns the figures
  to log."""
  settings = report_lib.Settings(tuple(config.eval.metrics), config.eval.i3d_weights,
                                 clip_model=config.eval.clip_model)
  prompts = report_lib.suite_prompts(config.data, config.eval.num_prompts,
                                     config.eval.prompt_set)
  report, videos = report_lib.evaluate_model(generator, prompts, settings, seed=config.eval.seed,
                                             steps=config.eval.steps or None)
  if jax.process_index() == 0:
    folder = workdir_lib.eval_dir(workdir, step)
    report_lib.write(report, videos, folder)
    report_lib.write_videos(videos, folder, fps=config.sample.fps)
    if writer is not None:
      writer.write_evaluation(step, report_lib.contact_sheet(report, videos), videos, prompts,
                              fps=config.sample.fps)
  return report_lib.scalars(report)


def check_replication(config: ml_collections.ConfigDict, mesh, param_shardings,
                      abstract_params) -> float:
  """The share of parameter bytes replicated on `mesh`; a ConfigError, before anything is
  initialised or compiled, when it exceeds `mesh.max_replicated_fraction`."""
  replicated = mesh_lib.replicated_fraction(param_shardings, abstract_params)
  if mesh.size > 1 and replicated > config.mesh.max_replicated_fraction:
    raise ConfigError(f"{replicated:.1%} of parameter bytes stay replicated on mesh "
                      f"{dict(mesh.shape)}, above mesh.max_replicated_fraction="
                      f"{config.mesh.max_replicated_fraction}: map more logical axes in "
                      f"mesh.rules, or raise the limit")
  return replicated


def train(config: ml_collections.ConfigDict, workdir: str,
          stop_after_step: int | None = None) -> state_lib.TrainState:
  """Trains to `train.num_steps`, resuming from the latest checkpoint in `workdir`.

  `stop_after_step` ends this invocation early (with a checkpoint) without changing the run:
  a later call continues exactly where it stopped, as after a preemption."""
  workdir_lib.ensure_reachable(workdir)
  try:
    mesh = mesh_lib.create_mesh(config.mesh)
  except ValueError as e:  # sizes that do not fit the devices, slices or processes found
    raise ConfigError(str(e)) from None
  rules = mesh_lib.rules_from_config(config.mesh)
  batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
  accum = config.train.grad_accum_steps
  for size, key in _batch_sizes(config):
    if size % (batch_shards * accum):
      raise ConfigError(f"{key}={size} does not divide into train.grad_accum_steps={accum} "
                        f"micro-batches over the {batch_shards} batch shards of mesh axes "
                        f"data × fsdp")
  if config.train.init_from and not checkpoints.has_checkpoint(workdir):
    check_init_from(config)
  task = build_task(config, mesh, rules, workdir)
  schedule = state_lib.learning_rate_schedule(config.train)

  abstract_state, shardings = state_lib.state_shardings(task.init_params, task.tx, mesh, rules)
  replicated = check_replication(config, mesh, shardings.params, abstract_state.params)
  if jax.process_index() == 0:
    num_params = sum(p.size for p in jax.tree.leaves(abstract_state.params))
    print(f"{config.task}: {num_params / 1e6:.2f}M params; mesh {dict(mesh.shape)}; "
          f"{replicated:.1%} of param bytes replicated", file=sys.stderr)
  data_iterator = iter(pipeline.make_dataset(config, task.text_features))
  manager = checkpoints.make_manager(workdir, config.checkpoint.keep, config.checkpoint.async_save)
  if manager.latest_step() is not None:
    with jax.set_mesh(mesh):
      state = checkpoints.restore_train_state(manager, abstract_state, shardings,
                                              data_iterator, workdir)
  else:
    state, _ = state_lib.create_train_state(task.init_params, task.tx, config.seed, mesh, rules,
                                            task.init_compiler_options)
    if config.train.init_from:
      state = initialise_from(config.train.init_from, state, abstract_state, shardings, mesh)
      if jax.process_index() == 0:
        print(f"params and EMA initialised from {config.train.init_from}", file=sys.stderr)

  batch_sharding = mesh_lib.batch_sharding(mesh)
  train_step = task.build_step(shardings, batch_sharding, rules)
  writer = MetricsWriter(workdir, resumed_step=int(state.step))

  def save(step, state, force=False) -> bool:
    """Checkpoint, with the task's held-out evaluation logged and its metadata saved. A save
    that fails (a full disk, a bucket error; Orbax raises an async failure at the next
    save) is one warning line: training goes on and the next checkpoint step tries again."""
    if task.evaluate is not None:
      writer.write(step, task.evaluate(state))
    metadata = task.metadata(state) if task.metadata is not None else None
    try:
      checkpoints.save(manager, state, data_iterator, config, force=force, metadata=metadata)
      return True
    except Exception as e:  # noqa: BLE001 (OS, TensorStore and client errors alike)
      first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
      progress.write(f"warning: checkpoint {step} was not saved ({type(e).__name__}: "
                     f"{first}); training goes on, the next checkpoint step retries",
                     file=sys.stderr)
      return False

  def save_before_exit(step, state, attempts: int = 3) -> None:
    """The last save of this invocation, waited for; a few tries, then one error line."""
    for attempt in range(attempts):
      if attempt:
        time.sleep(5.0)
      if save(step, state, force=True):
        try:
          manager.wait_until_finished()
          return
        except Exception as e:  # noqa: BLE001 (an async write that failed)
          progress.write(f"warning: checkpoint {step} did not finish ({type(e).__name__})",
                         file=sys.stderr)
    raise workdir_lib.WorkdirError(f"checkpoint {step} could not be saved in {attempts} "
                                   f"tries to {checkpoints.checkpoint_dir(workdir)}; the last "
                                   f"saved step is {last_saved}")

  preemption = PreemptionSignal(config.checkpoint.preemption_check_every)
  guard = NonFiniteGuard(config.train.nonfinite, checkpoints.checkpoint_dir(workdir))
  generator = None  # built at the first evaluation; keeps its compiled sampler
  first_step = int(state.step)
  if first_step >= config.train.num_steps and jax.process_index() == 0:
    print(f"already at step {first_step} of {config.train.num_steps}: nothing to train "
          f"(raise train.num_steps to continue)", file=sys.stderr)
  last_step = min(config.train.num_steps, stop_after_step or config.train.num_steps)
  last_saved = first_step
  progress = tqdm.tqdm(total=config.train.num_steps, initial=first_step, unit="step",
                       disable=jax.process_index() != 0, dynamic_ncols=True)
  finished = FinishedStepBar(progress)
  log_start, log_start_step = time.perf_counter(), first_step
  # Unreadable clips replaced, clips no bucket takes, distinct batch shapes (= compiles).
  skipped, unfit, bad_rows, unreadable, shapes = 0, 0, 0, 0, set()
  try:
    with jax.set_mesh(mesh):
      for step in range(first_step + 1, last_step + 1):
        local = next(data_iterator)
        skipped += int(local.get("skipped", 0))
        unfit, bad_rows = int(local.get("unfit", 0)), int(local.get("bad_rows", 0))
        unreadable = int(local.get("unreadable", 0))  # clips this process never reads again
        shapes.add(tuple(v.shape for k, v in sorted(local.items())
                         if k not in pipeline.HOST_KEYS))
        batch = pipeline.to_global_batch(local, batch_sharding)
        state, metrics = train_step(state, batch)
        guard.add(metrics)
        finished.dispatched(metrics["loss"])
        stopping = preemption.should_stop(step)
        log = step % config.train.log_every == 0 or step == config.train.num_steps
        checkpoint = step % config.checkpoint.every_steps == 0
        evaluate = config.eval.every_steps and step % config.eval.every_steps == 0
        if log or checkpoint or evaluate or stopping or step == last_step:
          finished.wait()
          guard.check(step, last_saved)
        if log:
          values = {k: float(v) for k, v in jax.device_get(metrics).items()}
          values["nonfinite_skipped"] = guard.skipped
          now = time.perf_counter()
          values["steps_per_sec"] = (step - log_start_step) / (now - log_start)
          values["learning_rate"] = float(schedule(step - 1))
          values.update(data_unreadable=unreadable)
          values.update(data_skipped=skipped, data_unfit=unfit, data_bad_rows=bad_rows,
                        compiles=len(shapes))
          log_start, log_start_step = now, step
          writer.write(step, values)
          progress.set_postfix(loss=f"{values['loss']:.4f}")
        if checkpoint and save(step, state):
          last_saved = step
        if evaluate:
          generator = generator or Generator.with_params(config, workdir, mesh, None)
          generator.params = state.ema  # sampled before the next step donates it
          writer.write(step, evaluate_during_training(generator, config, workdir, step,
                                                      writer))
        if stopping:
          progress.write(f"SIGTERM: saving a checkpoint at step {step} and exiting",
                         file=sys.stderr)
          break
      if int(state.step) != last_saved:
        save_before_exit(int(state.step), state)
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.close()
    progress.close()
    preemption.restore()
  return state
