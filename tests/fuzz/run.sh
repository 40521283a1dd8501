#!/usr/bin/env bash
# run.sh: libFuzzer campaigns for the harnesses in tests/fuzz (built by `make fuzz` into
# build-fuzz/fuzz/fuzz_<target>, clang + ASan + UBSan).  One campaign at a time, at nice 10.
#   tests/fuzz/run.sh TARGET SECONDS [libFuzzer args...]   fuzz for SECONDS of wall time
#   tests/fuzz/run.sh merge TARGET                          minimize (-set_cover_merge) the work corpus into
#                                                           tests/fuzz/corpus/TARGET (committed)
#   tests/fuzz/run.sh list                                  the targets
# The work corpus (build-fuzz/work/TARGET) starts from the committed seeds, corpus and
# regressions; crashes, hangs (-timeout) and memory blow-ups (-rss_limit_mb, -malloc_limit_mb)
# land in build-fuzz/artifacts/TARGET/; the log in build-fuzz/logs/TARGET.log.
set -eu
cd "$(dirname "$0")/../.."
F=tests/fuzz
W=build-fuzz

# per target: max_len, dictionaries
opts() {
  case $1 in
    image)       echo "-max_len=32768" ;;
    multipart)   echo "-max_len=4096 -dict=$W/dict/multipart.dict" ;;
    safetensors) echo "-max_len=8192 -dict=$W/dict/json.dict" ;;
    head)        echo "-max_len=4096 -dict=$W/dict/json.dict" ;;
    model)       echo "-max_len=16384 -dict=$W/dict/model.dict" ;;
    admin)       echo "-max_len=1024 -dict=$W/dict/json.dict" ;;
    jsonbody)    echo "-max_len=4096 -dict=$W/dict/json.dict" ;;
    npy)         echo "-max_len=1024" ;;
    exif)        echo "-max_len=512" ;;
    dataset)     echo "-max_len=16384" ;;
    *)           echo "" ;;
  esac
}

dicts() {
  mkdir -p $W/dict
  cp $F/dict/json.dict $F/dict/multipart.dict $W/dict/
  cat $F/dict/model.dict $F/dict/json.dict > $W/dict/model.dict
}

case ${1:-} in
  list) ls $F/fuzz_*.c | sed 's|.*/fuzz_\(.*\)\.c|\1|'; exit 0 ;;
  merge)
    t=$2
    bin=$W/fuzz/fuzz_$t
    out=$F/corpus/$t
    rm -rf "$out.new" && mkdir -p "$out.new"
    # the seeds and regressions are replayed anyway: start from them and keep only what adds
    # coverage to them (libFuzzer adds to the first directory what the others add to it)
    base=()
    for d in seeds regress; do
      [ -d $F/$d/$t ] || continue
      for f in $F/$d/$t/*; do cp "$f" "$out.new/base-$d-$(basename "$f")"; base+=("$out.new/base-$d-$(basename "$f")"); done
    done
    dicts
    nice -n 10 "$bin" -set_cover_merge=1 $(opts "$t") "$out.new" $W/work/$t 2>&1 | grep -E 'MERGE-OUTER: [0-9]+ new files' || true
    rm -f "${base[@]}"
    rm -rf "$out" && mv "$out.new" "$out"
    echo "$out: $(ls "$out" | wc -l) files, $(cat "$out"/* | wc -c) bytes"
    exit 0 ;;
  ''|-h|--help) sed -n '2,11p' "$0"; exit 2 ;;
esac

t=$1 secs=$2
shift 2
bin=$W/fuzz/fuzz_$t
[ -x "$bin" ] || { echo "run.sh: $bin missing: make fuzz" >&2; exit 1; }
dicts
mkdir -p $W/work/$t $W/artifacts/$t $W/logs
for d in seeds corpus regress; do
  [ -d $F/$d/$t ] && cp -n $F/$d/$t/* $W/work/$t/ 2>/dev/null || true
done
echo "run.sh: $t for ${secs}s: $bin $(opts "$t") -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 $*"
set +e
start=$(date +%s)
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
nice -n 10 "$bin" $(opts "$t") -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
  -max_total_time="$secs" -print_final_stats=1 -artifact_prefix=$W/artifacts/$t/ "$@" \
  $W/work/$t > $W/logs/$t.log 2>&1
rc=$?
# CPU seconds of the fuzzer (children of this shell) and wall seconds, for the README's table
times > $W/logs/$t.times   # in this shell: its second line is the children's user and system time
cpu=$(sed -n 2p $W/logs/$t.times | sed 's/[ms]/ /g' | awk '{printf "%.0f", $1 * 60 + $2 + $3 * 60 + $4}')
echo "run.sh: $t: wall $(( $(date +%s) - start )) s, cpu $cpu s" | tee -a $W/logs/$t.log
set -e
grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' $W/logs/$t.log || true
ls $W/artifacts/$t | head
echo "run.sh: $t exit $rc"
