#!/usr/bin/env bash
# Submit launch/gke/jobset.yaml to the current kubectl context (a GKE cluster with TPU node
# pools and the JobSet controller, e.g. made by XPK).
# Usage: launch/gke/run.sh NAME IMAGE TPU_ACCELERATOR TPU_TOPOLOGY NUM_SLICES HOSTS_PER_SLICE \
#          CHIPS_PER_HOST CONFIG WORKDIR [--config.KEY=VALUE ...] [--dry_run]
#   e.g. launch/gke/run.sh vg-xl gcr.io/p/videogen tpu-v5p-slice 4x4x4 2 16 4 \
#          configs/xl.py gs://bucket/xl --config.mesh.dcn_data=2
# IMAGE holds this checkout installed with `pip install -e ".[gcs]" "jax[tpu]"`.
# --dry_run prints the rendered JobSet and the kubectl command.
set -euo pipefail
source "$(dirname "$0")/../common.sh"
set -- "${ARGS[@]}"
NAME=$1 IMAGE=$2 TPU_ACCELERATOR=$3 TPU_TOPOLOGY=$4 NUM_SLICES=$5 HOSTS_PER_SLICE=$6
CHIPS_PER_HOST=$7 CONFIG=$8 WORKDIR=$9; shift 9
EXTRA=""
for arg in "$@"; do EXTRA+=", \"$arg\""; done
rendered=$(mktemp --suffix=.yaml)
sed -e "s|\${NAME}|$NAME|; s|\${IMAGE}|$IMAGE|; s|\${TPU_ACCELERATOR}|$TPU_ACCELERATOR|" \
    -e "s|\${TPU_TOPOLOGY}|$TPU_TOPOLOGY|; s|\${NUM_SLICES}|$NUM_SLICES|" \
    -e "s|\${HOSTS_PER_SLICE}|$HOSTS_PER_SLICE|g; s|\${CHIPS_PER_HOST}|$CHIPS_PER_HOST|" \
    -e "s|\${CONFIG}|$CONFIG|; s|\${WORKDIR}|$WORKDIR|; s|\${ARGS}|$EXTRA|" \
    -e "s|\${MAX_RESTARTS}|${MAX_RESTARTS:-3}|" \
    "$(dirname "$0")/jobset.yaml" > "$rendered"
if [[ $DRY_RUN == 1 ]]; then cat "$rendered"; fi
run kubectl apply -f "$rendered"
