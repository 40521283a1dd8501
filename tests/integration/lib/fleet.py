"""fleet.py: real services for the multi-replica tests, all on 127.0.0.1 in a temporary directory:
a PostgreSQL cluster (Debian's postgresql package: initdb + postgres, run as an unprivileged user
when the test runs as root, since both refuse root) and an haproxy load balancer in front of
several vitd replicas.  Everything started here is stopped when the test process exits.

    pg = Postgres(); pg.start()          # initdb on first start; pg.url, pg.password_file
    pg.stop(); pg.start()                # same data directory and port
    lb = Haproxy([r.port for r in replicas]); lb.start()
"""
import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from vitd_testlib import free_port

_started = []


def pg_bindir():
    """The newest PostgreSQL server binaries installed (Debian: /usr/lib/postgresql/<major>/bin)."""
    cands = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not cands:
        return None
    cands.sort(key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(cands[-1])


def _runas():
    """(Popen keyword arguments, uid, gid) to run a server as an unprivileged user when we are
    root (the process itself switches user, so signals reach postgres directly)."""
    if os.geteuid() != 0:
        return {}, None, None
    pw = pwd.getpwnam("nobody")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}, pw.pw_uid, pw.pw_gid


def _wait_port(port, proc, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Postgres:
    """One PostgreSQL cluster on 127.0.0.1:port, password (scram) auth for TCP, database `vitd`."""

    def __init__(self, user="vitd", db="vitd"):
        self.bindir = pg_bindir()
        self.dir = tempfile.mkdtemp(prefix="vitd-pg-")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.port = free_port()
        self.user, self.db = user, db
        self.password = "pw-" + os.urandom(8).hex()
        self.password_file = os.path.join(self.dir, "password")
        self.proc = None
        self.log = os.path.join(self.dir, "postgres.log")
        self.runas, self.uid, self.gid = _runas()
        _started.append(self)

    @property
    def url(self):
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.db}"

    def _own(self, path):
        if self.uid is not None:
            os.chown(path, self.uid, self.gid)

    def _initdb(self):
        os.makedirs(self.sock, exist_ok=True)
        pwf = os.path.join(self.dir, "initdb.pw")
        with open(pwf, "w") as f:
            f.write(self.password + "\n")
        with open(self.password_file, "w") as f:
            f.write(self.password + "\n")
        os.chmod(self.password_file, 0o600)
        for p in (self.dir, self.sock, pwf):
            self._own(p)
        cmd = [os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", self.user,
                             "--pwfile", pwf, "--auth-local=trust", "--auth-host=scram-sha-256",
                             "-E", "UTF8", "--no-sync", "--no-instructions"]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, cwd=self.dir,
                           **self.runas)
        os.unlink(pwf)
        if r.returncode != 0:
            raise RuntimeError("initdb failed: " + r.stdout.decode(errors="replace")[-2000:])

    def start(self, timeout=60):
        if self.bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (scripts/deps.sh test installs postgresql)")
        first = not os.path.exists(self.data)
        if first:
            self._initdb()
        logf = open(self.log, "ab")
        cmd = [os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port),
                             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + self.sock,
                             "-c", "fsync=off", "-c", "max_connections=100"]
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, start_new_session=True, cwd=self.dir,
                                     **self.runas)
        logf.close()
        if not self._ready(timeout):
            raise RuntimeError("postgres did not start: " + self.logtail())
        if first:
            self.psql(f"CREATE DATABASE {self.db}", db="postgres")
        return self

    def _ready(self, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                return False
            r = subprocess.run([os.path.join(self.bindir, "pg_isready"), "-h", self.sock,
                                              "-p", str(self.port), "-U", self.user],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self.runas)
            if r.returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def psql(self, sql, db=None):
        """Run SQL over the unix socket (trust auth); returns stdout (unaligned, tuples only)."""
        cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                             "-p", str(self.port), "-U", self.user, "-d", db or self.db, "-c", sql]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, cwd=self.dir,
                           **self.runas)
        if r.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: " + r.stdout.decode(errors="replace"))
        return r.stdout.decode().strip()

    def stop(self, timeout=30):
        """Fast shutdown (SIGINT: clients disconnected, no wait)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def logtail(self, n=3000):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Haproxy:
    """haproxy on 127.0.0.1:port, round robin over the given vitd ports, health-checked on
    /readyz (a replica that is down or not ready gets no new requests), connection failures
    retried on another replica."""

    def __init__(self, backend_ports, check_ms=300):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="vitd-haproxy-")
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.log = os.path.join(self.dir, "haproxy.log")
        servers = "\n".join(f"    server r{i} 127.0.0.1:{p} check inter {check_ms} fall 1 rise 1"
                            for i, p in enumerate(backend_ports))
        with open(self.cfg, "w") as f:
            f.write(f"""global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
    retry-on conn-failure empty-response response-timeout
frontend fe
    bind 127.0.0.1:{self.port}
    default_backend vitd
backend vitd
    balance roundrobin
    option httpchk GET /readyz
{servers}
""")
        self.proc = None
        _started.append(self)

    def start(self, timeout=20):
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([exe, "-db", "-f", self.cfg], stdout=logf, stderr=logf,
                                     start_new_session=True)
        logf.close()
        if not _wait_port(self.port, self.proc, timeout):
            with open(self.log, "rb") as f:
                raise RuntimeError("haproxy did not start: " + f.read().decode(errors="replace")[-2000:])
        return self

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@atexit.register
def _cleanup_all():
    for s in reversed(_started):
        try:
            s.cleanup()
        except Exception:
            pass
