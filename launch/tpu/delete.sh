#!/usr/bin/env bash
# Delete the slice (training saves on the SIGTERM a preemption or delete sends).
# Usage: launch/tpu/delete.sh NAME ZONE
set -euo pipefail
echo "+ gcloud compute tpus tpu-vm delete $1 --zone $2 --quiet"
gcloud compute tpus tpu-vm delete "$1" --zone "$2" --quiet
