#!/usr/bin/env bash
# test_eval.sh: `vit eval` on tiny data sets made from tests/data (Fashion-MNIST PNGs) and the
# tests/fixtures IDX pair, with the tiny random HF model fixture (6 ImageNet labels) and, where it
# is committed, the shipped models/fashion-vit.  Checks: counts, class folders matched by name
# (case/space/punctuation-insensitive) and by index, PNG path == IDX path image by image, batch
# size does not change predictions, --limit, --json, gz and plain IDX, a corrupt image counted as
# failed, and bad paths / mismatched data as clean errors (exit 1..127, one message).
# asan: yes
set -u
cd "$(dirname "$0")/../.."
B=${VITD_BUILD:-build}
VIT="$B/vit"
PY=/usr/bin/python3
pass=0 fail=0 skip=0
ok()  { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
skp() { echo "SKIP $*"; skip=$((skip + 1)); }
T=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
TINY=tests/fixtures/models/tiny-hf
D=tests/data
jget() { $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$@"; }
# expect_error NAME PATTERN CMD...: non-zero exit below 128, a message on stderr matching PATTERN
expect_error() {
  local name=$1 pat=$2; shift 2
  "$@" > "$T/out" 2> "$T/err"; local rc=$?
  if [ $rc -gt 0 ] && [ $rc -lt 128 ] && grep -qiE "$pat" "$T/err" \
     && ! grep -qE "Sanitizer|runtime error" "$T/err"; then ok "$name (rc=$rc)"
  else bad "$name: rc=$rc stderr=$(head -c 300 "$T/err")"; fi
}

if [ ! -x "$VIT" ] || ! "$VIT" --help | grep -q '^  eval'; then
  skp "vit eval not built"; echo "$pass passed, $fail failed, $skip skipped"; exit 0
fi

# ---- a 6-class ImageFolder for the tiny model: names in every spelling, and an index ---------
F="$T/folder6"
mkdir -p "$F/tench" "$F/Goldfish" "$F/2" "$F/Tiger-Shark" "$F/HAMMERHEAD" "$F/electric_ray"
cp $D/tshirt.png "$F/tench/a.png";       cp $D/trouser.png "$F/Goldfish/a.png"
cp $D/pullover.png "$F/2/a.png";         cp $D/dress.png "$F/Tiger-Shark/a.png"
cp $D/coat.png "$F/HAMMERHEAD/a.png";    cp $D/sandal.png "$F/electric_ray/a.png"
cp $D/shirt.png "$F/tench/b.png";        cp $D/sneaker.png "$F/electric_ray/b.PNG"
echo "not an image" > "$F/tench/notes.txt"     # ignored: not *.png|*.jpg|*.jpeg
# the same first six images as an IDX pair, labels 0..5, record i = class i's a.png
$PY - "$T" <<'PY'
import gzip, struct, sys
t = sys.argv[1]
img = gzip.open("tests/fixtures/fashion10-images-idx3-ubyte.gz").read()
n, h, w = struct.unpack(">III", img[4:16])
assert (n, h, w) == (10, 28, 28)
six = struct.pack(">HBBIII", 0, 8, 3, 6, 28, 28) + img[16:16 + 6 * 784]
lab = struct.pack(">HBBI", 0, 8, 1, 6) + bytes(range(6))
open(f"{t}/six-images-idx3-ubyte", "wb").write(six)
open(f"{t}/six-labels-idx1-ubyte", "wb").write(lab)
gzip.open(f"{t}/sixgz-images-idx3-ubyte.gz", "wb").write(six)
gzip.open(f"{t}/sixgz-labels-idx1-ubyte.gz", "wb").write(lab)
# hostile: header claims 60000 images of 28x28, data for 2
open(f"{t}/huge-images-idx3-ubyte", "wb").write(struct.pack(">HBBIII", 0, 8, 3, 60000, 28, 28) + img[16:16 + 2 * 784])
open(f"{t}/huge-labels-idx1-ubyte", "wb").write(struct.pack(">HBBI", 0, 8, 1, 60000) + bytes(60000))
open(f"{t}/shortlab-images-idx3-ubyte", "wb").write(six)
open(f"{t}/shortlab-labels-idx1-ubyte", "wb").write(struct.pack(">HBBI", 0, 8, 1, 5) + bytes(5))
open(f"{t}/badlab-images-idx3-ubyte", "wb").write(six)
open(f"{t}/badlab-labels-idx1-ubyte", "wb").write(struct.pack(">HBBI", 0, 8, 1, 6) + bytes([0, 1, 2, 3, 4, 6]))
PY

"$VIT" eval --model $TINY --data "$F" --json --batch 3 --predictions "$T/p3.tsv" > "$T/f.json" 2> "$T/err"
rc=$?
if [ $rc -eq 0 ] && [ "$(jget "$T/f.json" 'd["images"]')" = 8 ]; then ok "ImageFolder: 8 images evaluated, exit 0"
else bad "ImageFolder: rc=$rc $(head -c 300 "$T/err") $(head -c 300 "$T/f.json")"; fi
got=$(jget "$T/f.json" '[(c["index"], c["images"]) for c in d["per_class"]]')
if [ "$got" = "[(0, 2), (1, 1), (2, 1), (3, 1), (4, 1), (5, 2)]" ]; then ok "folders matched by name (any spelling) and by index: $got"
else bad "per-class counts: $got"; fi
cm=$(jget "$T/f.json" '(sum(map(sum, d["confusion"])), [sum(r) for r in d["confusion"]])')
if [ "$cm" = "(8, [2, 1, 1, 1, 1, 2])" ]; then ok "confusion matrix rows sum to the class counts"
else bad "confusion matrix: $cm"; fi
t1=$(jget "$T/f.json" 'd["top1_correct"] == sum(d["confusion"][i][i] for i in range(6)) and d["top5_correct"] >= d["top1_correct"]')
[ "$t1" = True ] && ok "top-1 = trace of the confusion matrix, top-5 >= top-1" || bad "top-1/top-5 inconsistent"
n_pred=$(wc -l < "$T/p3.tsv")
[ "$n_pred" -eq 8 ] && ok "--predictions: one line per image" || bad "--predictions: $n_pred lines"

"$VIT" eval --model $TINY --data "$F" --batch 8 --predictions "$T/p8.tsv" > "$T/text.out" 2>&1
if cmp -s <(sort "$T/p3.tsv") <(sort "$T/p8.tsv"); then ok "batch 3 and batch 8 give the same predictions"
else bad "batch size changed predictions: $(diff <(sort "$T/p3.tsv") <(sort "$T/p8.tsv") | head -5)"; fi
if grep -q '^top-1: ' "$T/text.out" && grep -q '^top-5: ' "$T/text.out" && grep -q 'confusion matrix' "$T/text.out" \
   && grep -q 'images/s' "$T/text.out"; then ok "text report: top-1, top-5, per class, confusion, images/s"
else bad "text report incomplete: $(head -c 400 "$T/text.out")"; fi
if ! grep -q $'\r' "$T/text.out"; then ok "no progress bar when stderr is not a terminal"
else bad "progress bar written to a non-terminal"; fi

"$VIT" eval --model $TINY --data "$F" --limit 4 --json > "$T/l.json" 2>/dev/null
[ "$(jget "$T/l.json" 'd["images"]')" = 4 ] && ok "--limit 4 evaluates 4 images" || bad "--limit: $(head -c 200 "$T/l.json")"

# ---- IDX: same pixels as the PNGs, so the same prediction per image ----------------------
for name in six sixgz; do
  f="$T/$name-images-idx3-ubyte"; [ $name = sixgz ] && f="$f.gz"
  "$VIT" eval --model $TINY --data "$f" --json --predictions "$T/$name.tsv" > "$T/$name.json" 2> "$T/err"
  rc=$?
  if [ $rc -eq 0 ] && [ "$(jget "$T/$name.json" 'd["images"]')" = 6 ]; then ok "IDX ($name): 6 images, labels found beside the images file"
  else bad "IDX ($name): rc=$rc $(head -c 300 "$T/err")"; fi
done
# record i is class i's a.png: compare the predicted class image by image
$PY - "$T" <<'PY' > "$T/cmp.out"
import sys
t = sys.argv[1]
png = {}
for line in open(f"{t}/p3.tsv"):
    path, y, p = line.rstrip("\n").split("\t")
    if path.endswith("/a.png"):
        png[int(y)] = int(p)
for name in ("six", "sixgz"):
    idx = {}
    for line in open(f"{t}/{name}.tsv"):
        path, y, p = line.rstrip("\n").split("\t")
        idx[int(path.rsplit("#", 1)[1])] = (int(y), int(p))
    same = all(idx[i] == (i, png[i]) for i in range(6))
    print(f"{name} {'same' if same else 'DIFFERENT'} png={png} idx={idx}")
PY
if [ "$(grep -c ' same ' "$T/cmp.out")" -eq 2 ]; then ok "IDX gray pixels and PNG files give the same prediction for every image"
else bad "PNG vs IDX: $(cat "$T/cmp.out")"; fi
cp "$T/six-labels-idx1-ubyte" "$T/other-labels"
mv "$T/six-labels-idx1-ubyte" "$T/six-labels-idx1-ubyte.moved"
expect_error "IDX without a labels file beside it" "labels" "$VIT" eval --model $TINY --data "$T/six-images-idx3-ubyte"
"$VIT" eval --model $TINY --data "$T/six-images-idx3-ubyte" --labels "$T/other-labels" --json > "$T/o.json" 2>/dev/null \
  && [ "$(jget "$T/o.json" 'd["images"]')" = 6 ] && ok "--labels FILE" || bad "--labels FILE"

# ---- errors -------------------------------------------------------------------------------
expect_error "data path that does not exist" "no such file" "$VIT" eval --model $TINY --data "$T/nope"
expect_error "model directory that does not exist" "nope" "$VIT" eval --model "$T/nope" --data "$F"
expect_error "a PNG file is not an IDX file" "not an IDX" "$VIT" eval --model $TINY --data $D/bag.png
expect_error "IDX header claiming more images than the file holds" "claims" "$VIT" eval --model $TINY --data "$T/huge-images-idx3-ubyte"
expect_error "IDX with fewer labels than images" "5 labels for 6 images" "$VIT" eval --model $TINY --data "$T/shortlab-images-idx3-ubyte"
expect_error "IDX label beyond the model's classes" "out of range" "$VIT" eval --model $TINY --data "$T/badlab-images-idx3-ubyte"
expect_error "10-class IDX on a 6-class model" "out of range" "$VIT" eval --model $TINY --data tests/fixtures/fashion10-images-idx3-ubyte.gz
head -c 1500 tests/fixtures/fashion10-images-idx3-ubyte.gz > "$T/cut-images-idx3-ubyte.gz"
cp tests/fixtures/fashion10-labels-idx1-ubyte.gz "$T/cut-labels-idx1-ubyte.gz"
expect_error "truncated gzip IDX" "truncated|corrupt|claims" "$VIT" eval --model $TINY --data "$T/cut-images-idx3-ubyte.gz"
mkdir -p "$T/unmatched/goldfishy"; cp $D/bag.png "$T/unmatched/goldfishy/"
expect_error "folder matching no label" "goldfishy" "$VIT" eval --model $TINY --data "$T/unmatched"
mkdir -p "$T/dup/1" "$T/dup/Goldfish"; cp $D/bag.png "$T/dup/1/"; cp $D/bag.png "$T/dup/Goldfish/"
expect_error "two folders for one label" "both match" "$VIT" eval --model $TINY --data "$T/dup"
mkdir -p "$T/empty"
expect_error "directory without class folders" "no class subfolders" "$VIT" eval --model $TINY --data "$T/empty"
expect_error "--labels with an ImageFolder" "labels" "$VIT" eval --model $TINY --data "$F" --labels "$T/other-labels"
expect_error "missing --data" "required" "$VIT" eval --model $TINY
expect_error "bad --batch" "batch" "$VIT" eval --model $TINY --data "$F" --batch 0
# a corrupt image among good ones: reported and counted, the rest evaluated, exit non-zero
cp -r "$F" "$T/withbad"; head -c 60 $D/bag.png > "$T/withbad/Goldfish/cut.png"
"$VIT" eval --model $TINY --data "$T/withbad" --json > "$T/wb.json" 2> "$T/err"; rc=$?
if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [ "$(jget "$T/wb.json" '(d["images"], d["failed"])')" = "(8, 1)" ] \
   && grep -q "cut.png" "$T/err"; then ok "corrupt image: named on stderr, counted as failed, others evaluated, exit $rc"
else bad "corrupt image: rc=$rc $(head -c 200 "$T/err") $(head -c 200 "$T/wb.json")"; fi

# ---- the shipped model: 10 Fashion-MNIST classes, folders by name and by index -------------
M=models/fashion-vit
if [ ! -f $M/model.safetensors ]; then
  skp "shipped model checks: $M/model.safetensors not committed yet"
else
  G="$T/folder10"
  i=0
  for f in tshirt:T-shirt_top trouser:trouser pullover:Pullover dress:3 coat:COAT sandal:sandal \
           shirt:6 sneaker:Sneaker bag:8 ankle_boot:ankle-boot; do
    mkdir -p "$G/${f#*:}"; cp "$D/${f%%:*}.png" "$G/${f#*:}/"; i=$((i + 1))
  done
  "$VIT" eval --model $M --data "$G" --json --predictions "$T/g.tsv" > "$T/g.json" 2> "$T/err"; rc=$?
  "$VIT" eval --model $M --data tests/fixtures/fashion10-images-idx3-ubyte.gz --json --predictions "$T/gi.tsv" > "$T/gi.json" 2>> "$T/err"
  a=$(jget "$T/g.json" '(d["images"], d["confusion"])' 2>/dev/null)
  b=$(jget "$T/gi.json" '(d["images"], d["confusion"])' 2>/dev/null)
  if [ $rc -eq 0 ] && [ -n "$a" ] && [ "$a" = "$b" ]; then ok "shipped model: 10 PNG folders (by name and index) and the IDX pair agree"
  else bad "shipped model PNG vs IDX: rc=$rc $(head -c 200 "$T/err") png=$a idx=$b"; fi
  c=$(jget "$T/g.json" 'd["top1_correct"]' 2>/dev/null)
  final=$(jget $M/config.json 'd.get("vitd_training", {}).get("epochs_done", 0) >= d.get("vitd_training", {}).get("epochs", 1)' 2>/dev/null)
  if [ "$final" != True ]; then skp "shipped model accuracy: an early checkpoint (training not finished)"
  elif [ -n "$c" ] && [ "$c" -ge 8 ]; then ok "shipped model: $c/10 of the sample images right"
  else bad "shipped model: only ${c:-?}/10 of the sample images right"; fi
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
