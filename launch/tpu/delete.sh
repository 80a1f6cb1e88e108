#!/usr/bin/env bash
# Delete the slice (training saves on the SIGTERM a preemption or delete sends).
# Usage: launch/tpu/delete.sh NAME ZONE [--dry_run]
set -euo pipefail
source "$(dirname "$0")/../common.sh"
set -- "${ARGS[@]}"
run gcloud compute tpus tpu-vm delete "$1" --zone "$2" --quiet
