#!/usr/bin/env bash
# test_build_flags.sh: the Makefile's flags stamp (BUILD/.flags).  In a scratch BUILD dir, one small
# object (engine/head.c, at -O0) is built again and again: a change of NVCC (CUDA on/off, both
# ways: `make` then `make NVCC=`), OPT, CFLAGS from the environment or SAN recompiles it; the
# same flags again compile nothing and leave the stamp untouched.  No nvcc needed: only the C
# object is built, so a made-up NVCC path just turns -DVIT_HAVE_CUDA on.  A few seconds.
set -u
cd "$(dirname "$0")/../.."
pass=0 fail=0 skip=0
ok()  { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
skp() { echo "SKIP $*"; skip=$((skip + 1)); }
T=$(mktemp -d /tmp/vitd-test-flags-XXXXXX)
trap 'rm -rf "$T"' EXIT
SRC=engine/head.c
unset MAKEFLAGS MFLAGS MAKELEVEL CFLAGS   # run from `make test`: none of its settings leak in
OBJ=$T/engine/head.o

# build OBJ with the given make arguments; $out: make's output, $built: 1 when it compiled SRC
build() {
  out=$(make --no-print-directory -r BUILD="$T" OPT=-O0 "$@" "$OBJ" 2>&1)
  rc=$?
  built=0
  grep -qE -- "-c $SRC -o $OBJ" <<<"$out" && built=1
  [ $rc -eq 0 ] || echo "  make $* failed ($rc): $(tail -n 3 <<<"$out")"
  return $rc
}

if ! command -v make > /dev/null || ! command -v "${CC:-cc}" > /dev/null || [ ! -f "$SRC" ]; then
  skp "flags stamp: no make, no C compiler or no $SRC"
elif [ -z "$(ls engine/*/*.cu kernels/*.cu 2>/dev/null)" ]; then
  skp "flags stamp: no CUDA sources, so NVCC changes nothing"
else
  build NVCC= && [ $built = 1 ] && [ -f "$T/.flags" ] \
    && ok "first build compiles $SRC and writes $T/.flags" || bad "first build: built=$built, stamp $(ls "$T/.flags" 2>&1)"
  grep -q '^NVCC=$' "$T/.flags" && grep -q '^CFLAGS=.*-O0' "$T/.flags" \
    && ok "the stamp records NVCC and CFLAGS" || bad "stamp content: $(head -c 300 "$T/.flags")"
  touch -d '2020-01-01' "$T/.flags"
  stamp0=$(stat -c %Y "$T/.flags")
  build NVCC= && [ $built = 0 ] && [ "$(stat -c %Y "$T/.flags")" = "$stamp0" ] && [ ! -e "$T/.flags.new" ] \
    && ok "same flags: nothing compiled, the stamp untouched" || bad "same flags: built=$built, out: $out"
  # `make` where nvcc is found, after `make NVCC=`: the objects are CUDA-aware now
  build NVCC=/nonexistent/bin/nvcc && [ $built = 1 ] && grep -q -- "-DVIT_HAVE_CUDA" <<<"$out" \
    && ok "NVCC set after NVCC= (CUDA on): recompiled with -DVIT_HAVE_CUDA" || bad "CUDA on: built=$built, out: $out"
  build NVCC=/nonexistent/bin/nvcc && [ $built = 0 ] \
    && ok "NVCC set again: nothing compiled" || bad "CUDA on again: built=$built"
  build NVCC= && [ $built = 1 ] && ! grep -q -- "-DVIT_HAVE_CUDA" <<<"$out" \
    && ok "NVCC= after NVCC set (CUDA off): recompiled without -DVIT_HAVE_CUDA" || bad "CUDA off: built=$built, out: $out"
  build NVCC= OPT=-O1 && [ $built = 1 ] \
    && ok "OPT changed: recompiled" || bad "OPT changed: built=$built"
  out=$(CFLAGS=-DVITD_FLAGS_TEST=1 make --no-print-directory -r BUILD="$T" OPT=-O1 NVCC= "$OBJ" 2>&1)
  grep -qE -- "-DVITD_FLAGS_TEST=1.* -c $SRC" <<<"$out" \
    && ok "CFLAGS from the environment changed: recompiled with them" || bad "CFLAGS changed: $out"
  build NVCC= OPT=-O1 SAN=-fno-omit-frame-pointer && [ $built = 1 ] \
    && ok "SAN changed: recompiled" || bad "SAN changed: built=$built"
  build NVCC= OPT=-O1 SAN=-fno-omit-frame-pointer && [ $built = 0 ] \
    && ok "SAN again: nothing compiled" || bad "SAN again: built=$built"
fi

if [ "$skip" -gt 0 ]; then echo "$pass passed, $fail failed, $skip skipped"; else echo "$pass passed, $fail failed"; fi
[ "$fail" -eq 0 ]
