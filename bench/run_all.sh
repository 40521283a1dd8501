#!/usr/bin/env bash
# run_all.sh: every CPU benchmark, each against its peer in the same run (make bench).
# Results are written by each script under bench/results/.  The GPU benchmark needs a GPU
# machine: run bench/gpu_check.sh there.
set -u
cd "$(dirname "$0")/.."
rc=0
for b in "bench/preprocess_vs_pil.sh" "bench/cpu_vs_torch.sh" "bench/fashion_accuracy.sh" "loadtest/run.sh"; do
  [ -x "$b" ] || { echo "run_all: $b missing" >&2; rc=1; continue; }
  echo "=== $b"
  "$b" || { echo "run_all: $b failed" >&2; rc=1; }
done
exit $rc
