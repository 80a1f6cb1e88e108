#!/usr/bin/env bash
# Follow worker 0's log.  Usage: launch/tpu/logs.sh NAME ZONE [--dry_run]
set -euo pipefail
source "$(dirname "$0")/../common.sh"
set -- "${ARGS[@]}"
run gcloud compute tpus tpu-vm ssh "$1" --zone "$2" --worker=0 --command 'tail -f ~/videogen/train.log'
