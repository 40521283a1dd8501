#!/usr/bin/env bash
# gpu_precision.sh: the low-precision rows of bench/gpu_check.sh (INT8 via cuBLASLt IMMA, FP8
# E4M3), all in one run on one GPU, written as $OUT/precision.md:
#  1. calibration: `vit calibrate` of the shipped model on its training images
#     (tests/data/fmnist/train, method mse) and of the ViT-B/16 model (timing only: 32 images)
#  2. accuracy on Fashion-MNIST's 10,000 test images (the PNG export of bench/fashion_accuracy.sh,
#     $FASHION_PNG_DIR, or $FASHION_PNG_TAR unpacked): top-1 of cpu fp32 (the reference), cpu int8
#     with the calibration (the CPU reference of the GPU's INT8 arithmetic), cuda fp16, cuda int8,
#     cuda fp8, and each one's per-image top-1 agreement with cpu fp32 (goal: within 0.5 point of
#     fp32, agreement >= 99%)
#  3. throughput of ViT-B/16 at batch 1, 64, 256: `vit bench` at fp16, int8, fp8 in turns (same
#     run, same card), next to PyTorch eager FP16 / torch.compile from step 6's gpu_vs_torch.json
#     when it exists (goal: int8 and fp8 >= 1.3x our fp16 at 256, batch 1 no slower)
#  4. compute-sanitizer memcheck of tests/gpu/test_cuda_quant (small models)
#   bench/gpu_precision.sh OUT_DIR VITB_MODEL_DIR      (VITD_BUILD=build, ITERS=50)
# Written without a GPU: none of it has run on one yet.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT=${1:?usage: gpu_precision.sh OUT_DIR VITB_MODEL_DIR}
VITB=${2:-}
B=${VITD_BUILD:-build}
VIT=$B/vit
ITERS=${ITERS:-50}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$OUT"
MD=$OUT/precision.md
rc_all=0
{ echo "# low precision on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
  echo; echo "commit $(git rev-parse --short HEAD 2>/dev/null), $(date -u '+%Y-%m-%d %H:%M UTC')"; echo; } > "$MD"

# ---- 1. calibration -------------------------------------------------------------------------
cp -r models/fashion-vit "$W/fv"
if ! $VIT calibrate --model "$W/fv" --data tests/data/fmnist/train --samples 0 --method mse > "$OUT/calibrate_fv.log" 2>&1; then
  echo "calibration of the shipped model FAILED (see calibrate_fv.log)" >> "$MD"; rc_all=1
fi
if [ -n "$VITB" ] && [ -f "$VITB/model.safetensors" ]; then
  cp -r "$VITB" "$W/vitb"
  $VIT calibrate --model "$W/vitb" --data tests/data/fmnist/train --samples 32 --method minmax \
    > "$OUT/calibrate_vitb.log" 2>&1 || { echo "calibration of ViT-B FAILED" >> "$MD"; rc_all=1; }
fi

# ---- 2. accuracy per precision ----------------------------------------------------------------
PNG=${FASHION_PNG_DIR:-${TMPDIR:-/tmp}/vitd-fashion-test-png}
if [ ! -d "$PNG" ] && [ -n "${FASHION_PNG_TAR:-}" ] && [ -f "$FASHION_PNG_TAR" ]; then
  mkdir -p "$PNG" && tar -xf "$FASHION_PNG_TAR" -C "$PNG"
fi
if [ ! -d "$PNG" ] && [ -d /usr/share/datasets/fashion-mnist ]; then
  /usr/bin/python3 models/fashion-vit/export_pngs.py "$PNG" > /dev/null 2>&1
fi
n=0; [ -d "$PNG" ] && n=$(find "$PNG" -name '*.png' | wc -l)
if [ "$n" -eq 10000 ]; then
  echo "## Fashion-MNIST test (10,000 images), shipped model calibrated on tests/data/fmnist/train" >> "$MD"
  echo >> "$MD"
  echo "| engine | top-1 | agreement with cpu fp32 | command |" >> "$MD"
  echo "|---|---|---|---|" >> "$MD"
  for cfg in "cpu fp32" "cpu int8" "cuda fp16" "cuda int8" "cuda fp8"; do
    set -- $cfg
    tag="$1_$2"
    cmd="$VIT eval --model $W/fv --data $PNG --device $1 --precision $2 --batch 256 --predictions $W/$tag.pred"
    if timeout 900 $cmd > "$OUT/eval_$tag.log" 2>&1; then
      top1=$(grep -oE 'top-1: +[0-9.]+%' "$OUT/eval_$tag.log" | grep -oE '[0-9.]+%')
      agree=$(/usr/bin/python3 - "$W/cpu_fp32.pred" "$W/$tag.pred" <<'EOF'
import sys
def top1(p):  # vit eval --predictions: name, label, predicted class per line
    return dict((f[0], f[2]) for f in (l.rstrip("\n").split("\t") for l in open(p)) if len(f) == 3)
a, b = top1(sys.argv[1]), top1(sys.argv[2])
same = sum(1 for k, v in a.items() if b.get(k) == v)
print(f"{same}/{len(a)} ({100.0 * same / max(len(a), 1):.2f}%)")
EOF
)
      echo "| $cfg | $top1 | $agree | \`$cmd\` |" >> "$MD"
    else
      echo "| $cfg | FAIL | | \`$cmd\` (eval_$tag.log) |" >> "$MD"; rc_all=1
    fi
  done
else
  echo "accuracy: SKIP (no Fashion-MNIST test PNGs: set FASHION_PNG_DIR or FASHION_PNG_TAR)" >> "$MD"
fi

# ---- 3. throughput ----------------------------------------------------------------------------
if [ -f "$W/vitb/calibration.json" ]; then
  echo >> "$MD"; echo "## ViT-B/16 throughput (vit bench, $ITERS iterations, in turns)" >> "$MD"; echo >> "$MD"
  echo "| batch | fp16 images/s | int8 images/s | fp8 images/s | int8/fp16 | fp8/fp16 |" >> "$MD"
  echo "|---|---|---|---|---|---|" >> "$MD"
  for b in 1 64 256; do
    declare -A ips=()
    for p in fp16 int8 fp8; do
      $VIT bench --model "$W/vitb" --device cuda --precision $p --batch $b --iters "$ITERS" --warmup 5 \
        > "$OUT/bench_${p}_b$b.log" 2>&1
      ips[$p]=$(grep -oE '^[0-9.]+ images/s' "$OUT/bench_${p}_b$b.log" | grep -oE '^[0-9.]+' || echo 0)
    done
    r8=$(awk -v a="${ips[int8]}" -v b="${ips[fp16]}" 'BEGIN { printf "%.2fx", b > 0 ? a / b : 0 }')
    rf=$(awk -v a="${ips[fp8]}" -v b="${ips[fp16]}" 'BEGIN { printf "%.2fx", b > 0 ? a / b : 0 }')
    echo "| $b | ${ips[fp16]} | ${ips[int8]} | ${ips[fp8]} | $r8 | $rf |" >> "$MD"
    unset ips
  done
  [ -f "$OUT/gpu_vs_torch.md" ] && { echo; echo "PyTorch in the same run (step 6):"; grep -E '^\|' "$OUT/gpu_vs_torch.md"; } >> "$MD"
else
  echo "throughput: SKIP (no ViT-B/16 model or its calibration failed)" >> "$MD"
fi

# ---- 4. memcheck ------------------------------------------------------------------------------
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -n 1 || true)
if [ -n "$SAN" ] && [ -x "$B/tests/gpu/test_cuda_quant" ]; then
  VITD_GPU_QUICK=1 timeout 600 "$SAN" --tool memcheck --error-exitcode 99 "$B/tests/gpu/test_cuda_quant" \
    > "$OUT/memcheck_quant.log" 2>&1
  rc=$?
  echo >> "$MD"
  echo "compute-sanitizer memcheck, tests/gpu/test_cuda_quant (small models): $([ $rc -eq 0 ] && echo ok || echo "FAIL ($rc)"), $(grep -E 'ERROR SUMMARY' "$OUT/memcheck_quant.log" | tail -n 1)" >> "$MD"
  [ $rc -eq 0 ] || rc_all=1
fi
cat "$MD"
exit $rc_all
