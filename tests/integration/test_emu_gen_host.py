"""test_emu_gen_host.py: the CPU emulator's source rewrite (tests/emu/gen_host.py, see
tests/emu/README.md): its built-in cases (launches, __shared__ declarations, comments left
alone, constructs it must reject), and every kernels/*.cuh rewrites with no launch or
__shared__ left and the same line count.  The emulator tests themselves run in the ASan phase
(asan:test_emu_kernels, asan:test_emu_race, asan:test_emu_self).
"""
import glob
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "emu"))
import gen_host  # noqa: E402

passed = failed = 0


def check(ok, msg):
    global passed, failed
    print(("PASS " if ok else "FAIL ") + msg)
    if ok:
        passed += 1
    else:
        failed += 1


out = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "emu", "gen_host.py"), "--self-test"],
                     capture_output=True, text=True)
for line in out.stdout.splitlines():   # its PASS/FAIL lines; its own summary is counted below
    if not line.endswith(" failed"):
        print("  " + line)
check(out.returncode == 0 and " 0 failed" in out.stdout, "gen_host.py --self-test (%d)" % out.returncode)

heads = sorted(glob.glob(os.path.join(ROOT, "kernels", "*.cuh")))
check(len(heads) >= 8, "%d kernel headers found" % len(heads))
for h in heads:
    src = open(h).read()
    rel = os.path.relpath(h, ROOT)
    try:
        dst = gen_host.rewrite(src, rel)
        ok = dst.startswith('#line 1 "%s"\n' % rel) and dst.count("\n") == src.count("\n") + 1
        check(ok, "%s rewrites (%d launches, %d __shared__ declarations)" %
              (rel, dst.count("::emu::launch("), dst.count("::emu::dynamic_smem_as") + dst.count("::emu::static_smem_as")))
    except ValueError as e:
        check(False, "%s: %s" % (rel, e))

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
