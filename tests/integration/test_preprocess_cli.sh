#!/usr/bin/env bash
# test_preprocess_cli.sh: `vit preprocess` on every test image.  Good images give a float32
# (1, 3, 224, 224) .npy and exit 0; every bad one exits 1..127 (never a signal) with one line on
# stderr and no output file.  Outside ASan each run is under `ulimit -v` (1 GiB: the 60000x60000
# headers would need 10 GiB) to show memory stays bounded.
# asan: yes
set -u
cd "$(dirname "$0")/../.."
VIT=${VITD_BUILD:-build}/vit
MODEL=tests/fixtures/image/model
IMG=tests/data/images
pass=0 fail=0 skip=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok()  { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

limit=""
case "${VITD_BUILD:-build}" in
  *asan*) echo "SKIP ulimit -v under ASan (it reserves terabytes of shadow memory)"; skip=$((skip + 1)) ;;
  *) limit="ulimit -v 1048576;" ;;
esac

if [ ! -x "$VIT" ]; then echo "FAIL $VIT not built"; echo "0 passed, 1 failed"; exit 1; fi

# run NAME EXPECT_RC ARGS...: runs vit preprocess, checks the exit status class
run() {
  local name=$1 want=$2; shift 2
  rm -f "$tmp/out.npy" "$tmp/err"
  bash -c "$limit exec \"\$@\"" _ "$VIT" preprocess "$@" 2>"$tmp/err" >"$tmp/stdout"
  echo $? >"$tmp/rc"
}

npy_size=$((128 + 3 * 224 * 224 * 4))
for f in "$IMG"/*; do
  b=$(basename "$f")
  case "$b" in bad_*) continue ;; esac
  run "$b" 0 --model "$MODEL" "$f" --output "$tmp/out.npy"
  rc=$(cat "$tmp/rc")
  size=$(stat -c %s "$tmp/out.npy" 2>/dev/null || echo 0)
  hdr=$(head -c 128 "$tmp/out.npy" 2>/dev/null | tr -d '\0' | grep -o "'shape': ([0-9, ]*)")
  if [ "$rc" = 0 ] && [ "$size" = "$npy_size" ] && [ "$hdr" = "'shape': (1, 3, 224, 224)" ]; then
    ok "$b -> (1, 3, 224, 224) float32"
  else
    bad "$b: exit $rc, $size bytes, header '$hdr': $(head -c 300 "$tmp/err")"
  fi
done

# bad inputs: want a specific exit status (see cmd_preprocess.c: 4 format, 5 too large, 6 corrupt)
want_rc() {
  case "$1" in
    bad_huge.*) echo 5 ;;
    bad_format.*|bad_random.bin) echo 4 ;;
    *) echo 6 ;;
  esac
}
for f in "$IMG"/bad_*; do
  b=$(basename "$f")
  start=$(date +%s%N)
  run "$b" x --model "$MODEL" "$f" --output "$tmp/out.npy"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  rc=$(cat "$tmp/rc")
  lines=$(wc -l <"$tmp/err")
  want=$(want_rc "$b")
  if [ "$rc" = "$want" ] && [ "$lines" = 1 ] && [ ! -e "$tmp/out.npy" ]; then
    ok "$b -> exit $rc in ${ms} ms: $(cat "$tmp/err")"
  else
    bad "$b: exit $rc (want $want), $lines stderr lines, output $( [ -e "$tmp/out.npy" ] && echo written || echo none): $(head -c 300 "$tmp/err")"
  fi
done

# options and usage errors
run cap x --model "$MODEL" --max-pixels 1000 "$IMG/jpeg_baseline.jpg" --output "$tmp/out.npy"
[ "$(cat "$tmp/rc")" = 5 ] && grep -q "limit of 1000" "$tmp/err" && ok "--max-pixels 1000 refuses a 451x300 JPEG" \
  || bad "--max-pixels: exit $(cat "$tmp/rc"): $(cat "$tmp/err")"
run missing x --model "$MODEL" "$IMG/no_such_file.jpg" --output "$tmp/out.npy"
[ "$(cat "$tmp/rc")" = 3 ] && [ "$(wc -l <"$tmp/err")" = 1 ] && ok "missing file -> exit 3" || bad "missing file: exit $(cat "$tmp/rc")"
run nomodel x --model "$tmp/no_model" "$IMG/jpeg_baseline.jpg" --output "$tmp/out.npy"
[ "$(cat "$tmp/rc")" = 3 ] && ok "missing model directory -> exit 3" || bad "missing model dir: exit $(cat "$tmp/rc")"
run usage x --model "$MODEL" "$IMG/jpeg_baseline.jpg"
[ "$(cat "$tmp/rc")" = 2 ] && ok "no --output -> usage, exit 2" || bad "usage: exit $(cat "$tmp/rc")"
run fast 0 --model "$MODEL" --fast "$IMG/jpeg_gray.jpg" --output "$tmp/out.npy"
[ "$(cat "$tmp/rc")" = 0 ] && [ "$(stat -c %s "$tmp/out.npy" 2>/dev/null)" = "$npy_size" ] && ok "--fast writes the tensor" \
  || bad "--fast: exit $(cat "$tmp/rc"): $(cat "$tmp/err")"
run size 0 --model "$MODEL" --image-size 160 "$IMG/png_rgb.png" --output "$tmp/out.npy"
[ "$(cat "$tmp/rc")" = 0 ] && [ "$(stat -c %s "$tmp/out.npy" 2>/dev/null)" = $((128 + 3 * 160 * 160 * 4)) ] \
  && ok "--image-size 160 -> (1, 3, 160, 160)" || bad "--image-size: exit $(cat "$tmp/rc"): $(cat "$tmp/err")"
run exact 0 --model "$MODEL" --pil-exact "$IMG/jpeg_rocket.jpg" --output "$tmp/out.npy"
[ "$(cat "$tmp/rc")" = 0 ] && [ "$(stat -c %s "$tmp/out.npy" 2>/dev/null)" = "$npy_size" ] && ok "--pil-exact writes the tensor" \
  || bad "--pil-exact: exit $(cat "$tmp/rc"): $(cat "$tmp/err")"
run bench 0 --model "$MODEL" --bench 2 "$IMG/jpeg_baseline.jpg" "$IMG/png_rgb.png"
[ "$(cat "$tmp/rc")" = 0 ] && grep -q "ms/image" "$tmp/stdout" && ok "--bench prints ms/image: $(cat "$tmp/stdout")" \
  || bad "--bench: exit $(cat "$tmp/rc"): $(cat "$tmp/err")"

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
