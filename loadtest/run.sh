#!/usr/bin/env bash
# run.sh: load test.  Starts vitd (dynamic batching on, then --max-batch 1) and the FastAPI +
# PyTorch peer (loadtest/peer/server.py) on the same model, drives each with wrk posting the
# same real JPEG as multipart (loadtest/post_image.lua) at each concurrency, and prints a table
# of requests/s, images/s, p50 and p99 latency and non-2xx counts; the table also goes to
# $OUT (bench/results/loadtest.md) with date, machine and command.
# Pauses the training run (/tmp/fashion-train.pid) while measuring and always resumes it.
#   loadtest/run.sh                       # all three servers, c = 1 8 32 64, 10 s each
#   DURATION=5s CONCS="1 32" SERVERS="vitd peer" loadtest/run.sh
# Env: MODEL (models/fashion-vit), IMAGE, DURATION, CONCS, SERVERS (vitd vitd-mb1 peer),
#      VITD_ARGS (extra vitd flags), OUT, VITD_BUILD (build).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/fashion-vit}
DURATION=${DURATION:-10s}
CONCS=${CONCS:-"1 8 32 64"}
SERVERS=${SERVERS:-"vitd vitd-mb1 peer"}
BUILD=${VITD_BUILD:-build}
OUT=${OUT:-bench/results/loadtest.md}
VITD_ARGS=${VITD_ARGS:-}
PY=/usr/bin/python3
if [ -z "${IMAGE:-}" ]; then
  IMAGE=tests/data/server/photo.jpg
  [ -f tests/data/images/jpeg_baseline.jpg ] && IMAGE=tests/data/images/jpeg_baseline.jpg
fi
command -v wrk >/dev/null || scripts/deps.sh bench
[ -x "$BUILD/vitd" ] || make -j2 all

pids=()
TRAIN_PID=$(cat /tmp/fashion-train.pid 2>/dev/null || true)
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$TRAIN_PID" ]; then kill -CONT "$TRAIN_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
if [ -n "$TRAIN_PID" ] && kill -0 "$TRAIN_PID" 2>/dev/null; then
  echo "pausing training run (pid $TRAIN_PID) while measuring" >&2
  kill -STOP "$TRAIN_PID"
fi

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # url pid
  for _ in $(seq 1 600); do
    curl -sf "$1/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

rows=()
# "sum count" of vitd_batch_size from /metrics
batch_stats() { curl -s "$1/metrics" | awk '/^vitd_batch_size_sum/{s=$2} /^vitd_batch_size_count/{n=$2} END{print s+0, n+0}'; }
run_server() { # label
  local label=$1 port pid url
  port=$(free_port)
  url=http://127.0.0.1:$port
  case $label in
    vitd)     "$BUILD/vitd" --model "$MODEL" --port "$port" --log-level warn $VITD_ARGS 2>/tmp/loadtest-vitd.log & pid=$! ;;
    vitd-mb1) "$BUILD/vitd" --model "$MODEL" --port "$port" --log-level warn --max-batch 1 $VITD_ARGS 2>/tmp/loadtest-vitd-mb1.log & pid=$! ;;
    peer)     $PY loadtest/peer/server.py --model "$MODEL" --port "$port" >/tmp/loadtest-peer.log 2>&1 & pid=$! ;;
  esac
  pids+=("$pid")
  if ! wait_ready "$url" "$pid"; then echo "run.sh: $label did not become ready" >&2; return 1; fi
  wrk -t2 -c8 -d2s --timeout 30s -s loadtest/post_image.lua "$url/classify" -- "$IMAGE" >/dev/null  # warm-up
  for c in $CONCS; do
    local t=2
    [ "$c" -lt 2 ] && t=1
    local line m0 m1 mb=-
    [ "$label" != peer ] && m0=$(batch_stats "$url")
    line=$(wrk -t$t -c"$c" -d"$DURATION" --timeout 30s --latency -s loadtest/post_image.lua "$url/classify" -- "$IMAGE" | grep '^RESULT')
    local rps ips p50 p99 n2 er
    rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$line"); ips=$(sed -E 's/.*images_per_s=([0-9.]+).*/\1/' <<<"$line")
    p50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line"); p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")
    n2=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line"); er=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")
    if [ "$label" != peer ]; then
      m1=$(batch_stats "$url")
      mb=$($PY -c "import sys; s0,n0=map(float,sys.argv[1].split()); s1,n1=map(float,sys.argv[2].split()); print(f'{(s1-s0)/(n1-n0):.1f}' if n1>n0 else '-')" "$m0" "$m1")
    fi
    printf '| %-9s | %4s | %9.1f | %9.1f | %8.2f | %8.2f | %6s | %6s | %5s |\n' "$label" "$c" "$rps" "$ips" "$p50" "$p99" "$n2" "$er" "$mb" >&2
    rows+=("$(printf '| %-9s | %4s | %9.1f | %9.1f | %8.2f | %8.2f | %6s | %6s | %5s |' "$label" "$c" "$rps" "$ips" "$p50" "$p99" "$n2" "$er" "$mb")")
    eval "IPS_${label//-/_}_$c=$ips; P99_${label//-/_}_$c=$p99"
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

header='| server    |    c |     req/s |  images/s |  p50 ms  |  p99 ms  | non-2xx | errors | mean batch |'
sep='|-----------|------|-----------|-----------|----------|----------|--------|--------|-------|'
echo "$header" >&2; echo "$sep" >&2
for s in $SERVERS; do run_server "$s"; done

summary=()
ratio() { $PY -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }
if [ -n "${IPS_vitd_32:-}" ] && [ -n "${IPS_peer_32:-}" ]; then
  summary+=("- c=32: vitd $(ratio "$IPS_vitd_32" "$IPS_peer_32")x the peer's images/s; p99 ${P99_vitd_32} ms vs ${P99_peer_32} ms (goal: >= 5x, lower p99)")
fi
if [ -n "${IPS_vitd_32:-}" ] && [ -n "${IPS_vitd_mb1_32:-}" ]; then
  summary+=("- c=32: dynamic batching $(ratio "$IPS_vitd_32" "$IPS_vitd_mb1_32")x --max-batch 1 (goal: >= 2x)")
fi
printf '%s\n' "${summary[@]}" >&2

mkdir -p "$(dirname "$OUT")"
{
  echo "# vitd load test"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "- command: \`DURATION=$DURATION CONCS=\"$CONCS\" SERVERS=\"$SERVERS\" loadtest/run.sh\` (wrk $DURATION per row, --timeout 30s)"
  echo "- model: $MODEL; image: $IMAGE ($(stat -c %s "$IMAGE") bytes), one multipart image per request"
  echo "- vitd: defaults (--max-batch 32 --max-delay-us 2000, all cores) $VITD_ARGS; vitd-mb1: --max-batch 1;"
  echo "  peer: loadtest/peer/server.py (FastAPI $($PY -c 'import fastapi; print(fastapi.__version__)' 2>/dev/null) + uvicorn, PyTorch $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null) eager, torchvision preprocessing)"
  echo "- training run paused during the measurement; wrk runs on the same machine;"
  echo "  load average when done (other helpers' jobs share the 2 cores): $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "$header"; echo "$sep"
  printf '%s\n' "${rows[@]}"
  echo
  printf '%s\n' "${summary[@]}"
} > "$OUT"
echo "wrote $OUT" >&2
