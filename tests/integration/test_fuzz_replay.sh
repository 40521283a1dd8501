#!/usr/bin/env bash
# test_fuzz_replay.sh: replays every fuzz harness (tests/fuzz/fuzz_<target>.c, built with gcc
# as $VITD_BUILD/tests/fuzz/replay_<target>, no libFuzzer) over its committed inputs: the seeds
# (tests/fuzz/seeds/<target>), the minimized campaign corpus (tests/fuzz/corpus/<target>) and
# the reproducers of fixed bugs (tests/fuzz/regress/<target>).  Under ASan+UBSan (the asan
# rerun) any memory error, UB or leak fails the target; a hang fails it through the timeout.
# A target whose replay exits non-zero is one FAIL; rerun it with VITD_FUZZ_VERBOSE=1 to see
# which file it was on.
# asan: yes
set -u
cd "$(dirname "$0")/../.."
B=${VITD_BUILD:-build}
pass=0 fail=0
F=tests/fuzz
targets=$(ls $F/fuzz_*.c 2>/dev/null | sed 's|.*/fuzz_\(.*\)\.c|\1|')
[ -n "$targets" ] || { echo "FAIL no harnesses in $F"; echo "0 passed, 1 failed"; exit 1; }
for t in $targets; do
  bin=$B/tests/fuzz/replay_$t
  if [ ! -x "$bin" ]; then echo "FAIL $t: $bin not built"; fail=$((fail + 1)); continue; fi
  dirs=()
  for d in seeds corpus regress; do [ -d "$F/$d/$t" ] && dirs+=("$F/$d/$t"); done
  if [ ${#dirs[@]} -eq 0 ]; then echo "FAIL $t: no inputs"; fail=$((fail + 1)); continue; fi
  out=$(timeout --kill-after=5 120 "$bin" "$t" "${dirs[@]}" 2>&1)
  rc=$?
  p=$(grep -c '^PASS ' <<<"$out")
  f=$(grep -c '^FAIL ' <<<"$out")
  if [ "$rc" -ne 0 ]; then
    # the sanitizer's report (or the timeout) and what was replayed before it
    tail -n 40 <<<"$out"
    echo "FAIL $t: replay exited with status $rc (rerun: VITD_FUZZ_VERBOSE=1 $bin $t ${dirs[*]})"
    fail=$((fail + 1))
  else
    grep -E '^(PASS|FAIL) ' <<<"$out"
    pass=$((pass + p)); fail=$((fail + f))
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
