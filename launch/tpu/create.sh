#!/usr/bin/env bash
# Create a TPU VM slice.  Usage: launch/tpu/create.sh NAME ZONE ACCELERATOR [VERSION] [--dry_run]
#   e.g. launch/tpu/create.sh vg-pod us-east5-a v5p-128 v2-alpha-tpuv5
set -euo pipefail
source "$(dirname "$0")/../common.sh"
set -- "${ARGS[@]}"
NAME=$1 ZONE=$2 ACCELERATOR=$3 VERSION=${4:-tpu-ubuntu2204-base}
run gcloud compute tpus tpu-vm create "$NAME" --zone "$ZONE" \
  --accelerator-type "$ACCELERATOR" --version "$VERSION"
