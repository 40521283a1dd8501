#!/usr/bin/env bash
# batch_sweep.sh: build and run loadtest/batch_sweep.c (engine ms/image vs batch size and
# threads, decode time), with the training run paused meanwhile.
#   loadtest/batch_sweep.sh [MODEL_DIR] [IMAGE]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/libvit.a ] || make -j2 all
LIBS=$(make -s --no-print-directory print-ldlibs 2>/dev/null || true)
[ -n "$LIBS" ] || LIBS="$(pkg-config --libs openblas libpng libturbojpeg libjpeg libcjson) -lz -lm -lpthread"
if [ -d /usr/local/cuda/lib64 ] && nm build/libvit.a 2>/dev/null | grep -q cudaMalloc; then
  LIBS="$LIBS -L/usr/local/cuda/lib64 -Wl,-rpath,/usr/local/cuda/lib64 -lcublasLt -lcublas -lcudart -lstdc++"
fi
cc -O2 -D_GNU_SOURCE -Iengine -o build/batch_sweep loadtest/batch_sweep.c build/libvit.a $LIBS
T=$(cat /tmp/fashion-train.pid 2>/dev/null || true)
trap '[ -n "$T" ] && kill -CONT "$T" 2>/dev/null || true' EXIT
[ -n "$T" ] && kill -STOP "$T" 2>/dev/null || true
build/batch_sweep "${1:-models/fashion-vit}" "${2:-tests/data/server/photo.jpg}"
