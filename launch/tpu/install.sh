#!/usr/bin/env bash
# Copy this checkout to every worker and install it with TPU JAX and the bucket client.
# Usage: launch/tpu/install.sh NAME ZONE [--dry_run]
set -euo pipefail
source "$(dirname "$0")/../common.sh"
set -- "${ARGS[@]}"
NAME=$1 ZONE=$2
run gcloud compute tpus tpu-vm scp --recurse --zone "$ZONE" --worker=all \
  "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)" "$NAME":~/videogen
run gcloud compute tpus tpu-vm ssh "$NAME" --zone "$ZONE" --worker=all --command \
  'cd ~/videogen && python3 -m venv .venv && .venv/bin/pip install -q -e ".[gcs]" "jax[tpu]"'
