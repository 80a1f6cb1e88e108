#!/usr/bin/env bash
# N processes on this machine, each with its own fake CPU devices: rehearses a multi-host
# run (per-host data shards, coordinated checkpoints) without a cluster.
#   launch/local_multiprocess.sh 2 configs/tiny.py runs/mp [--config.K=V ...] [--dry_run]
set -euo pipefail
source "$(dirname "$0")/common.sh"
set -- "${ARGS[@]}"
N=$1 CONFIG=$2 WORKDIR=$3; shift 3
PY=${PY:-.venv/bin/python}
PORT=${PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])')}
pids=()
for ((i = 0; i < N; i++)); do
  run env JAX_COORDINATOR_ADDRESS=127.0.0.1:$PORT JAX_NUM_PROCESSES=$N JAX_PROCESS_ID=$i \
    XLA_FLAGS=--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS:-4} \
    "$PY" -m videogen.train --config "$CONFIG" --workdir "$WORKDIR" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
