"""Benchmark the real-video input pipeline against the train step it feeds.

    python -m videogen.bench data [--buckets 256x17,512x49 --clips 16 --batches 6 \\
        --train_config configs/dit_family.py:B --train_steps 2]
    python -m videogen.bench data --synthetic configs/tiny.py:suite [--batches 6]

For each bucket it writes `--clips` real mp4 files (the synthetic world rendered at 1.25× the
bucket side, so every clip is decoded, resized and cropped), runs the bucketed Grain pipeline
(`data.num_threads` threads) and reports clips/s decoded, resized and batched. Beside it, the
train-step rate of `--train_config` on the bucket's latent shape (a 4×8×8 VAE, random
latents: the DiT only) in clips/s. Input is the bottleneck where its clips/s is lower.
`--synthetic CONFIG` instead times the config's synthetic-world clips, rendered on one
thread, against its own train step: on a CPU host the two share the cores.
"""
import json
import os
import sys
import tempfile
import time
import warnings

from absl import flags

from videogen.cli import parse_flags_or_exit
# jax and the library load inside the functions below, once the flags parse: --help
# answers before jax loads (tests/test_help.py).

_BUCKETS = flags.DEFINE_list("buckets", ["256x17", "512x49"], "SIDExFRAMES buckets.")
_CLIPS = flags.DEFINE_integer("clips", 16, "Files written per bucket.")
_BATCHES = flags.DEFINE_integer("batches", 6, "Batches timed per bucket (after one warm-up).")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Clips per batch.")
_THREADS = flags.DEFINE_integer("threads", 2, "Grain read threads.")
_TRAIN_CONFIG = flags.DEFINE_string("train_config", "configs/dit_family.py:B",
                                    "DiT config whose train step is timed ('' to skip).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 2, "Train steps timed (after compiling).")
_SYNTHETIC = flags.DEFINE_string(
    "synthetic", "", "A config (e.g. configs/tiny.py:suite): time its synthetic-world clips "
    "rendered on one thread against its own train step, instead of the real-video buckets.")


def write_clips(folder: str, side: int, frames: int, count: int) -> str:
  """`count` synthetic-world mp4s at 1.25× `side`, and their manifest; returns its path."""
  from videogen import video_io
  from videogen.data import synthetic
  from videogen.data.manifest import write_manifest
  size = round(side * 1.25 / 16) * 16
  world = synthetic.World(num_frames=frames + 3, height=size, width=size)
  rows = []
  for i in range(count):
    clip = synthetic.render_clip(world, 0, i)
    path = os.path.join(folder, f"{side}_{frames}_{i}.mp4")
    video_io.write_video(path, clip.video, fps=24)
    rows.append({"path": path, "text": clip.caption, "num_frames": frames + 3, "height": size,
                 "width": size, "fps": 24.0})
  manifest = os.path.join(folder, f"{side}_{frames}.csv")
  write_manifest(manifest, rows)
  return manifest


def input_rate(manifest: str, side: int, frames: int) -> float:
  from videogen.config import base_config
  from videogen.data import pipeline
  config = base_config()
  config.data.update(source="videos", manifest=manifest, num_threads=_THREADS.value,
                     prefetch=2)
  config.data.buckets.update(sizes={str(side): {str(frames): (1.0, _BATCH.value)}},
                             aspect_ratios=(1.0,))
  iterator = iter(pipeline.make_dataset(config, None, 0, 1))
  next(iterator)
  start = time.perf_counter()
  for _ in range(_BATCHES.value):
    next(iterator)
  rate = _BATCHES.value * _BATCH.value / (time.perf_counter() - start)
  iterator.close()
  # Prefetch threads may still be reading when the clips' folder is removed: not a data error.
  warnings.filterwarnings("ignore", message="skipped clip")
  return rate


def train_rate(config_path: str, side: int, frames: int) -> tuple[float, float]:
  """(clips/s of the DiT train step at the bucket's latent shape, params in M)."""
  from videogen.config import load_config_file
  config = load_config_file(config_path)
  latent = (1 + (frames - 1) // 4, side // 8, side // 8)
  config.data.update(num_frames=latent[0], height=latent[1], width=latent[2])
  config.train.batch_size = _BATCH.value
  return step_rate(config)


def step_rate(config) -> tuple[float, float]:
  """(clips/s of the config's DiT train step at its data shape and batch, params in M); the
  caption path as word tokens into the trainable embedding (what it costs is the DiT's)."""
  import jax
  import numpy as np
  from videogen.parallel import mesh as mesh_lib
  from videogen.training import state as state_lib
  from videogen.bench.timing import seconds_per_step
  from videogen.training.tasks import build_task
  config.text.update(tokenizer="words", encoder="embedding", max_length=32)
  data, batch_size = config.data, config.train.batch_size
  shape = (data.num_frames, data.height, data.width, config.model.channels)
  mesh = mesh_lib.create_mesh(config.mesh)
  rules = mesh_lib.rules_from_config(config.mesh)
  task = build_task(config, mesh, rules)
  state, shardings = state_lib.create_train_state(task.init_params, task.tx, 0, mesh, rules)
  params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params)) / 1e6
  step = task.build_step(shardings, mesh_lib.batch_sharding(mesh), rules)
  batch = {"video": np.random.default_rng(0).normal(size=(batch_size, *shape)).astype(
      np.float32), **task.text_features(["a red circle moving right"] * batch_size)}
  with jax.set_mesh(mesh):
    batch = {k: jax.device_put(v, mesh_lib.batch_sharding(mesh)) for k, v in batch.items()}
    _, seconds = seconds_per_step(step, state, batch, _TRAIN_STEPS.value)
  return batch_size / seconds, params


def synthetic_row(config_path: str) -> dict:
  """The config's synthetic-world clips rendered on one thread (Grain's workers share the
  host's cores with the train step) against its own train step, in clips/s: the input's
  share of a CPU step is `input_core_s_per_step / step_s`."""
  from videogen.config import load_config_file
  from videogen.data import pipeline, synthetic
  config = load_config_file(config_path)
  world, batch = pipeline.world_from_config(config.data), config.train.batch_size
  synthetic.render_clip(world, config.data.seed, 0)  # warm caches
  start = time.perf_counter()
  for index in range(_BATCHES.value * batch):
    synthetic.render_clip(world, config.data.seed, index)
  input_rate = _BATCHES.value * batch / (time.perf_counter() - start)
  rate, params = step_rate(config)
  figures = {"input_clips_per_s_one_thread": input_rate, "train_clips_per_s": rate,
             "input_core_s_per_step": batch / input_rate, "step_s": batch / rate}
  return {"config": config_path, "batch": batch, "params_M": round(params, 1),
          **{name: float(f"{value:.4g}") for name, value in figures.items()}}


def main(argv: list[str]) -> None:
  parse_flags_or_exit(argv, config_flag=None)
  import jax
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; "
        f"cpus: {os.cpu_count()}", file=sys.stderr)
  if _SYNTHETIC.value:
    print(json.dumps(synthetic_row(_SYNTHETIC.value)))
    return
  with tempfile.TemporaryDirectory() as folder:
    for bucket in _BUCKETS.value:
      side, frames = (int(v) for v in bucket.split("x"))
      manifest = write_clips(folder, side, frames, _CLIPS.value)
      row = {"bucket": bucket, "batch": _BATCH.value, "threads": _THREADS.value,
             "input_clips_per_s": round(input_rate(manifest, side, frames), 3)}
      if _TRAIN_CONFIG.value:
        rate, params = train_rate(_TRAIN_CONFIG.value, side, frames)
        row.update(train_config=_TRAIN_CONFIG.value, params_M=round(params, 1),
                   train_clips_per_s=round(rate, 3),
                   bottleneck="input" if row["input_clips_per_s"] < rate else "compute")
      print(json.dumps(row))


if __name__ == "__main__":
  main(sys.argv)
