"""Timing helpers shared by the benchmarks (`step`, `data`, `vs_pytorch_dit`).

Flag-free on purpose: the benchmark CLIs each own their absl flags and import this.
"""
import time
from typing import Callable

import jax


def matmul_peak_flops(dtype, size: int | None = None, repeats: int = 5,
                      num_devices: int | None = None) -> float:
  """Measured FLOP/s of a square matmul over `num_devices` local devices (default: all;
  batched, one per device). `size` defaults to 2048 on CPU and 8192 on an accelerator,
  where a smaller product is dominated by launch overhead."""
  n = num_devices or jax.local_device_count()
  size = size or (2048 if jax.default_backend() == "cpu" else 8192)
  a = jax.random.normal(jax.random.PRNGKey(0), (n, size, size), dtype)
  f = jax.pmap(lambda x: x @ x, devices=jax.local_devices()[:n])
  for _ in range(2):
    f(a).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    out = f(a)
  out.block_until_ready()
  return repeats * n * 2 * size ** 3 / (time.perf_counter() - start)


def seconds_per_step(step, state, batch, steps: int):
  """(final state, mean seconds per `step(state, batch)`) over `steps` calls after one
  untimed warm-up call (which compiles)."""
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  return state, (time.perf_counter() - start) / steps


def interleaved_seconds(windows: dict[str, Callable[[], object]],
                        rounds: int) -> dict[str, list[float]]:
  """Seconds of each timed window, run in turn (A B C A B C …) for `rounds` rounds.

  On a machine shared with other jobs the load drifts over minutes: timing one side after
  the other compares different loads, while windows taken in turn see about the same one,
  so per-round ratios (and their median) hold up. Each window must block until done."""
  seconds = {name: [] for name in windows}
  for _ in range(rounds):
    for name, window in windows.items():
      start = time.perf_counter()
      window()
      seconds[name].append(time.perf_counter() - start)
  return seconds
