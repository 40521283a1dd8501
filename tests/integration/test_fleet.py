"""test_fleet.py: many replicas, one truth.  A real PostgreSQL (Debian's server, started here in a
temporary directory), three vitd replicas sharing it (--state-url), haproxy in front, all on
127.0.0.1.  Through the balancer only: examples of three labels, a `replace` training job,
polling, activation; then every classification through the balancer carries the new head_version
(body and X-Head-Version) and the same prediction, and each replica served the new head within 2 s
of the activation call returning (the measured delays are printed).  Then: kill -9 of the replica
holding a running job once it stored a checkpoint (another replica takes it over after the lease
lapses, resumes from that checkpoint's epoch, not 0, and finishes it); SIGTERM of the replica
holding a running job, as a rolling deploy sends it (the replica hands the job over at its next
epoch end and exits 0 within its drain timeout; another claims it at once, far below the lease,
resumes from the handed-over checkpoint and finishes it; the job never reads cancelled or
failed); a restarted replica serves the active head; PostgreSQL stopped and started again (/classify never fails, admin calls
get 503 + Retry-After, then work, nothing acknowledged is lost); a replica serving another
backbone gets 409; two daemons on one --state-dir (the second refuses to start, naming
--state-url).  VITD_FLEET_LONG=1 (make test-fleet) repeats the activation and kill rounds and
classifies more.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import vitd_testlib as T  # noqa: E402
import fleet  # noqa: E402

LONG = os.environ.get("VITD_FLEET_LONG") == "1"
FM = os.path.join(T.ROOT, "tests", "data", "fmnist")
OTHER_BACKBONE = os.path.join(T.ROOT, "tests", "fixtures", "models", "tiny-hf-noqkvbias")
TOKEN = "fleet-admin-token-0123456789abcdef"
AUTH = {"Authorization": "Bearer " + TOKEN}
LEASE_S = 3
DRAIN_S = 30          # vitd's default --drain-timeout-s
check = T.check


class Endpoint(T.Daemon):
    """HTTP helpers of T.Daemon against any port (the balancer), no process."""

    def __init__(self, port):   # noqa: super().__init__ would start a daemon
        self.port = port


def images(label, n=None):
    d = os.path.join(FM, "train", label)
    return [T.read(os.path.join(d, f)) for f in sorted(os.listdir(d))][:n]


def post_images(ep, label, imgs):
    body, ct = T.multipart([("image", f"{i}.png", b) for i, b in enumerate(imgs)])
    return ep.json("POST", f"/admin/examples?label={label}", body, dict(AUTH, **{"Content-Type": ct}), timeout=60)


def post_json(ep, path, obj):
    return ep.json("POST", path, json.dumps(obj).encode(), dict(AUTH, **{"Content-Type": "application/json"}))


def wait_job(ep, job, timeout=90):
    end = time.time() + timeout
    last = {}
    while time.time() < end:
        try:
            st, _, j = ep.json("GET", f"/admin/jobs/{job}", headers=AUTH, timeout=10)
        except OSError:
            st, j = 0, {}
        if st == 200:
            last = j
            if j.get("state") in ("succeeded", "failed", "cancelled"):
                return j
        time.sleep(0.1)
    return last


class Fleet:
    def __init__(self, pg, tmp):
        self.pg, self.tmp = pg, tmp
        self.token = os.path.join(tmp, "token")
        with open(self.token, "w") as f:
            f.write(TOKEN + "\n")
        self.replicas = {}

    def start(self, name, model=T.TINY, port=None):
        d = T.Daemon("--state-url", self.pg.url, "--state-password-file", self.pg.password_file,
                     "--admin-token-file", self.token, "--instance-name", name, "--threads", "1",
                     "--job-lease-s", str(LEASE_S), "--log-level", "info", model=model, port=port)
        self.replicas[name] = d
        return d


def head_version_of(d):
    try:
        st, _, m = d.json("GET", "/v1/models", timeout=5)
        return m["models"][0].get("head_version") if st == 200 else None
    except (OSError, KeyError, IndexError):
        return None


def activation_delays(fl, lb, version):
    """Activate through the balancer; each replica polled directly from the moment the call
    returns until it reports the version.  {name: seconds}, None where it never did (10 s)."""
    delays = {}
    st, _, r = post_json(lb, f"/admin/heads/{version}/activate", {})
    t0 = time.time()
    check(st == 200 and r.get("active") == version, f"activate version {version} through the balancer", f"{st} {r}")

    def poll(name, d):
        while time.time() - t0 < 10:
            if head_version_of(d) == version:
                delays[name] = time.time() - t0
                return
            time.sleep(0.005)
        delays[name] = None
    ths = [threading.Thread(target=poll, args=(n, d)) for n, d in fl.replicas.items() if d.proc.poll() is None]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return delays


def classify_all(lb, n, version):
    img = images("footwear", 1)[0]
    seen_versions, preds, fails = set(), set(), []
    for _ in range(n):
        st, h, r = lb.classify([img], "?top_k=1", timeout=30)
        if st != 200:
            fails.append(st)
            continue
        res = r["results"][0]
        seen_versions.add(res.get("head_version"))
        seen_versions.add(int(h.get("x-head-version", "-1")))
        preds.add(res["predictions"][0]["label"])
    return seen_versions, preds, fails


def train_and_activate(fl, lb):
    st, _, r = lb.json("DELETE", "/admin/examples", headers=AUTH)
    check(st == 200, "examples cleared through the balancer", f"{st} {r}")
    for label in ("footwear", "other", "tops"):
        st, _, r = post_images(lb, label, images(label, 20))
        check(st == 200 and r.get("added") == 20, f"20 examples of {label} through the balancer", f"{st} {r}")
    st, _, r = lb.json("GET", "/admin/examples", headers=AUTH)
    check(st == 200 and r.get("total") == 60 and sorted(r.get("counts", {})) == ["footwear", "other", "tops"],
          "every replica sees all 60 examples (asked through the balancer)", f"{st} {r}")
    st, _, r = post_json(lb, "/admin/train", {"labels": "replace", "epochs": 40, "seed": 1})
    check(st == 202 and "job" in r, "replace job queued through the balancer", f"{st} {r}")
    job = wait_job(lb, r.get("job"))
    check(job.get("state") == "succeeded" and job.get("head_version", 0) >= 2,
          "the job succeeded (polled through the balancer)", str(job))
    st, _, heads = lb.json("GET", "/admin/heads", headers=AUTH)
    mine = [h for h in heads.get("heads", []) if h["version"] == job.get("head_version")]
    check(mine and mine[0].get("trained_by", "").split("#")[0] in fl.replicas and mine[0]["labels"] == ["footwear", "other", "tops"],
          "GET /admin/heads: the new version, its labels and the replica that trained it", str(mine))
    return job.get("head_version")


def check_activation(fl, lb, version):
    delays = activation_delays(fl, lb, version)
    print("activation delays (s): " + ", ".join(f"{n} {d:.3f}" if d is not None else f"{n} never"
                                               for n, d in sorted(delays.items())), flush=True)
    check(all(d is not None and d < 2.0 for d in delays.values()),
          "every replica served the new head within 2 s of the activation call returning", str(delays))
    n = 300 if LONG else 60
    versions, preds, fails = classify_all(lb, n, version)
    check(not fails and versions == {version} and len(preds) == 1,
          f"{n} classifications through the balancer: all head_version {version}, one prediction",
          f"fails={fails[:5]} versions={versions} preds={preds}")


def claimed_job(lb, pg, epochs):
    """(job id, its owner while running with a checkpoint stored, last state seen)"""
    st, _, r = post_json(lb, "/admin/train", {"labels": "replace", "epochs": epochs, "batch_size": 1, "seed": 2})
    job, out = r.get("job"), ""
    end = time.time() + 30
    while time.time() < end:
        out = pg.psql(f"SELECT state || ' ' || coalesce(owner, '') || ' ' || coalesce((SELECT epoch FROM"
                      f" vitd_job_checkpoints WHERE job = id), 0) FROM vitd_jobs WHERE id = {int(job or 0)}")
        if out.startswith("running ") and int(out.rsplit(" ", 1)[1]) > 0:
            return job, out.split(" ")[1], out
        if out.startswith(("succeeded", "failed", "cancelled")):
            break
        time.sleep(0.02)
    return job, None, out


def kill_job_holder(fl, lb, pg):
    """A long job (1000 epochs of batch 1 over 3 x 120 examples; longer again should it end
    before it was seen running); kill -9 the replica that claimed it once it stored the
    checkpoint of an epoch; another one resumes from that checkpoint and finishes it."""
    for label in ("footwear", "other", "tops"):
        post_images(lb, label, images(label, 60))
    for epochs in (1000, 1000, 1000):
        job, owner, out = claimed_job(lb, pg, epochs)
        if owner:
            break
        for label in ("footwear", "other", "tops"):
            post_images(lb, label, images(label, 60))
    name = (owner or "").split("#")[0]
    if not check(name in fl.replicas, "the long job is running on a replica", f"job {job}: {out!r}"):
        return None
    fl.replicas[name].proc.send_signal(signal.SIGKILL)
    fl.replicas[name].proc.wait()
    t_kill = time.time()
    # the last checkpoint the dead replica stored (it may have stored more after we looked)
    at_kill = int(pg.psql(f"SELECT coalesce((SELECT epoch FROM vitd_job_checkpoints WHERE job = {int(job)}), 0)"))
    done = wait_job(lb, job, timeout=60 + LEASE_S)
    took = time.time() - t_kill
    row = pg.psql(f"SELECT owner || ' ' || attempts FROM vitd_jobs WHERE id = {int(job)}")
    new_owner, attempts = row.split(" ")
    resumed = done.get("resumed_from_epoch", 0)
    print(f"job {job}: claimed by {owner}, killed with the checkpoint of epoch {at_kill} stored; finished by "
          f"{new_owner} (attempt {attempts}), resumed from epoch {resumed}, {took:.1f} s after the kill "
          f"(lease {LEASE_S} s)", flush=True)
    check(done.get("owner") == new_owner, "GET /admin/jobs/{id} names the replica that ran it", str(done))
    check(done.get("state") == "succeeded" and new_owner.split("#")[0] != name and int(attempts) == 2,
          "kill -9 of the job's replica: another replica claimed it after the lease and finished it",
          f"{done} owner={new_owner} attempts={attempts}")
    check(resumed == at_kill > 0 and done.get("epoch") == done.get("epochs"),
          "the replica that took it over resumed from the dead one's last checkpoint, not from epoch 0",
          f"resumed_from_epoch={resumed}, checkpoint at the kill: epoch {at_kill}, {done}")
    taker = fl.replicas.get(new_owner.split("#")[0])
    check(taker is not None and f"job {job} resumed from its checkpoint after epoch {resumed} of" in taker.logtext(),
          "its log says from which epoch it resumed", (taker.logtext()[-600:] if taker else new_owner))
    check(pg.psql(f"SELECT count(*) FROM vitd_job_checkpoints WHERE job = {int(job)}") == "0",
          "the finished job's checkpoint is deleted")
    return name


def drain_job_holder(fl, lb, pg):
    """A job of 1000 epochs over the examples kill_job_holder left (about a second here; more
    examples should it end before it was seen running); SIGTERM the replica that claimed it once it
    stored a checkpoint.  Returns the drained replica's name, or None."""
    for _ in range(3):
        job, owner, out = claimed_job(lb, pg, 1000)
        if owner:
            break
        for label in ("footwear", "other", "tops"):
            post_images(lb, label, images(label, 60))
    name = (owner or "").split("#")[0]
    if not check(name in fl.replicas, "the job to hand over is running on a replica", f"job {job}: {out!r}"):
        return None
    d = fl.replicas[name]
    t0 = time.time()
    d.proc.send_signal(signal.SIGTERM)
    states, taken, taker = [], None, ""
    while time.time() < t0 + 10:
        row = pg.psql(f"SELECT state || ' ' || coalesce(owner, '') FROM vitd_jobs WHERE id = {int(job)}")
        state, _, who = row.partition(" ")
        if not states or states[-1] != state:
            states.append(state)
        if state == "running" and who and who.split("#")[0] != name:
            taken, taker = time.time() - t0, who
            break
        if state in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.02)
    try:
        rc = d.proc.wait(DRAIN_S)
    except subprocess.TimeoutExpired:
        rc = None
    exited = time.time() - t0
    done = wait_job(lb, job, timeout=60)
    row = pg.psql(f"SELECT attempts FROM vitd_jobs WHERE id = {int(job)}")
    log = d.logtext()
    handed = [ln for ln in log.splitlines() if f"job {job} handed over at epoch " in ln]
    at = int(handed[0].split("handed over at epoch ")[1].split(" ")[0]) if handed else -1
    print(f"job {job}: SIGTERM to {owner}: handed over at epoch {at}, states {states}, claimed by {taker} "
          f"{taken if taken is None else round(taken, 2)} s after the SIGTERM (lease {LEASE_S} s); the drained replica "
          f"exited {rc} after {exited:.2f} s", flush=True)
    check(rc == 0 and exited < DRAIN_S, "SIGTERM of the job's replica: it exits 0 within its drain timeout",
          f"rc={rc} after {exited:.1f} s")
    check(at > 0 and handed[0].endswith("(draining)"), "its log says at which epoch it handed the job over",
          log[-600:])
    # a lapsed lease could not be re-claimed before LEASE_S; the trainers poll every second, so the
    # hand-over is claimed in about 1 s (bounded by the lease, not by a tighter time, on a busy machine)
    check(taken is not None and taken < LEASE_S and taker.split("#")[0] != name,
          "another replica claims the handed-over job before its lease could have lapsed", f"{taken} {states}")
    check(done.get("state") == "succeeded" and done.get("resumed_from_epoch") == at and
          done.get("epoch") == done.get("epochs") and int(row) == 1,
          "it resumes from the handed-over checkpoint, finishes, and the hand-over counts no attempt",
          f"{done} handed over at {at}, attempts {row}")
    check(not {"cancelled", "failed"} & set(states), "the job never reads cancelled or failed", str(states))
    return name


def restart_replica(fl, name, version):
    old = fl.replicas[name]
    d = fl.start(name, port=old.port)
    check(d.wait_ready(60) and head_version_of(d) == version,
          f"restarted replica {name} comes up serving head version {version}", d.logtext()[-500:])


class Classifier(threading.Thread):
    """Classifies through the balancer until stopped; records every failure."""

    def __init__(self, lb, version):
        super().__init__()
        self.lb, self.version, self.stop = lb, version, threading.Event()
        self.n, self.bad = 0, []

    def run(self):
        img = images("tops", 1)[0]
        while not self.stop.is_set():
            try:
                st, h, r = self.lb.classify([img], "?top_k=1", timeout=30)
                ok = st == 200 and r["results"][0].get("head_version") == self.version
            except OSError as e:
                st, ok = str(e), False
            self.n += 1
            if not ok:
                self.bad.append(st)
            time.sleep(0.02)


def database_outage(fl, lb, pg, version):
    st, _, before = lb.json("GET", "/admin/examples", headers=AUTH)
    st2, _, heads_before = lb.json("GET", "/admin/heads", headers=AUTH)
    cl = Classifier(lb, version)
    cl.start()
    pg.stop()
    t_stop = time.time()
    codes, retry = [], None
    while time.time() - t_stop < 4:
        s, h, _ = lb.json("GET", "/admin/examples", headers=AUTH, timeout=10)
        codes.append(s)
        retry = retry or h.get("retry-after")
        time.sleep(0.2)
    check(codes and all(c == 503 for c in codes[1:]) and retry is not None,
          "PostgreSQL down: admin calls answer 503 with Retry-After", str(codes))
    ups = [T.parse_prom(d.request("GET", "/metrics")[2].decode()).get("vitd_store_up")
           for d in fl.replicas.values() if d.proc.poll() is None]
    check(ups and all(u == 0 for u in ups), "PostgreSQL down: vitd_store_up is 0 on every replica", str(ups))
    pg.start()
    t_up, ok_after, pending = time.time(), None, dict(fl.replicas)
    while pending and time.time() - t_up < 20:   # every replica, asked directly
        for name, d in list(pending.items()):
            s, _, after = d.json("GET", "/admin/examples", headers=AUTH, timeout=10)
            if s == 200:
                ok_after = after if ok_after is None or after == ok_after else {"differs": after}
                del pending[name]
        time.sleep(0.1)
    cl.stop.set()
    cl.join()
    print(f"database outage: {len(codes)} admin calls answered 503 while down; admin calls worked again "
          f"{time.time() - t_up:.1f} s after PostgreSQL was back; {cl.n} classifications meanwhile", flush=True)
    check(ok_after is not None and ok_after.get("total") == before.get("total")
          and ok_after.get("counts") == before.get("counts"),
          "PostgreSQL back: admin calls work again on every replica, every acknowledged example is there",
          f"{before} {ok_after} pending={list(pending)}")
    s, _, heads_after = lb.json("GET", "/admin/heads", headers=AUTH)
    check(s == 200 and heads_after.get("active") == version
          and [h["version"] for h in heads_after["heads"]] == [h["version"] for h in heads_before["heads"]],
          "PostgreSQL back: the head versions and the active one are unchanged", f"{heads_before} {heads_after}")
    check(cl.n > 0 and not cl.bad, f"/classify never failed during the outage ({cl.n} requests)", str(cl.bad[:5]))
    end = time.time() + 15   # each replica's listener reconnects within its backoff (at most 5 s)
    while True:
        ups = [T.parse_prom(d.request("GET", "/metrics")[2].decode()).get("vitd_store_up")
               for d in fl.replicas.values() if d.proc.poll() is None]
        if all(u == 1 for u in ups) or time.time() > end:
            break
        time.sleep(0.2)
    check(all(u == 1 for u in ups), "PostgreSQL back: vitd_store_up is 1 again on every replica", str(ups))
    # the listeners LISTEN again on their new connections: an activation reaches each by NOTIFY
    live = [d for d in fl.replicas.values() if d.proc.poll() is None]
    heard = [T.parse_prom(d.request("GET", "/metrics")[2].decode()).get("vitd_store_activations_notified", 0) for d in live]
    # (a listener still waiting to reconnect misses a NOTIFY and catches up by its re-check, so
    # the same activation is repeated until each has heard one)
    end, now, codes = time.time() + 10, heard, []
    while time.time() < end:
        codes.append(post_json(lb, f"/admin/heads/{version}/activate", {})[0])
        time.sleep(0.3)
        now = [T.parse_prom(d.request("GET", "/metrics")[2].decode()).get("vitd_store_activations_notified", 0) for d in live]
        if all(a > b for a, b in zip(now, heard)):
            break
    check(codes and all(c == 200 for c in codes), "activations after the outage answer 200", str(codes))
    check(all(a > b for a, b in zip(now, heard)), "after the outage every replica hears activations by NOTIFY again",
          f"{heard} -> {now}")


def other_backbone(fl, version):
    d = fl.start("other", model=OTHER_BACKBONE)
    if not check(d.wait_ready(60), "a replica serving another backbone starts on the same database", d.logtext()[-400:]):
        return
    check(head_version_of(d) == 1, "it keeps its own head (version 1): the active head is another backbone's")
    st, _, r = post_images(d, "tops", images("tops", 2))
    check(st == 409 and "backbone" in json.dumps(r), "its examples are refused with 409 (another backbone)", f"{st} {r}")
    st, _, r = post_json(d, f"/admin/heads/{version}/activate", {})
    check(st == 409, f"activating version {version} there is 409", f"{st} {r}")
    d.stop()
    del fl.replicas["other"]


def state_dir_lock(tmp):
    sd = os.path.join(tmp, "state")
    a = T.Daemon("--state-dir", sd, "--threads", "1")
    if not check(a.wait_ready(60), "a vitd on --state-dir starts", a.logtext()[-300:]):
        return
    b = T.Daemon("--state-dir", sd, "--threads", "1")
    try:
        rc = b.proc.wait(30)
    except subprocess.TimeoutExpired:
        rc = None
    log = b.logtext()
    check(rc not in (None, 0) and rc < 128 and "in use by another vitd" in log and "--state-url" in log,
          "a second vitd on the same --state-dir refuses to start, naming --state-url", f"rc={rc} {log[-300:]}")
    check(a.proc.poll() is None and a.request("GET", "/readyz")[0] == 200, "the first one keeps serving")
    a.stop()
    os.makedirs(os.path.join(sd, "heads"), exist_ok=True)
    for p in ("active.json.tmp.1.2", os.path.join("heads", "head-000002.safetensors.tmp.1.2")):
        with open(os.path.join(sd, p), "w") as f:
            f.write("partial")
    c = T.Daemon("--state-dir", sd, "--threads", "1")
    check(c.wait_ready(60) and not any(".tmp." in f for f in os.listdir(sd) + os.listdir(os.path.join(sd, "heads"))),
          "stray temporary files (state dir and heads/) are removed at start-up", str(os.listdir(sd)))
    c.stop()


def refused(args, want, name):
    d = T.Daemon(*args, "--threads", "1")
    try:
        rc = d.proc.wait(60)
    except subprocess.TimeoutExpired:
        rc = None
    log = d.logtext()
    check(rc not in (None, 0) and rc < 128 and want in log, name, f"rc={rc} {log[-300:]}")


def config_errors(pg, tmp):
    refused(["--state-url", pg.url.replace("vitd@", "vitd:secret@"), "--state-password-file", pg.password_file],
            "must not carry a password", "a password inside --state-url is refused")
    refused(["--state-url", pg.url, "--state-dir", os.path.join(tmp, "x")], "exclude each other",
            "--state-dir with --state-url is refused")
    bad = os.path.join(tmp, "wrong-password")
    with open(bad, "w") as f:
        f.write("not-the-password\n")
    refused(["--state-url", pg.url, "--state-password-file", bad], "password authentication failed",
            "a wrong password is refused at start with PostgreSQL's reason")
    pg.psql("INSERT INTO vitd_schema_version (version) VALUES (99)")
    refused(["--state-url", pg.url, "--state-password-file", pg.password_file], "newer than this vitd knows",
            "a database schema newer than this build is refused")
    pg.psql("DELETE FROM vitd_schema_version WHERE version = 99")
    check(pg.psql("SELECT max(version) || ' ' || count(*) FROM vitd_schema_version") == "2 2",
          "three replicas started at once migrated the schema once (versions 1 and 2)")


def main():
    if fleet.pg_bindir() is None or not os.path.exists("/usr/sbin/haproxy"):
        check(False, "postgresql and haproxy installed", "run `make deps-test`")
        return T.summary()
    tmp = tempfile.mkdtemp(prefix="vitd-fleet-")
    t0 = time.time()
    pg = fleet.Postgres().start()
    fl = Fleet(pg, tmp)
    for n in ("r1", "r2", "r3"):
        fl.start(n)
    ready = all(d.wait_ready(60) for d in fl.replicas.values())
    if not check(ready, "three replicas on one PostgreSQL are ready", "\n".join(d.logtext()[-400:] for d in fl.replicas.values())):
        return T.summary()
    lb = Endpoint(fleet.Haproxy([d.port for d in fl.replicas.values()]).start().port)
    st, _, r = lb.json("GET", "/v1/models")
    check(st == 200 and r["models"][0].get("instance_name") in fl.replicas and r["models"][0].get("head_version") == 1,
          "/v1/models names the replica and its head version", str(r)[:300])
    version = train_and_activate(fl, lb)
    if version:
        check_activation(fl, lb, version)
    for _ in range(3 if LONG else 1):
        killed = kill_job_holder(fl, lb, pg)
        if killed:
            restart_replica(fl, killed, version)
    drained = drain_job_holder(fl, lb, pg)
    if drained:
        restart_replica(fl, drained, version)
    database_outage(fl, lb, pg, version)
    if LONG:
        v2 = train_and_activate(fl, lb)
        check_activation(fl, lb, v2)
        check_activation(fl, lb, version)
    other_backbone(fl, version)
    config_errors(pg, tmp)
    state_dir_lock(tmp)
    rcs = {n: d.stop() for n, d in fl.replicas.items()}
    check(all(rc == 0 for rc in rcs.values()), "every replica exits 0 on SIGTERM (under ASan: no leak)", str(rcs))
    print(f"fleet test took {time.time() - t0:.1f} s", flush=True)
    return T.summary()


if __name__ == "__main__":
    sys.exit(main())
