"""The XLA CPU scheduler setting for VAE-heavy processes (encoding datasets, decoding long
clips, the VAE benchmark), and how to pass it.

XLA CPU orders each program's operations with a concurrency-optimised (breadth-first)
scheduler by default: it starts independent work early and so holds many of a layer's
full-size buffers at once. Its memory-minimising (depth-first) scheduler needs about half
the temporaries in the VAE's programs (the released widths at 64×64: encoding 17 frames
680 → 340 MiB, decoding 5 latents 486 → 306 MiB; docs/benchmarks.md). XLA reads the choice
from `XLA_FLAGS` once, when jax loads (a per-jit compiler option does not reach it), so it
belongs in the environment of a fresh process:

    XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false python -m videogen.encode_dataset ...

This module imports no jax, so a launcher can use it before jax loads.
"""

LEAN_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def with_lean_scheduler(xla_flags: str) -> str:
  """`xla_flags` (an `XLA_FLAGS` value) with the memory-minimising CPU scheduler, unless it
  already chooses a CPU scheduler itself."""
  if "concurrency_optimized_scheduler" in xla_flags or "xla_cpu_scheduler_type" in xla_flags:
    return xla_flags
  return f"{xla_flags} {LEAN_SCHEDULER_FLAG}".strip()
