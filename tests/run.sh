#!/usr/bin/env bash
# run.sh: the whole test suite.  Runs every unit test binary (build/tests/test_*), every
# script in tests/integration/ (*.sh, *.py with /usr/bin/python3), then, under ASan+UBSan,
# the unit tests again and the scripts that carry the line "# asan: yes".  The CUDA kernels'
# tests on the CPU emulator (tests/emu) exist only in the ASan build: asan:test_emu_*.
# Each test prints PASS/FAIL lines and ends with "N passed, M failed[, K skipped]";
# this sums them and ends with the same line.  Exit status non-zero on any failure.
#   VITD_TEST_ONLY=unit|asan|integration   run one phase
#   VITD_TEST_FILTER=substring             run only tests whose name contains it
set -u
cd "$(dirname "$0")/.."
export PYTHON=/usr/bin/python3
total_p=0 total_f=0 total_s=0
only=${VITD_TEST_ONLY:-}
filter=${VITD_TEST_FILTER:-}

run_one() { # name build cmd...
  local name=$1 build=$2; shift 2
  [ -n "$filter" ] && [[ "$name" != *"$filter"* ]] && return
  echo "=== $name ($build)"
  local out rc line p f s
  out=$(mktemp)
  VITD_BUILD=$build timeout --kill-after=10 600 "$@" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^([A-Za-z_-]+: )?[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
  rm -f "$out"
  if [ -z "$line" ]; then
    echo "FAIL $name: no summary line (exit $rc)"; total_f=$((total_f + 1)); return
  fi
  p=$(grep -oE "[0-9]+ passed" <<<"$line" | grep -oE "[0-9]+")
  f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')
  s=$(grep -oE '[0-9]+ skipped' <<<"$line" | grep -oE '[0-9]+' || echo 0)
  total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + ${s:-0}))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $name: exit status $rc"; total_f=$((total_f + 1))
  fi
}

run_scripts() { # build asan_only
  local build=$1 asan=$2 t
  for t in tests/integration/*.sh tests/integration/*.py; do
    [ -e "$t" ] || continue
    if [ "$asan" = 1 ] && ! head -n 12 "$t" | grep -q '^# asan: yes'; then continue; fi
    case "$t" in
      *.py) run_one "$(basename "$t")" "$build" "$PYTHON" "$t" ;;
      *.sh) run_one "$(basename "$t")" "$build" bash "$t" ;;
    esac
  done
}

start=$(date +%s)
if [ -z "$only" ] || [ "$only" = unit ]; then
  for t in build/tests/test_*; do [ -x "$t" ] && run_one "$(basename "$t")" build "$t"; done
fi
if [ -z "$only" ] || [ "$only" = integration ] || [ "$only" = unit ]; then
  run_scripts build 0
fi
if [ -z "$only" ] || [ "$only" = asan ]; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=99}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}
  for t in build-asan/tests/test_*; do [ -x "$t" ] && run_one "asan:$(basename "$t")" build-asan "$t"; done
  run_scripts build-asan 1
fi
echo "=== suite took $(( $(date +%s) - start ))s"
if [ "$total_s" -gt 0 ]; then
  echo "$total_p passed, $total_f failed, $total_s skipped"
else
  echo "$total_p passed, $total_f failed"
fi
[ "$total_f" -eq 0 ]
