# asan: yes
"""test_version.py: `vit --version`, `vit version` and `vitd --version` report one build: the
version from git describe (a commit of this checkout when run inside one), the commit, the
build type, whether CUDA is compiled in (matching whether the binary links libcudart); and the
running daemon reports the same in /v1/models (build), GET /v2 (version), the vitd_build_info
gauge; GET /openapi.json serves server/openapi.json byte for byte."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from vitd_testlib import BUILD, ROOT, VITD, Daemon, check, summary  # noqa: E402

LINE = re.compile(r"^(vitd?) (\S+) \(commit ([0-9a-f]{40}|unknown), (release|debug|asan|fuzz) build, CUDA (compiled in|not compiled in)\)$")


def run(*cmd):
    p = subprocess.run(list(cmd), capture_output=True, text=True, cwd=ROOT)
    return p.returncode, p.stdout.strip(), p.stderr


def main():
    vit = os.path.join(ROOT, BUILD, "vit")
    rc, out, _ = run(VITD, "--version")
    m = LINE.match(out)
    check(rc == 0 and m and m.group(1) == "vitd", "vitd --version: one line, version, commit, build type, CUDA", out)
    if not m:
        return summary()
    version, commit, btype, cuda = m.group(2), m.group(3), m.group(4), m.group(5) == "compiled in"
    rc2, out2, _ = run(vit, "--version")
    rc3, out3, _ = run(vit, "version")
    check(rc2 == 0 and out2 == out3 and out2 == out.replace("vitd ", "vit ", 1),
          "vit --version == vit version == vitd's (one build)", (out2, out3))
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    if head.returncode == 0:
        # the build's commit is this checkout's HEAD or (committed since the build) an ancestor
        anc = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"], cwd=ROOT).returncode
        check(anc == 0 and commit[:12] in version, "the commit is this checkout's (HEAD or before), and in the version",
              (commit, head.stdout.strip(), version))
    want_type = "asan" if BUILD == "build-asan" else "release"
    check(btype == want_type, f"build type {want_type} for {BUILD}", btype)
    ldd = subprocess.run(["ldd", VITD], capture_output=True, text=True).stdout
    check(cuda == ("libcudart" in ldd), "CUDA compiled in <=> the binary links libcudart", (cuda, "libcudart" in ldd))
    d = Daemon("--threads", "1")
    if not check(d.wait_ready(), "vitd ready", d.logtext()[-1000:]):
        return summary()
    st, _, b = d.json("GET", "/v1/models")
    check(st == 200 and b["models"][0]["build"] == {"version": version, "commit": commit, "build_type": btype, "cuda": cuda},
          "/v1/models build: the same", b["models"][0].get("build"))
    st, _, b = d.json("GET", "/v2")
    check(st == 200 and b["version"] == version, "GET /v2 version: the same", b)
    mx = d.metrics()
    key = f'vitd_build_info{{version="{version}",commit="{commit}",build_type="{btype}",cuda="{str(cuda).lower()}"}}'
    check(mx.get(key) == 1, "vitd_build_info gauge with the same labels", [k for k in mx if "build_info" in k])
    st, h, data = d.request("GET", "/openapi.json")
    with open(os.path.join(ROOT, "server", "openapi.json"), "rb") as f:
        doc = f.read()
    check(st == 200 and data == doc and h.get("content-type") == "application/json",
          "GET /openapi.json: server/openapi.json byte for byte", (st, len(data), len(doc)))
    check(json.loads(data)["openapi"].startswith("3.1"), "an OpenAPI 3.1 document")
    rc = d.stop()
    check(rc == 0 and "ERROR: AddressSanitizer" not in d.logtext() and "runtime error" not in d.logtext(),
          "vitd exits 0 on SIGTERM, no sanitizer report", (rc, d.logtext()[-1500:]))
    return summary()


if __name__ == "__main__":
    sys.exit(main())
