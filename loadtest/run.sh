#!/usr/bin/env bash
# run.sh: load test.  Starts vitd (dynamic batching on), vitd --max-batch 1 and the FastAPI +
# PyTorch peer (loadtest/peer/server.py) on the same model, all at once, then drives each with wrk
# posting the same real JPEG as multipart (loadtest/post_image.lua) at each concurrency.  Runs are
# interleaved (server A, B, C, A, B, C, ...) REPEAT times and the best run by images/s is kept per
# row, so a burst of outside load on this shared machine hits every server alike.  Prints a table
# of requests/s, images/s, p50 and p99 latency, non-2xx counts and vitd's mean batch size (from
# /metrics), and writes it to $OUT (bench/results/loadtest.md) with date, machine and command.
# Pauses the training run (/tmp/fashion-train.pid) while measuring and always resumes it.
#   loadtest/run.sh                      # vitd vitd-mb1 peer, c = 1 8 32 64, 3 x 5 s each
#   DURATION=3s REPEAT=1 CONCS="1 32" SERVERS="vitd peer" loadtest/run.sh
# Env: MODEL (models/fashion-vit), IMAGE, DURATION (5s), REPEAT (3), CONCS, SERVERS (vitd
#      vitd-mb1 peer; also vitd-w2: --workers 2 --threads 1, and vitd-base: the vitd of another
#      build, BASE_BUILD, e.g. a checkout of the commit before a change, for before/after in one
#      run), VITD_ARGS (extra vitd flags), OUT, VITD_BUILD (build).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/fashion-vit}
DURATION=${DURATION:-5s}
REPEAT=${REPEAT:-3}
CONCS=${CONCS:-"1 8 32 64"}
SERVERS=${SERVERS:-"vitd vitd-mb1 peer"}
BUILD=${VITD_BUILD:-build}
OUT=${OUT:-bench/results/loadtest.md}
BASE_BUILD=${BASE_BUILD:-}
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
# "sum count" of vitd_batch_size from /metrics
batch_stats() { curl -s "$1/metrics" | awk '/^vitd_batch_size_sum/{s=$2} /^vitd_batch_size_count/{n=$2} END{print s+0, n+0}'; }

declare -A URL
for s in $SERVERS; do
  port=$(free_port)
  URL[$s]=http://127.0.0.1:$port
  case $s in
    vitd)     "$BUILD/vitd" --model "$MODEL" --port "$port" --log-level warn $VITD_ARGS 2>/tmp/loadtest-$s.log & ;;
    vitd-mb1) "$BUILD/vitd" --model "$MODEL" --port "$port" --log-level warn --max-batch 1 $VITD_ARGS 2>/tmp/loadtest-$s.log & ;;
    vitd-w2)  "$BUILD/vitd" --model "$MODEL" --port "$port" --log-level warn --workers 2 --threads 1 $VITD_ARGS 2>/tmp/loadtest-$s.log & ;;
    vitd-base) [ -x "$BASE_BUILD/vitd" ] || { echo "run.sh: vitd-base needs BASE_BUILD with a vitd" >&2; exit 2; }
              "$BASE_BUILD/vitd" --model "$MODEL" --port "$port" --log-level warn 2>/tmp/loadtest-$s.log & ;;
    peer)     $PY loadtest/peer/server.py --model "$MODEL" --port "$port" >/tmp/loadtest-$s.log 2>&1 & ;;
    *) echo "run.sh: unknown server $s" >&2; exit 2 ;;
  esac
  pids+=("$!")
  if ! wait_ready "${URL[$s]}" "$!"; then echo "run.sh: $s did not become ready (see /tmp/loadtest-$s.log)" >&2; exit 1; fi
  wrk -t2 -c8 -d2s --timeout 30s -s loadtest/post_image.lua "${URL[$s]}/classify" -- "$IMAGE" >/dev/null  # warm-up
done

header='| server    |    c |     req/s |  images/s |   p50 ms |   p99 ms | non-2xx | errors | mean batch |'
sep='|-----------|------|-----------|-----------|----------|----------|---------|--------|------------|'
echo "$header" >&2; echo "$sep" >&2
rows=()
declare -A BEST
for c in $CONCS; do
  t=2; [ "$c" -lt 2 ] && t=1
  for s in $SERVERS; do BEST[$s]=""; done
  for r in $(seq 1 "$REPEAT"); do
    for s in $SERVERS; do
      url=${URL[$s]}
      m0="0 0"; [ "$s" != peer ] && m0=$(batch_stats "$url")
      line=$(wrk -t$t -c"$c" -d"$DURATION" --timeout 30s --latency -s loadtest/post_image.lua "$url/classify" -- "$IMAGE" | grep '^RESULT')
      mb=-
      if [ "$s" != peer ]; then
        m1=$(batch_stats "$url")
        mb=$($PY -c "import sys; s0,n0=map(float,sys.argv[1].split()); s1,n1=map(float,sys.argv[2].split()); print(f'{(s1-s0)/(n1-n0):.1f}' if n1>n0 else '-')" "$m0" "$m1")
      fi
      ips=$(sed -E 's/.*images_per_s=([0-9.]+).*/\1/' <<<"$line")
      best=${BEST[$s]}
      if [ -z "$best" ] || $PY -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$ips" "$(sed -E 's/.*images_per_s=([0-9.]+).*/\1/' <<<"${best%%|*}")"; then
        BEST[$s]="$line|$mb"
      fi
    done
  done
  for s in $SERVERS; do
    line=${BEST[$s]%%|*}; mb=${BEST[$s]##*|}
    rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$line"); ips=$(sed -E 's/.*images_per_s=([0-9.]+).*/\1/' <<<"$line")
    p50=$(sed -E 's/.*p50_ms=([0-9.]+).*/\1/' <<<"$line"); p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$line")
    n2=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line"); er=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")
    row=$(printf '| %-9s | %4s | %9.1f | %9.1f | %8.2f | %8.2f | %7s | %6s | %10s |' "$s" "$c" "$rps" "$ips" "$p50" "$p99" "$n2" "$er" "$mb")
    echo "$row" >&2
    rows+=("$row")
    key=${s//-/_}
    eval "IPS_${key}_$c=$ips; P99_${key}_$c=$p99"
  done
done

summary=()
ratio() { $PY -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }
if [ -n "${IPS_vitd_32:-}" ] && [ -n "${IPS_peer_32:-}" ]; then
  summary+=("- c=32: vitd $(ratio "$IPS_vitd_32" "$IPS_peer_32")x the peer's images/s; p99 ${P99_vitd_32} ms vs ${P99_peer_32} ms (goal: >= 5x, lower p99)")
fi
if [ -n "${IPS_vitd_w2_32:-}" ] && [ -n "${IPS_peer_32:-}" ]; then
  summary+=("- c=32: vitd-w2 $(ratio "$IPS_vitd_w2_32" "$IPS_peer_32")x the peer's images/s; p99 ${P99_vitd_w2_32} ms vs ${P99_peer_32} ms")
fi
if [ -n "${IPS_vitd_32:-}" ] && [ -n "${IPS_vitd_mb1_32:-}" ]; then
  summary+=("- c=32: dynamic batching $(ratio "$IPS_vitd_32" "$IPS_vitd_mb1_32")x --max-batch 1 (goal: >= 2x)")
fi
[ ${#summary[@]} -gt 0 ] && printf '%s\n' "${summary[@]}" >&2

mkdir -p "$(dirname "$OUT")"
{
  echo "# vitd load test"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "- command: \`${BASE_BUILD:+BASE_BUILD=$BASE_BUILD }DURATION=$DURATION REPEAT=$REPEAT CONCS=\"$CONCS\" SERVERS=\"$SERVERS\" loadtest/run.sh\`"
  echo "  (wrk -t2 (-t1 at c=1) --timeout 30s, $DURATION per run, runs interleaved across servers, best of $REPEAT by images/s per row)"
  echo "- model: $MODEL; image: $IMAGE ($(stat -c %s "$IMAGE") bytes), one multipart image per request"
  echo "- vitd: defaults (--max-batch 32 --max-delay-us 2000, 1 worker on all cores) $VITD_ARGS; vitd-mb1: --max-batch 1;"
  echo "  vitd-w2: --workers 2 --threads 1 (two single-threaded sessions, max batch 32);"
  echo "  peer: loadtest/peer/server.py (FastAPI $($PY -c 'import fastapi; print(fastapi.__version__)' 2>/dev/null) + uvicorn, PyTorch $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null) eager, torchvision preprocessing)"
  echo "- a training run, if one was going (/tmp/fashion-train.pid), paused during the measurement; wrk runs on the same machine;"
  echo "  load average when done (the servers and wrk included): $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "$header"; echo "$sep"
  printf '%s\n' "${rows[@]}"
  echo
  [ ${#summary[@]} -gt 0 ] && printf '%s\n' "${summary[@]}"
} > "$OUT"
echo "wrote $OUT" >&2
