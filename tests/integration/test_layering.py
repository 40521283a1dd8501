#!/usr/bin/env python3
"""test_layering.py: scripts/layering.py passes on this tree and fails on small fake trees that
each hold one forbidden include (engine -> server, kernels -> engine, a cycle, the server or the
CLI using an engine-internal header), so the check itself is shown able to fail."""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SCRIPT = os.path.join(ROOT, "scripts", "layering.py")
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def run(root):
    p = subprocess.run([sys.executable, SCRIPT, "--root", root], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


# a clean fake tree; each case adds one file or line to a copy
BASE = {
    "engine/vit.h": '#include <stddef.h>\n',
    "engine/util.h": '#include "vit.h"\n',
    "engine/model.h": '#include "vit.h"\n',
    "engine/io/heads.c": '#include "vit.h"\n#include "../model.h"\n',
    "engine/cli/main.c": '#include "vit.h"\n#include "util.h"\n',
    "kernels/common.cuh": '#include <cuda.h>\n',
    "kernels/gelu.cuh": '#include "common.cuh"\n',
    "server/log.h": '#include <stdio.h>\n',
    "server/main.c": '#include "log.h"\n#include "vit.h"\n',
}
CASES = [
    ("engine includes server", {"engine/io/heads.c": '#include "vit.h"\n#include "../../server/log.h"\n'}, "engine/ must not include server/"),
    ("kernel includes engine", {"kernels/gelu.cuh": '#include "common.cuh"\n#include "model.h"\n'}, "kernels/ must not include engine/"),
    ("kernel includes server", {"kernels/gelu.cuh": '#include "../server/log.h"\n'}, "kernels/ must not include server/"),
    ("server include cycle", {"server/a.h": '#include "b.h"\n', "server/b.h": '#include "a.h"\n'}, "include cycle"),
    ("self include", {"server/a.h": '#include "a.h"\n'}, "include cycle"),
    ("engine include cycle in a subfolder", {"engine/cpu/x.h": '#include "../model.h"\n',
                                             "engine/model.h": '#include "cpu/x.h"\n'}, "include cycle"),
    ("server uses an engine-internal header", {"server/main.c": '#include "model.h"\n'}, "public headers"),
    ("CLI uses an engine-internal header", {"engine/cli/main.c": '#  include "model.h"\n'}, "public headers"),
]


def make(tree, root):
    for rel, text in tree.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


with tempfile.TemporaryDirectory(prefix="vitd-layering-") as tmp:
    clean = os.path.join(tmp, "clean")
    make(BASE, clean)
    rc, out = run(clean)
    check("fake clean tree passes", rc == 0, out)
    for i, (name, extra, want) in enumerate(CASES):
        root = os.path.join(tmp, f"case{i}")
        make({**BASE, **extra}, root)
        rc, out = run(root)
        check(f"fails: {name}", rc == 1 and want in out, f"(rc={rc}): {out}")
    rc, out = run(os.path.join(tmp, "empty"))
    check("an empty tree is an error, not a pass", rc != 0, out)

rc, out = run(ROOT)
check("this tree has no forbidden include", rc == 0, out)
print(out.strip().splitlines()[-1] if out.strip() else "")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
