#!/usr/bin/env bash
# test_info.sh: `vit info` on every model fixture (text and --json checked against ref/meta.json)
# and on hostile model directories made here from a good one: each must fail with exit status 1
# and a one-line message naming the problem, never a signal.  Runs under ASan too.
# asan: yes
set -u
cd "$(dirname "$0")/../.."
B=${VITD_BUILD:-build}
VIT=$B/vit
PY=${PYTHON:-/usr/bin/python3}
pass=0 fail=0
ok()  { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
T=$(mktemp -d /tmp/vitd-test-info-XXXXXX)
trap 'rm -rf "$T"' EXIT
FIX=tests/fixtures/models

# ---- good fixtures ------------------------------------------------------------------------
for d in "$FIX"/*/; do
  d=${d%/}; n=$(basename "$d")
  [ -f "$d/model.safetensors" ] || continue
  out=$("$VIT" info --model "$d" 2>&1); rc=$?
  if [ $rc -eq 0 ] && grep -q "^architecture:" <<<"$out" && grep -q "^parameters:" <<<"$out"; then
    ok "info $n"
  else
    bad "info $n (rc=$rc): $out"
  fi
  "$VIT" info --model "$d" --json > "$T/$n.json" 2>&1; rc=$?
  msg=$("$PY" - "$T/$n.json" "$d/ref/meta.json" <<'EOF'
import json, sys
got = json.load(open(sys.argv[1])); meta = json.load(open(sys.argv[2]))
want = {"naming": meta["scheme"], "image_size": meta["image_size"], "patch_size": meta["patch_size"],
        "hidden_size": meta["hidden"], "num_layers": meta["layers"], "num_heads": meta["heads"],
        "mlp_size": meta["mlp"], "num_classes": meta["classes"], "labels": meta["labels"],
        "pooling": meta["pooling"], "distilled": meta["distilled"], "pre_logits": meta["pre_logits"],
        "qkv_bias": meta["qkv_bias"], "feature_dim": meta["feature_dim"], "num_params": meta["num_params"],
        "layer_norm_eps": meta["eps"], "num_prefix_tokens": meta["num_prefix_tokens"],
        "num_register_tokens": meta.get("num_register_tokens", 0),
        "layer_scale": meta.get("layer_scale", False)}
bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
print("ok" if not bad else "mismatch %s" % bad)
EOF
)
  if [ $rc -eq 0 ] && [ "$msg" = ok ]; then ok "info --json $n matches meta.json"; else bad "info --json $n (rc=$rc): $msg"; fi
done
out=$("$VIT" info --model "$FIX/tiny-timm" --image-size 48 2>&1)
if grep -q "image size:     48 (trained at 32" <<<"$out" && grep -q "grid 6x6 = 36 patches" <<<"$out"; then
  ok "info --image-size 48 reports the interpolated grid"
else
  bad "info --image-size 48: $out"
fi

# ---- hostile directories ------------------------------------------------------------------
mk() { rm -rf "$T/$1"; mkdir -p "$T/$1"; cp "$FIX/tiny-timm/config.json" "$FIX/tiny-timm/model.safetensors" "$T/$1/"; }
expect_fail() { # name needle
  local out rc
  out=$("$VIT" info --model "$T/$1" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 1 ] && grep -q -- "$2" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ]; then
    ok "hostile $1: $out"
  else
    bad "hostile $1 (rc=$rc, wanted 1 and '$2'): $out"
  fi
}
size=$(stat -c %s "$FIX/tiny-timm/model.safetensors")
mk truncated;   truncate -s $((size / 2)) "$T/truncated/model.safetensors";   expect_fail truncated "outside the data section"
mk empty;       : > "$T/empty/model.safetensors";                            expect_fail empty "empty file"
mk hlen-huge;   printf '\xff\xff\xff\xff\xff\xff\xff\x7f' | dd of="$T/hlen-huge/model.safetensors" conv=notrunc status=none
expect_fail hlen-huge "exceeds"
mk hlen-past;   printf '\x00\x00\x10\x00\x00\x00\x00\x00' | dd of="$T/hlen-past/model.safetensors" conv=notrunc status=none
expect_fail hlen-past "runs past the end"
mk badjson;     printf '{"x": [1,,' | dd of="$T/badjson/model.safetensors" bs=1 seek=8 conv=notrunc status=none
expect_fail badjson "bad JSON in header"
mk random;      head -c 4096 /dev/urandom > "$T/random/model.safetensors";   expect_fail random "invalid checkpoint"
mk badconfig;   echo '{"architecture": ' > "$T/badconfig/config.json";       expect_fail badconfig "config.json: bad JSON"
mk nost;        rm "$T/nost/model.safetensors";                              expect_fail nost "model.safetensors: No such file"
mk noconfig;    rm "$T/noconfig/config.json";                                expect_fail noconfig "config.json: No such file"
expect_fail does-not-exist "not a model directory"
# config.json dims far beyond the checkpoint (found by fuzzing): refused by the tensor check, before
# the parameter block they imply (0.6 PB here) is allocated
mkhf() { rm -rf "$T/$1"; mkdir -p "$T/$1"; cp "$FIX/tiny-hf/config.json" "$FIX/tiny-hf/model.safetensors" "$T/$1/"; }
mkhf hugedims
$PY - "$T/hugedims/config.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=65536, num_hidden_layers=1024, intermediate_size=1 << 20, num_attention_heads=16)
json.dump(c, open(sys.argv[1], "w"))
PYEOF
expect_fail hugedims "expected shape \[65536, 3, 8, 8\]"

# ---- usage errors -------------------------------------------------------------------------
"$VIT" info >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "info without --model: exit 2" || bad "info without --model: exit $rc"
"$VIT" info --model "$FIX/tiny-hf" --bogus >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] && ok "info --bogus: exit 2" || bad "info --bogus: exit $rc"
"$VIT" info --model "$FIX/tiny-hf" --image-size 36 >/dev/null 2>&1; rc=$?
[ $rc -eq 1 ] && ok "info --image-size 36 (not a multiple of 8): exit 1" || bad "info --image-size 36: exit $rc"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
