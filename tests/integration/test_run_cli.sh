#!/usr/bin/env bash
# test_run_cli.sh: `vit run`, `vit classify` and `vit bench` as scripts call them.
# run: outputs vs the PyTorch fixtures (logits 1e-4 of the largest |logit|, attention and rollout
# 1e-5, features 1e-4), shapes, and every error path with its exit status (usage 2, i/o 3,
# bad model 7, no device 8), always below 128 with one line on stderr.
# classify: one valid JSON line per file in order, top-k sorted probabilities, attention grid,
# bad files get their own error line and a non-zero exit, batching does not change results,
# and its scores equal softmax(`vit run` logits) on `vit preprocess`'s tensor of the same file.
# bench: prints "<number> images/s", rejects bad arguments.
# asan: yes
set -u
cd "$(dirname "$0")/../.."
B=${VITD_BUILD:-build}
VIT=$B/vit
PY=${PYTHON:-/usr/bin/python3}
pass=0 fail=0
ok()  { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
F=tests/fixtures/models

# expect STATUS DESC CMD...: exit status STATUS, and a message on stderr when non-zero
expect() {
  local want=$1 desc=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; local rc=$?
  if [ "$rc" -ne "$want" ]; then bad "$desc: exit $rc, expected $want ($(head -c 300 "$T/err"))"; return; fi
  if [ "$want" -ne 0 ] && [ ! -s "$T/err" ]; then bad "$desc: exit $rc but nothing on stderr"; return; fi
  ok "$desc (exit $rc)"
}

# ---- vit run vs PyTorch -----------------------------------------------------------------------
for m in tiny-hf tiny-tv tiny-timm-avgpool tiny-deit-distilled; do
  d=$F/$m
  expect 0 "run $m" "$VIT" run --model "$d" --input "$d/ref/input.npy" --output "$T/l.npy" \
    --attention "$T/a.npy" --rollout "$T/r.npy" --features "$T/f.npy" --threads 2 --batch 1
  msg=$("$PY" - "$d/ref" "$T" <<'EOF'
import sys, numpy as np
ref, out = sys.argv[1], sys.argv[2]
bad = []
for name, ref_name, rel, tol in [("l", "logits", True, 1e-4), ("f", "features", True, 1e-4),
                                 ("a", "attn_cls", False, 1e-5), ("r", "rollout", False, 1e-5)]:
    a = np.load(f"{out}/{name}.npy"); r = np.load(f"{ref}/{ref_name}.npy")
    if a.shape != r.shape or a.dtype != np.float32:
        bad.append(f"{ref_name} shape {a.shape} {a.dtype} vs {r.shape}"); continue
    t = tol * (np.abs(r).max() if rel else 1.0)
    d = float(np.abs(a - r).max())
    if not d <= t: bad.append(f"{ref_name} maxdiff {d:.3g} > {t:.3g}")
print("; ".join(bad) if bad else "ok")
EOF
)
  [ "$msg" = ok ] && ok "run $m: logits, features, attention, rollout match PyTorch" || bad "run $m: $msg"
done

d=$F/tiny-hf
expect 2 "run without --output" "$VIT" run --model "$d" --input "$d/ref/input.npy"
expect 2 "run with an unknown option" "$VIT" run --model "$d" --input "$d/ref/input.npy" --output "$T/l.npy" --bogus
expect 2 "run --threads -1" "$VIT" run --model "$d" --input "$d/ref/input.npy" --output "$T/l.npy" --threads -1
expect 2 "run --device tpu" "$VIT" run --model "$d" --input "$d/ref/input.npy" --output "$T/l.npy" --device tpu
expect 3 "run with a missing input" "$VIT" run --model "$d" --input "$T/nope.npy" --output "$T/l.npy"
expect 2 "run with a wrong-size input" "$VIT" run --model "$d" --input "$F/tiny-tv/ref/input.npy" --output "$T/l.npy"
printf 'not a numpy file' > "$T/junk.npy"
expect 2 "run with a non-.npy input" "$VIT" run --model "$d" --input "$T/junk.npy" --output "$T/l.npy"
expect 3 "run with a missing model dir" "$VIT" run --model "$T/nomodel" --input "$d/ref/input.npy" --output "$T/l.npy"
mkdir -p "$T/broken" && cp "$d/config.json" "$T/broken/" && head -c 1000 "$d/model.safetensors" > "$T/broken/model.safetensors"
expect 7 "run with a truncated checkpoint" "$VIT" run --model "$T/broken" --input "$d/ref/input.npy" --output "$T/l.npy"
expect 3 "run with an unwritable output" "$VIT" run --model "$d" --input "$d/ref/input.npy" --output "$T/nodir/l.npy"
expect 2 "run --device cpu --precision fp16" "$VIT" run --model "$d" --input "$d/ref/input.npy" --output "$T/l.npy" --device cpu --precision fp16
if [ -z "$(command -v nvidia-smi)" ] || ! nvidia-smi -L >/dev/null 2>&1; then
  expect 8 "run --device cuda without a GPU" "$VIT" run --model "$d" --input "$d/ref/input.npy" --output "$T/l.npy" --device cuda
  grep -qi cuda "$T/err" && ok "--device cuda error names cuda" || bad "--device cuda error: $(cat "$T/err")"
fi
expect 0 "run --device auto (falls back to the cpu)" "$VIT" run --model "$d" --input "$d/ref/input.npy" --output "$T/l2.npy" --device auto

# ---- vit classify -------------------------------------------------------------------------------
good=(tests/data/sneaker.png tests/data/bag.png tests/data/images/jpeg_baseline.jpg tests/data/images/png_rgba.png)
expect 0 "classify 4 good images" "$VIT" classify --model "$d" --top-k 3 --attention --batch 3 "${good[@]}"
cp "$T/out" "$T/b3.jsonl"
expect 0 "classify the same images one at a time" "$VIT" classify --model "$d" --top-k 3 --attention --batch 1 "${good[@]}"
cp "$T/out" "$T/b1.jsonl"
expect 4 "classify with bad files in between" "$VIT" classify --model "$d" --top-k 2 \
  tests/data/sneaker.png tests/data/images/bad_format.gif tests/data/bag.png "$T/missing.png" tests/data/images/bad_truncated.jpg
cp "$T/out" "$T/mixed.jsonl"
msg=$("$PY" - "$T" "${good[@]}" <<'EOF'
import sys, json, math
t, good = sys.argv[1], sys.argv[2:]
bad = []
def lines(p):
    return [json.loads(l) for l in open(p) if l.strip()]
b3, b1 = lines(f"{t}/b3.jsonl"), lines(f"{t}/b1.jsonl")
if [o["file"] for o in b3] != good: bad.append("order/files %s" % [o.get("file") for o in b3])
for o in b3:
    p = o.get("predictions", [])
    s = [x["score"] for x in p]
    if len(p) != 3 or s != sorted(s, reverse=True) or not (0 < sum(s) <= 1.000001):
        bad.append(f"predictions {p}")
    if any(set(x) != {"label", "index", "score"} for x in p): bad.append("prediction keys")
    a = o.get("attention", {})
    if a.get("grid") != [4, 4] or len(a.get("values", [])) != 16 or not all(v >= 0 for v in a["values"]):
        bad.append(f"attention {a}")
    elif not 0 < sum(a["values"]) <= 1.000001: bad.append("attention sum")
for x, y in zip(b3, b1):
    for p, q in zip(x["predictions"], y["predictions"]):
        if p["index"] != q["index"] or abs(p["score"] - q["score"]) > 1e-5:
            bad.append(f"batch 3 vs batch 1: {p} {q}")
m = lines(f"{t}/mixed.jsonl")
want = ["ok", "error", "ok", "error", "error"]
got = ["error" if "error" in o else "ok" if len(o.get("predictions", [])) == 2 else "?" for o in m]
if got != want: bad.append(f"mixed lines {got}")
elif any(not o["error"] for o in m if "error" in o): bad.append("empty error message")
print("; ".join(bad) if bad else "ok")
EOF
)
[ "$msg" = ok ] && ok "classify JSON lines: order, top-k, scores, attention, batching, per-file errors" || bad "classify: $msg"

# classify == softmax(run(preprocess(image)))
if "$VIT" preprocess --model "$d" tests/data/sneaker.png --output "$T/x.npy" 2>"$T/err" &&
   "$VIT" run --model "$d" --input "$T/x.npy" --output "$T/lx.npy" 2>>"$T/err"; then
  msg=$("$PY" - "$T" <<'EOF'
import sys, json, numpy as np
t = sys.argv[1]
l = np.load(f"{t}/lx.npy")[0].astype(np.float64)
p = np.exp(l - l.max()); p /= p.sum()
o = json.loads(open(f"{t}/b3.jsonl").readline())
bad = [f"{x['index']}: {x['score']} vs {p[x['index']]:.6g}" for x in o["predictions"] if abs(x["score"] - p[x["index"]]) > 2e-6]
bad += ["top-1 differs"] if o["predictions"][0]["index"] != int(p.argmax()) else []
print("; ".join(bad) if bad else "ok")
EOF
)
  [ "$msg" = ok ] && ok "classify scores == softmax(run logits) of the preprocessed tensor" || bad "classify vs run: $msg"
else
  bad "preprocess + run for the consistency check: $(cat "$T/err")"
fi
# --image-size: the model at another size (position embeddings resampled) gives what preprocess
# + run give at that size, and a different answer than the native size
if "$VIT" preprocess --model "$d" --image-size 48 tests/data/sneaker.png --output "$T/x48.npy" 2>"$T/err" &&
   "$VIT" run --model "$d" --image-size 48 --input "$T/x48.npy" --output "$T/l48.npy" 2>>"$T/err" &&
   "$VIT" classify --model "$d" --image-size 48 --top-k 3 tests/data/sneaker.png >"$T/c48.jsonl" 2>>"$T/err"; then
  msg=$("$PY" - "$T" <<'EOF'
import sys, json, numpy as np
t = sys.argv[1]
l = np.load(f"{t}/l48.npy")[0].astype(np.float64)
p = np.exp(l - l.max()); p /= p.sum()
o = json.loads(open(f"{t}/c48.jsonl").readline())
n = json.loads(open(f"{t}/b3.jsonl").readline())
bad = [f"{x['index']}: {x['score']} vs {p[x['index']]:.6g}" for x in o["predictions"] if abs(x["score"] - p[x["index"]]) > 2e-6]
bad += ["same scores as the native size"] if [x["score"] for x in o["predictions"]] == [x["score"] for x in n["predictions"]] else []
print("; ".join(bad) if bad else "ok")
EOF
)
  [ "$msg" = ok ] && ok "classify --image-size 48 == softmax(run --image-size 48) of preprocess --image-size 48" || bad "classify --image-size: $msg"
else
  bad "classify/preprocess/run --image-size 48: $(cat "$T/err")"
fi
expect 2 "classify --image-size 50 (not a multiple of the patch)" "$VIT" classify --model "$d" --image-size 50 tests/data/bag.png
grep -q "multiple of the patch size" "$T/err" && ok "classify --image-size 50: says why" || bad "classify --image-size 50: $(cat "$T/err")"
expect 2 "classify without images" "$VIT" classify --model "$d"
expect 2 "classify --top-k 0" "$VIT" classify --model "$d" --top-k 0 tests/data/bag.png
expect 3 "classify with a missing model" "$VIT" classify --model "$T/nomodel" tests/data/bag.png

# ---- vit bench ----------------------------------------------------------------------------------
expect 0 "bench batch 2" "$VIT" bench --model "$d" --batch 2 --iters 3 --threads 2
head -n 1 "$T/out" | grep -Eq '^[0-9]+(\.[0-9]+)? images/s$' && ok "bench prints '<number> images/s'" || bad "bench output: $(cat "$T/out")"
expect 0 "bench with attention outputs" "$VIT" bench --model "$F/tiny-deit-distilled" --batch 3 --iters 2 --attention
expect 2 "bench without --batch" "$VIT" bench --model "$d"
expect 2 "bench --batch 0" "$VIT" bench --model "$d" --batch 0
expect 3 "bench with a missing model" "$VIT" bench --model "$T/nomodel" --batch 1

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
