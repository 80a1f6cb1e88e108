"""Multi-process start-up: one call before any other JAX work.

Launchers set `VIDEOGEN_DISTRIBUTED=1` (TPU VMs and SLURM: JAX auto-detects the rest) or the
explicit trio `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` (any cluster,
and localhost tests). With none set, this is a single-process run.
"""
import os

import jax


def initialize_from_env() -> None:
  address = os.environ.get("JAX_COORDINATOR_ADDRESS")
  if address:
    jax.distributed.initialize(address, int(os.environ["JAX_NUM_PROCESSES"]),
                               int(os.environ["JAX_PROCESS_ID"]))
  elif os.environ.get("VIDEOGEN_DISTRIBUTED") == "1":
    jax.distributed.initialize()
