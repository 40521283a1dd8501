#!/usr/bin/env bash
# gpu_check.sh: everything the CUDA backend needs a GPU for, in one script (~7 minutes on an
# H100).  On the build machine first: bench/gpu_bundle.sh (build/gpu-bundle.tar.xz, used when the
# device image lacks the -dev packages).  A device command is capped at 10 minutes; all of it
# took 7 minutes on an H100 on 2026-11-23 (bench/gpu_check.sh with no flags, 423 s), or split it
# (a machine stays warm only ~30 s, so each call unpacks the bundle again, in seconds):
#   run(kind="nvidia-h100-x1", carry=["build/gpu-bundle.tar.xz"], command="bench/gpu_check.sh --no-torch --no-load")
#   run(carry=["build/gpu-bundle.tar.xz"], command="bench/gpu_check.sh --no-tests --no-load")
#   run(carry=["build/gpu-bundle.tar.xz"], command="bench/gpu_check.sh --no-tests --no-torch")
# (the last one makes the ViT-B model itself when the machine went cold)
# Steps, each with its own time
# limit; a failing step is reported and the rest still run:
#   0. GPU and toolchain info (nvidia-smi, nvcc, compute-sanitizer, wrk)
#   1. build: from source if the -dev packages are there (make build/vit build/vitd gpu-tests
#      kernel-lab), else the prebuilt build/gpu-bundle.tar.xz made by bench/gpu_bundle.sh
#   2. tests/gpu/test_kernels        every kernel vs float64 CPU references, fresh random inputs
#   3. tests/gpu/test_cuda_forward   CUDA FP16 vs CPU FP32: synthetic models + fixtures
#      tests/gpu/test_cuda_quant     CUDA INT8 / FP8 vs the CPU's calibrated INT8 and FP32
#      tests/gpu/test_train_cuda     head training on CUDA vs the CPU trainer (AdamW, SGD, val split)
#   4. compute-sanitizer memcheck (small batch) and racecheck (attention kernels), both on
#      tests/gpu/test_train_cuda
#   5. kernel lab: attention and LayerNorm versions, validated and timed
#   6. bench/gpu_vs_torch.py         ViT-B/16 at batch 1, 8, 64, 256: ours vs PyTorch eager FP16
#                                    (SDPA) vs torch.compile; then bench/gpu_profile.py (ncu) at
#                                    batch 1 and 256: time per kernel
#      then bench/gpu_knobs.sh: images/s at batch 1 and 256 under each VIT_CUDA_* setting
#      (VITD_KNOBS="default VIT_CUDA_RESFUSE=0 ..." replaces the list)
#   6b. bench/gpu_precision.sh        INT8 / FP8 vs FP16 vs CPU: calibration, Fashion-MNIST 10k
#                                    accuracy and agreement per precision, ViT-B/16 images/s at
#                                    batch 1, 64, 256 per precision (PyTorch from step 6), memcheck
#   7. `vit check` (the device self-check) on ViT-B/16, then vitd end to end on the GPU under wrk
#      (or a Python load generator when wrk is absent)
# Results: $OUT (default bench/results/gpu_<date>) gets every log, gpu_check.md (the summary,
# with the GPU's name) and the JSON/markdown of step 6; the summary table is printed last.
#   bench/gpu_check.sh [--quick] [--no-tests] [--no-torch] [--no-compile] [--no-load] [--precision]
#   --no-tests: skip steps 2-5; --quick: small sanitizer/lab runs, batches 1,8,64, no compile;
#   --precision: the low-precision checks alone (build, test_kernels, test_cuda_quant, step 6b with
#   the ViT-B model made here, no PyTorch): ~5 minutes, for a short device session
# Testing the script itself without a GPU: VITD_FORCE_BUNDLE=1 (use the bundle even if a source
# build is possible), VITD_CHECK_DEVICE=cpu VITD_CHECK_MODEL=DIR (step 7 against the CPU engine),
# VITD_NO_WRK=1 (the Python load generator even where wrk exists), VITD_CHECK_INPUT_AB=1 (step 7's
# --input fp32 rerun on the CPU too).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
QUICK=0 TORCH=1 COMPILE=1 LOAD=1 TESTS=1 PRECISION_ONLY=0
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;; --no-tests) TESTS=0 ;; --no-torch) TORCH=0 ;; --no-compile) COMPILE=0 ;; --no-load) LOAD=0 ;;
    --precision) PRECISION_ONLY=1 TORCH=0 LOAD=0 ;;
    -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $a" >&2; exit 2 ;;
  esac
done
STAMP=$(date -u +%Y%m%d_%H%M)
OUT=${OUT:-$ROOT/bench/results/gpu_$STAMP}
mkdir -p "$OUT"
SUMMARY=()
note() { echo "gpu_check: $*"; }
record() { SUMMARY+=("| $1 | $2 | $3 |"); note "$1: $2 ($3)"; }
# run_step NAME LIMIT_S LOGFILE CMD...: runs with a time limit, keeps the log, returns its status
run_step() {
  local name=$1 limit=$2 logf=$3; shift 3
  local t0=$SECONDS rc
  note "=== $name (limit ${limit}s): $*"
  timeout --kill-after=15 "$limit" "$@" > "$OUT/$logf" 2>&1
  rc=$?
  tail -n 40 "$OUT/$logf"
  LAST_SECS=$((SECONDS - t0))
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && note "$name: timed out after ${limit}s"
  return $rc
}
summary_line() { grep -E '^[0-9]+ passed, [0-9]+ failed' "$OUT/$1" | tail -n 1; }
# ok / FAIL / SKIP from a step's status and its summary line (a test that skipped everything is SKIP)
verdict() {
  local rc=$1 line; line=$(summary_line "$2")
  if [ "$rc" -ne 0 ]; then echo FAIL; elif [[ "$line" == "0 passed, 0 failed"* ]]; then echo SKIP; else echo ok; fi
}
PY=python3
command -v python3 >/dev/null || PY=/usr/bin/python3

# ---- 0. the machine ------------------------------------------------------------------------
GPU_NAME="none"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
  GPU_NAME=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)
fi
note "GPU: ${GPU_NAME:-none}"
NVCC=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true)
note "nvcc: ${NVCC:-absent} $([ -n "$NVCC" ] && "$NVCC" --version | tail -n 2 | head -n 1)"
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -n 1 || true)
note "compute-sanitizer: ${SANITIZER:-absent}; wrk: $(command -v wrk || echo absent); cpus: $(nproc)"
HAVE_GPU=1
if [ "$GPU_NAME" = "none" ] || [ -z "$GPU_NAME" ]; then
  HAVE_GPU=0
  GPU_NAME="none"
  note "no NVIDIA GPU visible (nvidia-smi missing or silent): steps 4-7 SKIP, the tests run and skip themselves"
fi
# GET a URL on the loopback (curl may be absent): prints the body, fails on non-2xx
http_get() { $PY -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
# cuBLASLt: the CUDA toolkit's, else the one PyTorch's wheels ship
if ! ls /usr/local/cuda/lib64/libcublasLt.so.13 >/dev/null 2>&1; then
  pylib=$($PY - <<'EOF' 2>/dev/null
import glob, os, site
for d in site.getsitepackages():
    for p in glob.glob(os.path.join(d, "nvidia", "*", "lib", "libcublasLt.so.1*")):
        print(os.path.dirname(p)); raise SystemExit
EOF
)
  [ -n "$pylib" ] && export LD_LIBRARY_PATH="$pylib:${LD_LIBRARY_PATH:-}" && note "cuBLASLt from $pylib"
fi

# ---- 1. build -----------------------------------------------------------------------------
JOBS=$(nproc)
BUILT=""
missing=""
for p in openblas libpng libturbojpeg libcjson libmicrohttpd; do
  pkg-config --exists "$p" 2>/dev/null || missing="$missing $p"
done
if [ -n "$NVCC" ] && [ -z "$missing" ] && [ -z "${VITD_FORCE_BUNDLE:-}" ]; then
  if run_step build 900 build.log make -j"$JOBS" NVCC="$NVCC" build/vit build/vitd gpu-tests $([ "$PRECISION_ONLY" = 1 ] || echo kernel-lab); then
    BUILT="from source"
    record build ok "from source with $NVCC in ${LAST_SECS}s, $JOBS jobs"
  else
    note "build from source failed (see $OUT/build.log)"
  fi
else
  note "cannot build from source here (nvcc: ${NVCC:-absent}; missing -dev packages:${missing:- none})"
fi
if [ -z "$BUILT" ] && [ -f build/gpu-bundle.tar.xz ]; then
  tar -xJf build/gpu-bundle.tar.xz && BUILT="prebuilt bundle (commit $(cat build/bundle-commit 2>/dev/null))"
  export LD_LIBRARY_PATH="$ROOT/build/bundle-libs:${LD_LIBRARY_PATH:-}"
  [ -x build/bundle-bin/wrk ] && export PATH="$PATH:$ROOT/build/bundle-bin" && note "wrk from the bundle"
  [ "$(cat build/bundle-commit 2>/dev/null)" != "$(git rev-parse HEAD 2>/dev/null)" ] &&
    note "WARNING: bundle built from $(cat build/bundle-commit 2>/dev/null), tree is at $(git rev-parse HEAD 2>/dev/null)"
  record build ok "$BUILT"
fi
if [ -z "$BUILT" ]; then
  record build FAIL "no nvcc/-dev packages and no build/gpu-bundle.tar.xz (run bench/gpu_bundle.sh on the build machine and carry it)"
fi
if [ -n "$BUILT" ]; then
  ldd build/tests/gpu/test_cuda_forward 2>/dev/null | grep "not found" && note "WARNING: unresolved libraries above"
fi

# ---- 2-3. GPU tests -----------------------------------------------------------------------
if [ "$TESTS" = 1 ] && [ -x build/tests/gpu/test_kernels ]; then
  run_step test_kernels 600 test_kernels.log build/tests/gpu/test_kernels
  rc=$?; record "tests/gpu/test_kernels" "$(verdict $rc test_kernels.log)" "$(summary_line test_kernels.log) in ${LAST_SECS}s"
  grep -E '^# (device|gelu|cublasLt)' "$OUT/test_kernels.log" | sed 's/^# /    /'
fi
if [ "$TESTS" = 1 ] && [ -x build/tests/gpu/test_cuda_quant ]; then
  run_step test_cuda_quant 600 test_cuda_quant.log build/tests/gpu/test_cuda_quant
  rc=$?; record "tests/gpu/test_cuda_quant (int8, fp8)" "$(verdict $rc test_cuda_quant.log)" "$(summary_line test_cuda_quant.log) in ${LAST_SECS}s"
fi
if [ "$PRECISION_ONLY" = 1 ]; then
  :
elif [ "$TESTS" = 1 ] && [ -x build/tests/gpu/test_cuda_forward ]; then
  run_step test_cuda_forward 900 test_cuda_forward.log build/tests/gpu/test_cuda_forward
  rc=$?; record "tests/gpu/test_cuda_forward" "$(verdict $rc test_cuda_forward.log)" "$(summary_line test_cuda_forward.log) in ${LAST_SECS}s"
  grep -E '^# gelu modes' "$OUT/test_cuda_forward.log" | sed 's/^# /    /'
fi
if [ "$TESTS" = 1 ] && [ "$PRECISION_ONLY" = 0 ] && [ -x build/tests/gpu/test_train_cuda ]; then
  run_step test_train_cuda 300 test_train_cuda.log build/tests/gpu/test_train_cuda
  rc=$?; record "tests/gpu/test_train_cuda" "$(verdict $rc test_train_cuda.log)" "$(summary_line test_train_cuda.log) in ${LAST_SECS}s"
fi

# ---- 4. compute-sanitizer ------------------------------------------------------------------
if [ "$TESTS" = 0 ] || [ "$PRECISION_ONLY" = 1 ]; then
  :
elif [ "$HAVE_GPU" = 1 ] && [ -n "$SANITIZER" ] && [ -x build/tests/gpu/test_cuda_forward ]; then
  run_step memcheck 600 memcheck.log env VITD_GPU_QUICK=1 "$SANITIZER" --tool memcheck --error-exitcode 99 \
    build/tests/gpu/test_cuda_forward
  rc=$?; record "compute-sanitizer memcheck (small models, batch <= 5)" "$([ $rc -eq 0 ] && echo ok || echo "FAIL ($rc)")" \
    "$(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -n 1) in ${LAST_SECS}s"
  if [ -x build/tests/gpu/test_train_cuda ]; then
    for tool in memcheck racecheck; do
      run_step "train $tool" 300 "train_$tool.log" "$SANITIZER" --tool $tool --error-exitcode 99 build/tests/gpu/test_train_cuda
      rc=$?; record "compute-sanitizer $tool (head training)" "$([ $rc -eq 0 ] && echo ok || echo "FAIL ($rc)")" \
        "$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/train_$tool.log" | tail -n 1) in ${LAST_SECS}s"
    done
  fi
  if [ -x build/kernel-lab/attention ]; then
    run_step racecheck 600 racecheck.log "$SANITIZER" --tool racecheck --error-exitcode 99 build/kernel-lab/attention 1 197 12 64
    rc=$?; record "compute-sanitizer racecheck (attention lab, B=1)" "$([ $rc -eq 0 ] && echo ok || echo "FAIL ($rc)")" \
      "$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/racecheck.log" | tail -n 1) in ${LAST_SECS}s"
  fi
else
  record compute-sanitizer SKIP "no GPU, no compute-sanitizer, or nothing built"
fi

# ---- 5. kernel lab ------------------------------------------------------------------------
if [ "$TESTS" = 1 ] && [ "$PRECISION_ONLY" = 0 ] && [ "$HAVE_GPU" = 1 ] && [ -x build/kernel-lab/attention ]; then
  for b in 1 64 256; do
    [ "$QUICK" = 1 ] && [ "$b" = 256 ] && continue
    run_step "lab attention B=$b" 300 "lab_attention_b$b.log" build/kernel-lab/attention "$b"
    rc=$?; record "kernel lab attention B=$b" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" "see lab_attention_b$b.log"
  done
  run_step "lab layernorm" 300 lab_layernorm.log build/kernel-lab/layernorm
  rc=$?; record "kernel lab layernorm" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" "see lab_layernorm.log"
fi

# ---- 6. ours vs PyTorch -------------------------------------------------------------------
WORK=${TMPDIR:-/tmp}/vitd_gpu_work
mkdir -p "$WORK"
if [ "$HAVE_GPU" = 1 ] && [ "$TORCH" = 1 ] && [ -x build/tests/gpu/bench_cuda ]; then
  if $PY -c "import torch, torchvision, numpy; assert torch.cuda.is_available()" 2>/dev/null; then
    args=(--out "$OUT" --workdir "$WORK")
    [ "$QUICK" = 1 ] && args+=(--batches "1,8,64")
    [ "$COMPILE" = 0 ] || [ "$QUICK" = 1 ] && args+=(--no-compile)
    run_step gpu_vs_torch 1200 gpu_vs_torch.log $PY bench/gpu_vs_torch.py "${args[@]}"
    rc=$?; record "bench/gpu_vs_torch.py" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" "table below, ${LAST_SECS}s"
  else
    record "bench/gpu_vs_torch.py" SKIP "python3 lacks torch/torchvision/numpy or CUDA"
  fi
elif [ "$TORCH" = 1 ]; then
  record "bench/gpu_vs_torch.py" SKIP "no GPU or no build/tests/gpu/bench_cuda"
fi
# where the time goes, per kernel (ncu), on the model step 6 made
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1 || true)
if [ "$HAVE_GPU" = 1 ] && [ "$TORCH" = 1 ] && [ -n "$NCU" ] && [ -f "$WORK/vit_b_16_random/model.safetensors" ]; then
  for b in 1 256; do
    [ "$QUICK" = 1 ] && [ "$b" = 256 ] && continue
    run_step "profile B=$b" 300 "profile_b$b.md" $PY bench/gpu_profile.py --ncu "$NCU" \
      --model "$WORK/vit_b_16_random" --batch "$b"
    rc=$?; record "bench/gpu_profile.py B=$b" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" \
      "$(grep -oE 'sum of kernel times per forward [0-9.]+ us' "$OUT/profile_b$b.md")"
  done
fi

# ---- 6b. low precision (INT8 / FP8): bench/gpu_precision.sh ----------------------------------
if [ "$HAVE_GPU" = 1 ] && [ -x build/vit ]; then
  if [ ! -f "$WORK/vit_b_16_random/model.safetensors" ]; then
    $PY -c "import sys; sys.path.insert(0, 'bench'); import gpu_vs_torch as g; g.make_model_dir('$WORK')" \
      > "$OUT/make_model.log" 2>&1 || note "could not make the ViT-B/16 model (see make_model.log)"
  fi
  [ -f build/fashion-test-png.tar ] && export FASHION_PNG_TAR="$ROOT/build/fashion-test-png.tar"
  run_step precision 900 precision.log bench/gpu_precision.sh "$OUT" "$WORK/vit_b_16_random"
  rc=$?; record "bench/gpu_precision.sh (int8, fp8)" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" "precision.md, ${LAST_SECS}s"
else
  record "bench/gpu_precision.sh (int8, fp8)" SKIP "no GPU or no build/vit"
fi

# the engine's knobs A/B'd in one run (bench/gpu_knobs.sh); VITD_KNOBS replaces the settings
KNOBS=${VITD_KNOBS:---f16 default VIT_CUDA_CLS_ONLY=0,--f16 VIT_CUDA_RESFUSE=0,--f16 VIT_CUDA_ATTN_KC=16,--f16 VIT_CUDA_SUBBATCH=0,--f16}
if [ "$HAVE_GPU" = 1 ] && [ "$TORCH" = 1 ] && [ "$QUICK" = 0 ] && [ -f "$WORK/vit_b_16_random/model.safetensors" ]; then
  # shellcheck disable=SC2086
  run_step "knobs" 600 knobs.md bench/gpu_knobs.sh "$WORK/vit_b_16_random" "1 256" $KNOBS
  rc=$?; record "bench/gpu_knobs.sh" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" "table below, ${LAST_SECS}s"
fi

# ---- 7. vitd end to end -------------------------------------------------------------------
MODEL=${VITD_CHECK_MODEL:-$WORK/vit_b_16_random}
DEVICE=${VITD_CHECK_DEVICE:-cuda}
if [ "$LOAD" = 1 ] && [ "$HAVE_GPU" = 1 ] && [ ! -f "$MODEL/model.safetensors" ]; then
  note "making the random ViT-B/16 model for the load test"
  $PY -c "import sys; sys.path.insert(0, 'bench'); import gpu_vs_torch as g; g.make_model_dir('$WORK')" \
    > "$OUT/make_model.log" 2>&1 || note "could not make the model (see make_model.log)"
fi
LOAD_OK=$HAVE_GPU
[ "$DEVICE" = cpu ] && LOAD_OK=1
if [ "$LOAD_OK" = 1 ] && [ -x build/vit ] && [ -f "$MODEL/model.safetensors" ]; then
  # the start-up self-check vitd runs (vit_device_check), on ViT-B/16, with its numbers
  run_step "vit check" 300 vit_check.log build/vit check --model "$MODEL" --device "$DEVICE"
  rc=$?; record "vit check ViT-B/16 ($DEVICE vs cpu/fp32)" "$([ $rc -eq 0 ] && echo ok || echo "FAIL ($rc)")" \
    "$(grep -oE 'relative error.*' "$OUT/vit_check.log" | head -n 1)"
fi
if [ "$LOAD_OK" = 1 ] && [ "$LOAD" = 1 ] && [ -x build/vitd ] && [ -f "$MODEL/model.safetensors" ]; then
  # start_vitd LOG [FLAGS...]: vitd on a free port (PORT, VPID), waits until ready or dead
  start_vitd() {
    local log=$1; shift
    PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    build/vitd --model "$MODEL" --host 127.0.0.1 --port "$PORT" --device "$DEVICE" \
      --precision "$([ "$DEVICE" = cpu ] && echo fp32 || echo fp16)" --max-batch 64 \
      --max-delay-us 2000 --max-queue 4096 --decoders "$JOBS" --http-threads 8 "$@" > "$OUT/$log" 2>&1 &
    VPID=$!
    trap 'kill $VPID 2>/dev/null' EXIT
    for _ in $(seq 1 120); do
      http_get "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
      kill -0 $VPID 2>/dev/null || break
      sleep 1
    done
  }
  start_vitd vitd.log
  IMG=tests/data/server/photo.jpg
  grep -E 'device check' "$OUT/vitd.log" | head -n 2
  if ! http_get "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then
    record "vitd under load" FAIL "vitd did not become ready (see vitd.log: $(grep -m1 -oE 'device check failed.{0,120}' "$OUT/vitd.log"))"
  elif [ -z "${VITD_NO_WRK:-}" ] && command -v wrk >/dev/null; then
    cat > "$WORK/post.lua" <<EOF
local f = assert(io.open("$ROOT/$IMG", "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
EOF
    # wrk_run CONNECTIONS LOG LABEL: 20 s of wrk against the running vitd, recorded as LABEL
    wrk_run() {
      local c=$1 log=$2 label=$3
      run_step "wrk c=$c" 120 "$log" wrk -t8 -c"$c" -d20s --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT/classify"
      record "$label + wrk, $c connections" "$(grep -E 'Requests/sec' "$OUT/$log" | awk '{print $2 " req/s"}')" \
        "p50 $(grep -E '^ +50%' "$OUT/$log" | awk '{print $2}'), p99 $(grep -E '^ +99%' "$OUT/$log" | awk '{print $2}')"
    }
    for c in 16 128; do wrk_run "$c" "wrk_c$c.log" "vitd ($DEVICE)"; done
    # A/B of the batch buffers' pixel type: the run above used the default (fp16 on cuda)
    if [ "$DEVICE" = cuda ] || [ -n "${VITD_CHECK_INPUT_AB:-}" ]; then
      http_get "http://127.0.0.1:$PORT/v1/models" > "$OUT/v1_models.json" 2>/dev/null
      http_get "http://127.0.0.1:$PORT/metrics" > "$OUT/metrics.txt" 2>/dev/null
      kill $VPID 2>/dev/null; wait $VPID 2>/dev/null
      start_vitd vitd_fp32.log --input fp32
      wrk_run 128 wrk_c128_fp32.log "vitd ($DEVICE, --input fp32)"
      http_get "http://127.0.0.1:$PORT/metrics" > "$OUT/metrics_fp32.txt" 2>/dev/null
    fi
  else
    note "wrk is not installed on this machine: using a Python load generator instead (same request)"
    for c in 16 128; do
      run_step "pyload c=$c" 120 "pyload_c$c.log" $PY - "$PORT" "$IMG" "$c" 20 <<'EOF'
import http.client, sys, threading, time
port, img, conns, secs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
body = open(img, "rb").read()
lat, errs, lock = [], [0], threading.Lock()
end = time.time() + secs
def worker():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.time() < end:
        t0 = time.time()
        try:
            c.request("POST", "/classify", body, {"Content-Type": "image/jpeg"})
            r = c.getresponse(); r.read()
            ok = r.status == 200
        except Exception:
            ok = False
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            (lat.append(time.time() - t0) if ok else errs.__setitem__(0, errs[0] + 1))
ts = [threading.Thread(target=worker) for _ in range(conns)]
t0 = time.time(); [t.start() for t in ts]; [t.join() for t in ts]; el = time.time() - t0
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3 if lat else float("nan")
print(f"Requests/sec: {len(lat) / el:.1f}  errors {errs[0]}  p50 {q(0.5):.2f}ms  p99 {q(0.99):.2f}ms")
EOF
      record "vitd ($DEVICE) + python load, $c connections" "$(grep -oE 'Requests/sec: [0-9.]+' "$OUT/pyload_c$c.log" | awk '{print $2 " req/s"}')" \
        "$(grep -oE 'errors.*' "$OUT/pyload_c$c.log") (Python client: its own CPU cost limits it)"
    done
  fi
  [ -s "$OUT/v1_models.json" ] || http_get "http://127.0.0.1:$PORT/v1/models" > "$OUT/v1_models.json" 2>/dev/null
  [ -s "$OUT/metrics.txt" ] || http_get "http://127.0.0.1:$PORT/metrics" > "$OUT/metrics.txt" 2>/dev/null
  kill $VPID 2>/dev/null; wait $VPID 2>/dev/null
  trap - EXIT
elif [ "$LOAD" = 1 ]; then
  record "vitd under load" SKIP "needs a GPU, build/vitd and the ViT-B model made by step 6"
fi

# ---- summary ------------------------------------------------------------------------------
{
  echo "# GPU check $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "GPU: $GPU_NAME  "
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null) ($BUILT)  "
  echo "command: bench/gpu_check.sh $*"
  echo
  echo "| step | result | detail |"
  echo "|---|---|---|"
  printf '%s\n' "${SUMMARY[@]}"
  echo
  [ -f "$OUT/gpu_vs_torch.md" ] && cat "$OUT/gpu_vs_torch.md"
  [ -f "$OUT/knobs.md" ] && { echo; echo "## knobs (bench/gpu_knobs.sh)"; grep -E '^\|' "$OUT/knobs.md"; }
  [ -f "$OUT/precision.md" ] && { echo; sed 's/^# /## /' "$OUT/precision.md"; }
  for f in "$OUT"/profile_b*.md; do
    [ -f "$f" ] || continue
    echo; echo "## $(basename "$f" .md)"; grep -E '^\||kernels profiled' "$f"
  done
  for f in "$OUT"/lab_*.log; do
    [ -f "$f" ] || continue
    echo; echo "## $(basename "$f")"; echo '```'; grep -vE '^(PASS|FAIL) ' "$f"; echo '```'
  done
} > "$OUT/gpu_check.md"
[ "$HAVE_GPU" = 1 ] && cp "$OUT/gpu_check.md" "$ROOT/bench/results/gpu_$STAMP.md" 2>/dev/null
echo
cat "$OUT/gpu_check.md"
grep -q '| FAIL' "$OUT/gpu_check.md" && exit 1
exit 0
