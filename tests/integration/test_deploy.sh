#!/usr/bin/env bash
# test_deploy.sh: the deployment files.  (1) `systemd-analyze verify` on deploy/systemd/vitd.service
# (where the tool exists; ExecStart pointed at this build's vitd, since verify needs the binary);
# (2) the env example names only variables vitd knows (`vitd --help`, or read in server/*.c); (3) the Dockerfile's
# required pieces; (4) the systemd notify protocol against the real daemon: a unix datagram socket
# owned by this test as $NOTIFY_SOCKET, expecting READY=1 after warm-up (with /readyz 200 by then),
# WATCHDOG=1 repeatedly with $WATCHDOG_USEC set, STOPPING=1 after SIGTERM and exit status 0.
set -u
cd "$(dirname "$0")/../.."
B=${VITD_BUILD:-build}
pass=0 fail=0 skip=0
ok()   { echo "PASS $*"; pass=$((pass + 1)); }
bad()  { echo "FAIL $*"; fail=$((fail + 1)); }
skp()  { echo "SKIP $*"; skip=$((skip + 1)); }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# ---- (1) systemd-analyze verify ----------------------------------------------------------
UNIT=deploy/systemd/vitd.service
if ! command -v systemd-analyze >/dev/null; then
  skp "systemd-analyze verify: tool not installed"
else
  exe=$(readlink -f "$B/vitd" 2>/dev/null)
  [ -x "$exe" ] || exe=/bin/true          # verify only needs an executable there
  sed "s|^ExecStart=/usr/local/bin/vitd|ExecStart=$exe|" "$UNIT" > "$T/vitd.service"
  out=$(systemd-analyze verify --man=no "$T/vitd.service" 2>&1); rc=$?
  # warnings about the host's own units are not ours; any line naming our unit is
  ours=$(grep -E "vitd\.service" <<<"$out" || true)
  if [ $rc -eq 0 ] && [ -z "$ours" ]; then ok "systemd-analyze verify vitd.service"
  else bad "systemd-analyze verify vitd.service (rc=$rc): $ours"; fi
  # the verify step itself must catch a broken unit, or it proves nothing
  sed 's/^Type=notify/Type=notifyy/' "$T/vitd.service" > "$T/broken.service"
  out=$(systemd-analyze verify --man=no "$T/broken.service" 2>&1)
  if grep -q "broken.service" <<<"$out"; then ok "systemd-analyze verify flags a broken unit"
  else bad "systemd-analyze verify did not flag Type=notifyy"; fi
fi
for key in Type=notify DynamicUser=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
           NoNewPrivileges=yes StateDirectory=vitd Restart=on-failure \
           EnvironmentFile=-/etc/vitd/vitd.env WatchdogSec=; do
  grep -q "^$key" "$UNIT" || lacks="${lacks:-} $key"
done
if [ -z "${lacks:-}" ]; then ok "unit has the required settings"; else bad "unit lacks:$lacks"; fi

# ---- (2) env example vs vitd --help ------------------------------------------------------
ENVF=deploy/systemd/vitd.env.example
if [ ! -x "$B/vitd" ]; then
  skp "vitd.env.example vs vitd --help: no $B/vitd"
else
  help=$("$B/vitd" --help 2>&1)
  unknown=""
  for v in $(grep -oE '^#? ?VITD_[A-Z0-9_]+' "$ENVF" | grep -oE 'VITD_[A-Z0-9_]+' | sort -u); do
    flag="--$(tr 'A-Z_' 'a-z-' <<<"${v#VITD_}")"
    # a flag in --help, or a variable the daemon reads itself (VITD_ADMIN_TOKEN)
    grep -q -- "$flag" <<<"$help" || grep -q "$v" <<<"$help" \
      || grep -qs "\"$v\"" server/*.c || unknown="$unknown $v"
  done
  if [ -z "$unknown" ]; then ok "every VITD_ variable in vitd.env.example is a vitd flag"
  else bad "vitd.env.example names variables vitd --help does not know:$unknown"; fi
fi

# ---- (3) Dockerfile ----------------------------------------------------------------------
D=deploy/Dockerfile
miss=""
for pat in '^FROM nvidia/cuda:.*-devel-.* AS build-cuda' '^FROM nvidia/cuda:.*-runtime-.* AS cuda' \
           '^FROM debian:bookworm-slim AS build-cpu' '^FROM debian:bookworm-slim AS cpu' \
           '^HEALTHCHECK ' 'CMD curl .*/readyz' '^STOPSIGNAL SIGTERM' '^USER vitd' '^VOLUME .*/models' \
           'scripts/deps.sh build' 'make -j.* NVCC= all'; do
  grep -qE "$pat" "$D" || miss="$miss [$pat]"
done
for s in $(grep -oE -- '--from=[a-z-]+' "$D" | cut -d= -f2 | sort -u); do
  grep -qE "^FROM .* AS $s\$" "$D" || miss="$miss [stage $s]"
done
if [ -z "$miss" ]; then ok "Dockerfile: CUDA build/run, CPU build/run, HEALTHCHECK, STOPSIGNAL, USER, VOLUME"
else bad "Dockerfile lacks:$miss"; fi

# ---- (3b) make install into a scratch DESTDIR --------------------------------------------
if [ "$B" = build ] && [ -x build/vit ]; then
  if make -s install DESTDIR="$T/inst" PREFIX=/usr > "$T/install.log" 2>&1 \
     && [ -x "$T/inst/usr/bin/vit" ] && "$T/inst/usr/bin/vit" --help | grep -q eval \
     && { [ ! -x build/vitd ] || [ -x "$T/inst/usr/bin/vitd" ]; } \
     && { [ ! -f models/fashion-vit/model.safetensors ] \
          || cmp -s models/fashion-vit/model.safetensors "$T/inst/usr/share/vitd/models/fashion-vit/model.safetensors"; }; then
    ok "make install DESTDIR=... PREFIX=/usr: binaries and the shipped model"
  else
    bad "make install: $(tail -n 5 "$T/install.log")"
  fi
else
  skp "make install: only checked against the default build"
fi

# ---- (4) notify protocol against the real daemon -----------------------------------------
MODEL=tests/fixtures/models/tiny-hf
if [ ! -x "$B/vitd" ]; then
  skp "notify protocol: no $B/vitd"
elif [ ! -d "$MODEL" ]; then
  skp "notify protocol: no $MODEL"
else
  /usr/bin/python3 - "$B/vitd" "$MODEL" "$T" > "$T/notify.out" 2>&1 <<'PY'
import os, signal, socket, subprocess, sys, time, urllib.request
vitd, model, tmp = sys.argv[1:4]
def res(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (" " + detail if detail else ""), flush=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
path = os.path.join(tmp, "notify.sock")
s.bind(path)
p = socket.socket(); p.bind(("127.0.0.1", 0)); port = p.getsockname()[1]; p.close()
env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
env.pop("WATCHDOG_PID", None)
log = open(os.path.join(tmp, "vitd.log"), "w")
proc = subprocess.Popen([vitd, "--model", model, "--host", "127.0.0.1", "--port", str(port),
                         "--threads", "1", "--drain-timeout-s", "5"], env=env, stdout=log, stderr=log)
msgs = []
def wait_for(word, timeout):
    end = time.time() + timeout
    while time.time() < end:
        s.settimeout(max(0.05, end - time.time()))
        try:
            m = s.recv(4096).decode(errors="replace")
        except socket.timeout:
            break
        msgs.append(m)
        if word in m.split("\n"):
            return True
    return False
def count(word):
    return sum(word in m.split("\n") for m in msgs)
try:
    got_ready = wait_for("READY=1", 60)
    res(got_ready, "READY=1 received", repr(msgs[:3]) if not got_ready else "")
    code = 0
    if got_ready:
        try:
            code = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status
        except Exception as e:
            code = getattr(e, "code", str(e))
    res(code == 200, "/readyz is 200 once READY=1 was sent", f"got {code}")
    n0 = count("WATCHDOG=1")
    wd = wait_for("WATCHDOG=1", 3) and wait_for("WATCHDOG=1", 3)
    res(wd, "WATCHDOG=1 sent repeatedly with WATCHDOG_USEC=400000", f"{count('WATCHDOG=1') - n0} seen")
    proc.send_signal(signal.SIGTERM)
    stopping = wait_for("STOPPING=1", 10)
    res(stopping, "STOPPING=1 after SIGTERM")
    try:
        rc = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        rc = "timeout"
    res(rc == 0, "vitd exits 0 after SIGTERM", f"rc={rc}")
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()
PY
  cat "$T/notify.out"
  pass=$((pass + $(grep -c '^PASS' "$T/notify.out")))
  fail=$((fail + $(grep -c '^FAIL' "$T/notify.out")))
  if grep -q '^FAIL' "$T/notify.out" || ! grep -q '^PASS' "$T/notify.out"; then
    [ -s "$T/notify.out" ] && ! grep -q '^PASS\|^FAIL' "$T/notify.out" && fail=$((fail + 1))
    echo "--- vitd log (tail)"; tail -n 20 "$T/vitd.log" 2>/dev/null
  fi
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
