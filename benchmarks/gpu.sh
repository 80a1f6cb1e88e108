#!/usr/bin/env bash
# The GPU checks in one run (a lent accelerator, minutes at a time): the cuDNN attention path
# against the f32 reference and the other backends, then train-step MFU of the DiT presets.
#   bash benchmarks/gpu.sh OUT_DIR
# Each result is one JSON line in OUT_DIR/attention.jsonl and OUT_DIR/bench.jsonl.
set -uo pipefail
out=${1:?usage: gpu.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.92
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
# Token counts of the B/XL presets' attention: 17 frames (5×30×45 → 6,750) and 49 (17,550).
python3 -m videogen.bench attention --json --lengths 6750,17550 --heads 12 --head_dim 64 \
  --backends "${BACKENDS:-cudnn,xla,blockwise}" | tee "$out/attention.jsonl"
python3 -m videogen.bench attention --json --lengths 17550 --heads 16 --head_dim 72 \
  --backends "${BACKENDS:-cudnn,blockwise}" | tee -a "$out/attention.jsonl"
for preset in ${PRESETS:-S B XL cogvideox_2b}; do
  python3 -m videogen.bench --json --configs "dit_family:$preset" --frames 17,49 \
    --attention "${ATTENTION:-cudnn}" --steps "${STEPS:-3}" | tee -a "$out/bench.jsonl"
done
