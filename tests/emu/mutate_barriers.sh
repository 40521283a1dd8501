#!/usr/bin/env bash
# mutate_barriers.sh: a developer check of the emulator tests' power (not part of make test,
# takes minutes): removes each __syncthreads() / __syncwarp() of kernels/*.cuh in turn, rebuilds
# the kernel checks (tests/gpu/test_kernels.cu, as test_emu_kernels) against the mutated header
# and reports whether the run failed (CAUGHT: a FAIL line, an emulator FATAL or a sanitizer
# report) or passed (MISSED: the barrier is redundant for these inputs, or the tests cannot see
# the race).
#   tests/emu/mutate_barriers.sh [--race] [SEEDS]
#     --race   build as test_emu_race (the race check on, no ASan) instead of under ASan+UBSan
#     SEEDS    runs per mutant (default 1)
set -u
cd "$(dirname "$0")/../.."
race=0
[ "${1:-}" = --race ] && { race=1; shift; }
seeds=${1:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CXX=${CXX:-g++}
BASE="-std=gnu++17 -O1 -g -ffp-contract=off -fno-strict-aliasing -Wno-unknown-pragmas -Itests/emu/include -Iengine -Itests/gpu -Itests/emu"
if [ $race = 1 ]; then
  EMUF="$BASE -DEMU_RACE"; TESTF="$BASE -DEMU_RACE -fsanitize=thread"; LINKF="-ldl"
else
  EMUF="$BASE -fsanitize=address,undefined -fno-omit-frame-pointer"; TESTF=$EMUF; LINKF="-fsanitize=address,undefined"
fi
mkdir -p "$tmp/gen"
for f in kernels/*.cuh; do python3 tests/emu/gen_host.py "$f" "$tmp/gen/$(basename "$f")"; done
python3 tests/emu/gen_host.py tests/gpu/test_kernels.cu "$tmp/gen/test_kernels.cpp"
$CXX $EMUF -c tests/emu/emu.cpp -o "$tmp/emu.o"
extra=  # test_emu_race also links the race check's own tests
if [ $race = 1 ]; then
  python3 tests/emu/gen_host.py tests/emu/race_self.cpp "$tmp/race_self.cpp"
  $CXX $TESTF -c "$tmp/race_self.cpp" -o "$tmp/race_self.o"; extra="$tmp/race_self.o"
fi
for f in kernels/*.cuh; do
  grep -n '__syncthreads();\|__syncwarp();' "$f" | cut -d: -f1 | while read -r ln; do
    rm -rf "$tmp/mut"; cp -r "$tmp/gen" "$tmp/mut"
    # the generated file has one #line line on top
    sed -i "$((ln + 1))s/__syncthreads();\|__syncwarp();/;/" "$tmp/mut/$(basename "$f")"
    $CXX $TESTF -I"$tmp/mut" -c "$tmp/mut/test_kernels.cpp" -o "$tmp/t.o" && \
      $CXX -o "$tmp/t" "$tmp/t.o" $extra "$tmp/emu.o" $LINKF || { echo "BUILD FAILED $f:$ln"; continue; }
    verdict=MISSED
    for s in $(seq 1 "$seeds"); do
      if ! VITD_SEED=$((s * 7919)) "$tmp/t" > "$tmp/out" 2>&1; then verdict=CAUGHT; break; fi
    done
    what=$(grep -m1 -E '^FAIL|FATAL|ERROR: AddressSanitizer|runtime error' "$tmp/out" | cut -c1-110)
    echo "$verdict $f:$ln ${what}"
  done
done
