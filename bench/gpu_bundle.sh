#!/usr/bin/env bash
# gpu_bundle.sh: run HERE (the build machine) before borrowing a GPU machine.  Builds everything
# CUDA-enabled (make all gpu-tests kernel-lab) and packs the binaries plus the shared libraries
# they need that a bare CUDA image may lack (OpenBLAS, libpng, libjpeg-turbo, cJSON,
# libmicrohttpd and its GnuTLS chain, cudart; wrk and LuaJIT when installed) into build/gpu-bundle.tar.xz (~15 MB), to carry
# with the device call: run(carry=["build/gpu-bundle.tar.xz"], command="bench/gpu_check.sh").
# bench/gpu_check.sh builds from source when the device has the -dev packages, else unpacks
# this.  Binaries built on Debian 12 (glibc 2.36) run on newer glibc (the CUDA image's 2.39).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-2}
# the bench packages: dataset-fashion-mnist and python3-pil for the 10k test PNGs below
scripts/deps.sh bench
make -j"$jobs" all gpu-tests kernel-lab
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/build/bundle-libs"
# the executables only (the build also leaves -MMD dependency files, *.d, beside them)
bins=(build/vit build/vitd)
for f in build/tests/gpu/* build/kernel-lab/*; do
  [ -f "$f" ] && [ -x "$f" ] && [[ "$f" != *.d ]] && bins+=("$f")
done
cp -a --parents "${bins[@]}" "$stage/"
# wrk for gpu_check.sh's load step (the device image has none), when this machine has it
if command -v wrk >/dev/null; then
  mkdir -p "$stage/build/bundle-bin"
  cp -L "$(command -v wrk)" "$stage/build/bundle-bin/"
  bins+=("$(command -v wrk)")
fi
# every non-glibc library they load (cuBLASLt is 540 MB: the device image's CUDA provides it)
for b in "${bins[@]}"; do ldd "$b"; done | awk '/=>/ {print $3}' | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
    libcublas*|libcuda.so*) ;;
    libssl.so*|libcrypto.so*) ;;  # the system's (Python loads them too: never shadow them)
    *) cp -L "$lib" "$stage/build/bundle-libs/" ;;
  esac
done
# Fashion-MNIST's 10k test images as PNGs for gpu_precision.sh's accuracy rows (the device image
# has no Debian dataset package), when this machine has dataset-fashion-mnist
if [ -d /usr/share/datasets/fashion-mnist ]; then
  png=$(mktemp -d)
  /usr/bin/python3 models/fashion-vit/export_pngs.py "$png" > /dev/null
  tar -C "$png" -cf "$stage/build/fashion-test-png.tar" .
  rm -rf "$png"
else
  echo "gpu_bundle: WARNING: no /usr/share/datasets/fashion-mnist: the bundle has no 10k test PNGs, so gpu_precision.sh's accuracy rows will SKIP" >&2
fi
git rev-parse HEAD > "$stage/build/bundle-commit"
tar -C "$stage" -cJf build/gpu-bundle.tar.xz build
ls -la build/gpu-bundle.tar.xz
echo "gpu_bundle: $(tar -tJf build/gpu-bundle.tar.xz | wc -l) files from commit $(git rev-parse --short HEAD)"
