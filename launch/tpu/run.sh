#!/usr/bin/env bash
# Start training on every worker of the slice; JAX discovers the pod topology itself.
# Usage: launch/tpu/run.sh NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...] [--dry_run]
#   WORKDIR is a gs:// path (every host must see the same checkpoints); the compilation
#   cache stays on each worker's disk.
set -euo pipefail
source "$(dirname "$0")/../common.sh"
set -- "${ARGS[@]}"
NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4; shift 4
CMD="cd ~/videogen && VIDEOGEN_DISTRIBUTED=1 nohup .venv/bin/python -m videogen.train \
--config $CONFIG --workdir $WORKDIR --compile_cache ~/.cache/videogen $* > train.log 2>&1 &"
run gcloud compute tpus tpu-vm ssh "$NAME" --zone "$ZONE" --worker=all --command "$CMD"
