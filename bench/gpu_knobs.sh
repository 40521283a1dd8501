#!/usr/bin/env bash
# gpu_knobs.sh: our CUDA engine's images/s under each setting of its knobs (VIT_CUDA_* variables
# and bench_cuda flags), in one run on one model, so an A/B of a change is measured on the same
# machine minutes apart rather than across sessions.  Needs a GPU and build/tests/gpu/bench_cuda.
#   bench/gpu_knobs.sh MODEL_DIR "BATCHES" SETTING...
#     BATCHES  space-separated batch sizes, e.g. "1 256"
#     SETTING  "default", or a comma-separated list of VAR=VALUE (environment) and --flag or
#              --opt=value (bench_cuda options) items, e.g. VIT_CUDA_RESFUSE=0  or
#              VIT_CUDA_SUBBATCH=64,--iters=20
# Each (setting, batch) is one bench_cuda process (fresh session: warm-up, graphs, 50 timed
# forwards, median).  Prints a markdown table: median ms, images/s and the ratio to the first
# setting at the same batch; a failing run shows its error instead.  Used by bench/gpu_check.sh
# (step 6) with the knobs that exist; by hand: bench/gpu_knobs.sh /tmp/m "256" default VIT_CUDA_RESFUSE=0
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
[ $# -ge 3 ] || { sed -n '2,15p' "$0"; exit 2; }
MODEL=$1 BATCHES=$2
shift 2
BENCH=${BENCH:-build/tests/gpu/bench_cuda}
[ -x "$BENCH" ] || { echo "gpu_knobs: $BENCH not built" >&2; exit 2; }
declare -A BASE
echo "| setting | batch | median ms | images/s | vs first |"
echo "|---|---|---|---|---|"
for setting in "$@"; do
  envs=() flags=()
  if [ "$setting" != default ]; then
    IFS=, read -ra items <<< "$setting"
    for it in "${items[@]}"; do
      case "$it" in --*=*) flags+=("${it%%=*}" "${it#*=}") ;; --*) flags+=("$it") ;; *=*) envs+=("$it") ;; *) echo "gpu_knobs: bad item '$it'" >&2; exit 2 ;; esac
    done
  fi
  for b in $BATCHES; do
    out=$(env "${envs[@]}" timeout 300 "$BENCH" --model "$MODEL" --batch "$b" "${flags[@]}" 2>&1)
    ms=$(grep -oE 'median [0-9.]+ ms' <<< "$out" | awk '{print $2}')
    if [ -z "$ms" ]; then
      echo "| $setting | $b | - | failed: $(tail -n 1 <<< "$out" | tr '|' '/') | |"
      continue
    fi
    ips=$(awk -v b="$b" -v ms="$ms" 'BEGIN { printf "%.0f", b / (ms / 1000) }')
    [ -z "${BASE[$b]:-}" ] && BASE[$b]=$ms
    ratio=$(awk -v a="${BASE[$b]}" -v m="$ms" 'BEGIN { printf "%.3fx", a / m }')
    echo "| $setting | $b | $ms | $ips | $ratio |"
  done
done
