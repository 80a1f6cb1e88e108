#!/usr/bin/env bash
# Start training on every worker of the slice; JAX discovers the pod topology itself.
# Usage: launch/tpu/run.sh NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]
#   WORKDIR should be a gs:// path or a shared filesystem so every host sees the checkpoints.
set -euo pipefail
NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4; shift 4
CMD="cd ~/videogen && VIDEOGEN_DISTRIBUTED=1 nohup .venv/bin/python -m videogen.train \
--config $CONFIG --workdir $WORKDIR $* > train.log 2>&1 &"
echo "+ gcloud compute tpus tpu-vm ssh $NAME --worker=all --command '$CMD'"
gcloud compute tpus tpu-vm ssh "$NAME" --zone "$ZONE" --worker=all --command "$CMD"
