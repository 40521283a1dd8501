"""test_store_pg.py: the admin store contract on the PostgreSQL store (tests/unit/
store_pg_contract.c: two and three stores on one database, as replicas), against a real
PostgreSQL this test starts in a temporary directory on 127.0.0.1.
# asan: yes
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import vitd_testlib as T  # noqa: E402
import fleet  # noqa: E402

BIN = os.path.join(T.ROOT, T.BUILD, "tests", "store_pg_contract")


def main():
    if fleet.pg_bindir() is None:
        T.check(False, "postgresql installed", "run `make deps-test`")
        return T.summary()
    if not os.path.exists(BIN):
        T.check(False, BIN, "not built (make all)")
        return T.summary()
    pg = fleet.Postgres().start()
    env = dict(os.environ, VITD_TEST_PG_URL=pg.url, VITD_TEST_PG_PASSWORD_FILE=pg.password_file)
    r = subprocess.run([BIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = r.stdout.decode(errors="replace")
    print(out, end="", flush=True)
    # the binary's own summary line is the result; a crash (ASan...) is a failure of its own
    if r.returncode != 0 and " 0 failed" in out.strip().splitlines()[-1]:
        T.check(False, "store_pg_contract exit status", f"{r.returncode}")
        return T.summary()
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
