#!/usr/bin/env bash
# Where a GPU train step's time goes: B at 17 frames under each remat policy, traced, and a
# per-kernel-class summary of each trace (benchmarks/profile_summary.py).
#   bash benchmarks/gpu_profile.sh OUT_DIR
set -u
out=${1:?usage: gpu_profile.sh OUT_DIR}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.92
bench="python3 -m videogen.bench --json --steps 3 --attention cudnn --frames 17"
for remat in ${REMATS:-full none save_attention_kernel save_dots_and_attention_kernel}; do
  $bench --configs "${CONFIGS:-dit_family:B}" --remat "$remat" --profile "$out/trace_$remat" \
    | tee -a "$out/bench.jsonl"
  python3 benchmarks/profile_summary.py "$out/trace_$remat" --top 6 | tee -a "$out/profile.txt"
  rm -rf "$out/trace_$remat"
done
