#!/usr/bin/env bash
# test_calibrate.sh: `vit calibrate` end to end on a copy of the shipped model and the training
# PNGs of tests/data/fmnist/train: the file it writes is the same bytes for the same data,
# whatever --batch and --threads; --samples and --method change it; the model then loads it
# (`vit info` is unchanged, `--precision int8` on the CPU runs the calibrated scheme and agrees
# with fp32 on the ten tests/data images); a broken or foreign calibration.json makes every
# command fail with exit 7 naming the file; bad arguments exit 2 with one message.
# asan: yes
set -u
cd "$(dirname "$0")/../.."
B=${VITD_BUILD:-build}
VIT="$B/vit"
pass=0 fail=0
ok()  { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cp -r models/fashion-vit "$T/fv"
DATA=tests/data/fmnist/train
IMGS=(tests/data/ankle_boot.png tests/data/bag.png tests/data/coat.png tests/data/dress.png tests/data/pullover.png
      tests/data/sandal.png tests/data/shirt.png tests/data/sneaker.png tests/data/trouser.png tests/data/tshirt.png)

out=$($VIT calibrate --model "$T/fv" --data $DATA --samples 40 --batch 16 --threads 2 2>&1); rc=$?
[ $rc -eq 0 ] && [ -s "$T/fv/calibration.json" ] && grep -q "calibrated .* on 40 images" <<<"$out" &&
  ok "vit calibrate writes DIR/calibration.json ($out)" || bad "vit calibrate: rc=$rc $out"
$VIT calibrate --model "$T/fv" --data $DATA --samples 40 --batch 7 --threads 1 --out "$T/b.json" >/dev/null 2>&1
cmp -s "$T/fv/calibration.json" "$T/b.json" && ok "same bytes with --batch 7 --threads 1" ||
  bad "calibration differs with another batch size / thread count"
$VIT calibrate --model "$T/fv" --data $DATA --samples 40 --method minmax --out "$T/c.json" >/dev/null 2>&1
$VIT calibrate --model "$T/fv" --data $DATA --samples 20 --out "$T/d.json" >/dev/null 2>&1
! cmp -s "$T/fv/calibration.json" "$T/c.json" && ! cmp -s "$T/fv/calibration.json" "$T/d.json" &&
  grep -q '"method": "minmax"' "$T/c.json" && grep -q '"samples": 20' "$T/d.json" &&
  ok "--method minmax and --samples 20 give other files, saying so" || bad "method / samples not reflected"

i1=$($VIT info --model "$T/fv" 2>&1); i2=$($VIT info --model models/fashion-vit 2>&1)
[ "${i1//$T\/fv/X}" = "${i2//models\/fashion-vit/X}" ] && ok "vit info loads the calibrated model (same description)" ||
  bad "vit info differs: $(diff <(echo "$i1") <(echo "$i2") | head -3)"
c8=$($VIT classify --model "$T/fv" --precision int8 --threads 1 "${IMGS[@]}" 2>&1)
c32=$($VIT classify --model "$T/fv" --precision fp32 --threads 1 "${IMGS[@]}" 2>&1)
d8=$($VIT classify --model models/fashion-vit --precision int8 --threads 1 "${IMGS[@]}" 2>&1)
top() { grep -oE '"label": *"[^"]*"' | awk 'NR % 5 == 1'; }
n8=$(top <<<"$c8" | wc -l)
[ "$n8" -ge 10 ] && [ "$(top <<<"$c8")" = "$(top <<<"$c32")" ] && [ "$c8" != "$d8" ] &&
  ok "calibrated int8 on the CPU: same top-1 as fp32 on 10 images, scores differ from dynamic int8" ||
  bad "calibrated int8: $(head -c 300 <<<"$c8")"

cp "$T/fv/calibration.json" "$T/good.json"
printf '{"format": "vitd-calibration"' > "$T/fv/calibration.json"
out=$($VIT classify --model "$T/fv" "${IMGS[0]}" 2>&1); rc=$?
[ $rc -eq 7 ] && grep -q "calibration.json: calibration: bad JSON" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ] &&
  ok "broken calibration.json: exit 7, one line naming the file" || bad "broken calibration: rc=$rc $out"
/usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['num_layers']=3; d['amax']=d['amax'][:3]; print(json.dumps(d))" \
  "$T/good.json" > "$T/fv/calibration.json"
out=$($VIT classify --model "$T/fv" "${IMGS[0]}" 2>&1); rc=$?
[ $rc -eq 7 ] && grep -q "made for 3 layers" <<<"$out" && ok "calibration for another model: exit 7 ($out)" ||
  bad "foreign calibration: rc=$rc $out"
cp "$T/good.json" "$T/fv/calibration.json"

out=$($VIT calibrate --model "$T/fv" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "required" <<<"$out" && ok "no --data: exit 2" || bad "no --data: rc=$rc $out"
out=$($VIT calibrate --model "$T/fv" --data $DATA --method best 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "minmax, percentile or mse" <<<"$out" && ok "bad --method: exit 2" || bad "bad method: rc=$rc"
out=$($VIT calibrate --model "$T/fv" --data "$T/none" 2>&1); rc=$?
[ $rc -ge 1 ] && [ $rc -lt 128 ] && [ $rc -ne 0 ] && ok "missing data: exit $rc" || bad "missing data: rc=$rc $out"
out=$($VIT calibrate --model "$T/fv" --data $DATA --out /nonexistent/dir/c.json 2>&1); rc=$?
[ $rc -eq 3 ] && grep -q "cannot write" <<<"$out" && ok "unwritable --out: exit 3" || bad "unwritable out: rc=$rc $out"
$VIT --help 2>&1 | grep -q "calibrate" && ok "vit --help lists calibrate" || bad "vit --help lacks calibrate"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
