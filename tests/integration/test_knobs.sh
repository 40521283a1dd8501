#!/usr/bin/env bash
# test_knobs.sh: the engine's environment knobs (engine/knobs.c) from the outside: `vit knobs`
# lists them (text and JSON); a bad value makes `vit knobs`, `vit info` and vitd exit non-zero
# with a message naming the knob and what it allows; `vit info` (text and --json) reports the
# values in effect; vitd logs them once at start-up; and GET /v1/models carries the same model
# description as `vit info --json` (engine/describe.c), knobs included.
# asan: yes
set -u
cd "$(dirname "$0")/../.."
B=${VITD_BUILD:-build}
VIT=$B/vit
PY=${PYTHON:-/usr/bin/python3}
M=tests/fixtures/models/tiny-hf
pass=0 fail=0 skip=0
ok()  { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }
skp() { echo "SKIP $*"; skip=$((skip + 1)); }
T=$(mktemp -d /tmp/vitd-test-knobs-XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$T"' EXIT
for v in $(env | grep -oE '^VIT_[A-Z0-9_]+'); do unset "$v"; done   # the defaults, whatever the caller set

# ---- vit knobs ----------------------------------------------------------------------------
out=$("$VIT" knobs 2>&1); rc=$?
n=$(grep -cE '^VIT_[A-Z0-9_]+ ' <<<"$out")
[ $rc -eq 0 ] && [ "$n" -eq 14 ] && ok "vit knobs lists 14 knobs" || bad "vit knobs (rc=$rc, $n rows): $out"
msg=$(VIT_CUDA_SUBBATCH=64 "$VIT" knobs --json | "$PY" -c '
import json, sys
ks = json.load(sys.stdin)
need = {"name", "type", "allowed", "default", "value", "from_env", "doc"}
bad = [k.get("name") for k in ks if set(k) != need or not k["doc"]]
sub = [k for k in ks if k["name"] == "VIT_CUDA_SUBBATCH"][0]
others = [k["name"] for k in ks if k["name"] != "VIT_CUDA_SUBBATCH" and (k["from_env"] or k["value"] != k["default"])]
print("ok" if len(ks) == 14 and not bad and sub["value"] == "64" and sub["from_env"] and not others
      else "bad rows %s, subbatch %s, others %s" % (bad, sub, others))' 2>&1)
[ "$msg" = ok ] && ok "vit knobs --json: every field, the value in effect, from_env" || bad "vit knobs --json: $msg"

# ---- bad values: a clear message and a non-zero exit ---------------------------------------
expect_bad() { # VAR=VALUE exit-status needle command...  (info and knobs: 1; bench: 2, an argument error)
  local set=$1 want=$2 needle=$3 out rc; shift 3
  out=$(env "$set" "$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq "$want" ] && grep -qF -- "$needle" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ]; then ok "$set: exit $rc, $out"
  else bad "$set (rc=$rc, wanted $want and one line with '$needle'): $out"; fi
}
expect_bad VIT_GEMM=fast 1 'VIT_GEMM="fast": allowed one of auto|openblas|avx512' "$VIT" info --model "$M"
expect_bad VIT_CUDA_GEMM_ALGOS=0 1 'VIT_CUDA_GEMM_ALGOS="0": allowed an integer in 1..16' "$VIT" info --model "$M" --json
expect_bad VIT_CUDA_WARMUP=no 1 'VIT_CUDA_WARMUP="no": allowed one of 0|1' "$VIT" knobs
expect_bad VIT_CUDA_ATTN_KC=48 2 'VIT_CUDA_ATTN_KC="48": allowed one of 16|32|64' "$VIT" bench --model "$M" --batch 1 --iters 1

# ---- vit info reports the values in effect -------------------------------------------------
out=$(VIT_GEMM=openblas VIT_CUDA_SUBBATCH=32 "$VIT" info --model "$M" 2>&1)
if grep -q "^knobs: .*VIT_GEMM=openblas (env)" <<<"$out" && grep -q "VIT_CUDA_SUBBATCH=32 (env)" <<<"$out" &&
   grep -q "VIT_CPU_PARALLEL=auto " <<<"$out"; then ok "vit info: the knobs line (set ones marked env)"
else bad "vit info knobs line: $out"; fi
VIT_GEMM=openblas "$VIT" info --model "$M" --json > "$T/info.json" 2>&1
msg=$("$PY" -c '
import json, sys
k = json.load(open(sys.argv[1])).get("knobs", {})
print("ok" if len(k) == 14 and k.get("VIT_GEMM") == "openblas" and k.get("VIT_CUDA_SUBBATCH") == 128
      and k.get("VIT_CUDA_WARMUP") == 1 else "knobs %s" % k)' "$T/info.json" 2>&1)
[ "$msg" = ok ] && ok "vit info --json: knobs object with the values in effect" || bad "vit info --json: $msg"

# ---- vitd: start-up log line, refusal of a bad value, /v1/models = vit info --json -----------
if [ -x "$B/vitd" ]; then
  out=$(VIT_CPU_PARALLEL=threads timeout 20 "$B/vitd" --model "$M" --port 0 --threads 1 2>&1); rc=$?
  if [ $rc -eq 1 ] && grep -qF 'VIT_CPU_PARALLEL="threads": allowed one of auto|ops|images' <<<"$out"; then
    ok "vitd with VIT_CPU_PARALLEL=threads: exit $rc with the message"
  else bad "vitd with a bad knob (rc=$rc): $out"; fi
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  VIT_CUDA_SUBBATCH=16 "$B/vitd" --model "$M" --port "$port" --threads 1 > "$T/vitd.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" > /dev/null && break; sleep 0.1; done
  curl -s "http://127.0.0.1:$port/v1/models" > "$T/models.json"
  kill "$pid"; wait "$pid" 2>/dev/null; pid=""
  n=$(grep -c "engine knobs: VIT_CPU_PARALLEL=auto .*VIT_CUDA_SUBBATCH=16" "$T/vitd.log")
  [ "$n" -eq 1 ] && ok "vitd logs the knobs in effect once at start-up" || bad "vitd start-up log ($n lines): $(head -c 600 "$T/vitd.log")"
  VIT_CUDA_SUBBATCH=16 "$VIT" info --model "$M" --json > "$T/info16.json" 2>&1
  msg=$("$PY" -c '
import json, sys
info = json.load(open(sys.argv[1])); m = json.load(open(sys.argv[2]))["models"][0]
own = {"path"}  # vit info adds only the path; the server adds id, path, device, precision, ...
diff = sorted(k for k in info if k not in own and info[k] != m.get(k))
print("ok" if not diff and len(info) > 20 and m["knobs"]["VIT_CUDA_SUBBATCH"] == 16 and info["path"] == m["path"]
      else "fields that differ: %s" % {k: (info[k], m.get(k)) for k in diff})' "$T/info16.json" "$T/models.json" 2>&1)
  [ "$msg" = ok ] && ok "GET /v1/models carries vit info --json's description field for field (knobs included)" || bad "/v1/models vs vit info --json: $msg"
else
  skp "vitd: no $B/vitd"
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
