#!/usr/bin/env bash
# Copy this checkout to every worker and install it with TPU JAX.
# Usage: launch/tpu/install.sh NAME ZONE
set -euo pipefail
NAME=$1 ZONE=$2
run() { echo "+ $*"; "$@"; }
run gcloud compute tpus tpu-vm scp --recurse --zone "$ZONE" --worker=all \
  "$(git rev-parse --show-toplevel)" "$NAME":~/videogen
run gcloud compute tpus tpu-vm ssh "$NAME" --zone "$ZONE" --worker=all --command \
  'cd ~/videogen && python3 -m venv .venv && .venv/bin/pip install -q -e . "jax[tpu]"'
