"""test_deploy_k8s.py: the fleet packaging in deploy/.  Renders the kustomize overlays
(deploy/k8s/overlays/cpu, gpu) with `kubectl kustomize`, validates every object against the
Kubernetes API schemas and the prometheus-operator CRD schemas (deploy/validate.js, offline, from
deploy/node_modules), checks what the fleet needs of them (probes, drain vs grace period, non-root
with fsGroup, resources, the GPU request, the HPA on vitd_queue_depth, PDB, ServiceMonitor, alerts
and dashboard on metrics vitd exports), validates the compose file against the Compose schema and
its haproxy.cfg with `haproxy -c`, and checks the Dockerfile's stage order and CUDA_ARCHS.  Each
validator is also shown failing on a broken input.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import vitd_testlib as T  # noqa: E402

ROOT = T.ROOT
DEPLOY = os.path.join(ROOT, "deploy")
VALIDATE = os.path.join(DEPLOY, "validate.js")
TMP = tempfile.mkdtemp(prefix="vitd-k8s-")


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, timeout=120, **kw)


def exported_metrics():
    """metric names the server's README documents (the table vitd's /metrics follows)"""
    txt = open(os.path.join(ROOT, "server", "README.md")).read()
    return set(re.findall(r"`(vitd_[a-z0-9_]+)", txt))


def metric_names(expr):
    names = set(re.findall(r"\b(vitd_[a-z0-9_]+)", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_deployment(variant, d):
    spec = d["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = env_of(c)
    T.check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz",
            f"{variant}: liveness probe on /healthz")
    T.check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
            f"{variant}: readiness probe on /readyz")
    T.check(c.get("startupProbe", {}).get("httpGet", {}).get("path") == "/readyz",
            f"{variant}: startup probe on /readyz")
    drain = int(env.get("VITD_DRAIN_TIMEOUT_S", {}).get("value", "30"))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    T.check(grace > drain, f"{variant}: terminationGracePeriodSeconds {grace} > drain timeout {drain}")
    sc = spec.get("securityContext", {})
    T.check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0 and "fsGroup" in sc,
            f"{variant}: non-root pod with fsGroup", json.dumps(sc))
    res = c.get("resources", {})
    T.check("cpu" in res.get("requests", {}) and "memory" in res.get("limits", {}),
            f"{variant}: resources (cpu request, memory limit)", json.dumps(res))
    gpu = res.get("limits", {}).get("nvidia.com/gpu")
    T.check((gpu == "1") == (variant == "gpu"), f"{variant}: nvidia.com/gpu limit {'1' if variant == 'gpu' else 'absent'}",
            f"got {gpu!r}")
    url = env.get("VITD_STATE_URL", {})
    pw = env.get("PGPASSWORD", {})
    T.check("secretKeyRef" in url.get("valueFrom", {}) and "secretKeyRef" in pw.get("valueFrom", {}),
            f"{variant}: state URL and password from a Secret", json.dumps([url, pw]))
    T.check(not any("password" in a.lower() for a in c.get("args", []) + c.get("command", [])),
            f"{variant}: no password on the command line")
    T.check(env.get("VITD_STATE_DIR", {}).get("value") == "", f"{variant}: the image's --state-dir is cleared")
    return grace


def check_objects(variant, objs):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    need = ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor",
            "PrometheusRule", "ConfigMap", "Secret"]
    T.check(all(k in by_kind for k in need), f"{variant}: has {', '.join(need)}", str(sorted(by_kind)))
    if not all(k in by_kind for k in need):
        return
    dep = by_kind["Deployment"][0]
    check_deployment(variant, dep)
    hpa = by_kind["HorizontalPodAutoscaler"][0]
    pods = [m for m in hpa["spec"].get("metrics", []) if m["type"] == "Pods"]
    T.check(hpa["apiVersion"] == "autoscaling/v2" and hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
            and pods and pods[0]["pods"]["metric"]["name"] == "vitd_queue_depth",
            f"{variant}: HPA (autoscaling/v2) scales the Deployment on per-pod vitd_queue_depth")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for kind in ("PodDisruptionBudget",):
        sel = by_kind[kind][0]["spec"]["selector"]["matchLabels"]
        T.check(all(labels.get(k) == v for k, v in sel.items()), f"{variant}: {kind} selects the pods")
    svc = by_kind["Service"][0]
    sm = by_kind["ServiceMonitor"][0]["spec"]
    T.check(all(svc["metadata"]["labels"].get(k) == v for k, v in sm["selector"]["matchLabels"].items())
            and sm["endpoints"][0]["path"] == "/metrics"
            and sm["endpoints"][0]["port"] in [p["name"] for p in svc["spec"]["ports"]],
            f"{variant}: ServiceMonitor scrapes the Service's /metrics")
    known = exported_metrics()
    rules = [r for g in by_kind["PrometheusRule"][0]["spec"]["groups"] for r in g["rules"]]
    alerts = {r["alert"] for r in rules}
    want = {"VitdQueueSaturated", "VitdHigh5xxRate", "VitdStoreDown", "VitdP99LatencyHigh"}
    T.check(want <= alerts, f"{variant}: alerts {sorted(want)}", str(sorted(alerts)))
    unknown = set().union(*(metric_names(r["expr"]) for r in rules)) - known
    T.check(not unknown, f"{variant}: every alert reads metrics vitd exports (server/README.md)", str(unknown))
    cm = [c for c in by_kind["ConfigMap"] if "vitd-dashboard.json" in c.get("data", {})]
    dash = json.loads(cm[0]["data"]["vitd-dashboard.json"]) if cm else {}
    exprs = [t["expr"] for p in dash.get("panels", []) for t in p.get("targets", [])]
    unknown = set().union(set(), *(metric_names(e) for e in exprs)) - known
    T.check(len(exprs) >= 5 and not unknown, f"{variant}: Grafana dashboard ({len(exprs)} queries) on exported metrics",
            str(unknown))


def render_and_validate(variant):
    out = os.path.join(TMP, f"{variant}.yaml")
    r = run(["kubectl", "kustomize", os.path.join("deploy", "k8s", "overlays", variant)])
    if not T.check(r.returncode == 0, f"{variant}: kubectl kustomize renders", r.stderr.decode()[-500:]):
        return None
    with open(out, "wb") as f:
        f.write(r.stdout)
    dump = os.path.join(TMP, f"{variant}.json")
    v = run(["node", VALIDATE, "k8s", out, "--dump", dump])
    lines = v.stdout.decode().splitlines()
    for ln in lines:
        print(f"  {variant}: {ln}")
    n_ok = sum(ln.startswith("PASS") for ln in lines)
    T.check(v.returncode == 0 and n_ok >= 8 and not any(ln.startswith("FAIL") for ln in lines),
            f"{variant}: {n_ok} objects valid against their schemas", v.stderr.decode()[-500:])
    return json.load(open(dump)) if os.path.exists(dump) else None


def validator_fails_on_broken():
    bad = os.path.join(TMP, "bad.yaml")
    with open(bad, "w") as f:
        f.write("""apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: i
          ports: [{containerPort: "8080x"}]
---
apiVersion: example.com/v1
kind: Unknown
metadata: {name: y}
""")
    v = run(["node", VALIDATE, "k8s", bad])
    out = v.stdout.decode()
    T.check(v.returncode != 0 and "containerPort must be integer" in out and "no schema for example.com/v1" in out,
            "validator rejects a wrong field type and an unknown kind", out[-400:])


def check_compose():
    comp = os.path.join("deploy", "compose", "compose.yaml")
    v = run(["node", VALIDATE, "compose", comp])
    print("  " + v.stdout.decode().strip())
    T.check(v.returncode == 0, "compose.yaml valid against the Compose specification schema", v.stderr.decode()[-300:])
    txt = open(os.path.join(ROOT, comp)).read()
    T.check(txt.count("image: vitd:cpu") == 1 and all(f"vitd{i}:" in txt for i in (1, 2, 3))
            and "image: postgres:" in txt and "image: haproxy:" in txt,
            "compose: PostgreSQL, three vitd replicas, haproxy")
    bad = os.path.join(TMP, "compose-bad.yaml")
    with open(bad, "w") as f:
        f.write(txt.replace("stop_grace_period:", "stop_grace_periodd:"))
    v = run(["node", VALIDATE, "compose", bad])
    T.check(v.returncode != 0, "compose validator rejects an unknown service key")
    hap = shutil.which("haproxy") or "/usr/sbin/haproxy"
    r = run([hap, "-c", "-f", os.path.join("deploy", "compose", "haproxy.cfg")])
    T.check(r.returncode == 0, "haproxy -c accepts deploy/compose/haproxy.cfg", (r.stdout + r.stderr).decode()[-300:])


def check_dockerfile(grace_uid=10001):
    d = open(os.path.join(DEPLOY, "Dockerfile")).read()
    froms = re.findall(r"^FROM (\S+)(?: AS (\S+))?", d, re.M)
    names = [a for _, a in froms]
    first_cuda = min(i for i, (img, _) in enumerate(froms) if img.startswith("nvidia/cuda"))
    T.check("cpu" in names and names.index("cpu") < first_cuda and names.index("build-cpu") < first_cuda,
            "Dockerfile: the CPU stages come before any CUDA stage (legacy builder, --target cpu)", str(froms))
    m = re.search(r'^ARG CUDA_ARCHS="([0-9 ]+)"', d, re.M)
    archs = set(m.group(1).split()) if m else set()
    T.check({"75", "80", "86", "89", "90"} <= archs and 'CUDA_ARCHS="${CUDA_ARCHS}"' in d,
            "Dockerfile: CUDA_ARCHS build ARG covers sm_75, 80, 86, 89, 90", str(archs))
    T.check(d.count("libpq5") == 2 and d.count(f"--uid {grace_uid}") == 2,
            f"Dockerfile: both images carry libpq5 and the user uid {grace_uid}")


def check_env_names(objs_by_variant):
    """every VITD_ variable the manifests and the compose file set is one of vitd's flags"""
    vitd = os.path.join(ROOT, os.environ.get("VITD_BUILD", "build"), "vitd")
    if not os.path.exists(vitd):
        T.skip("VITD_ variables in deploy/ vs vitd --help", f"no {vitd}")
        return
    helptext = subprocess.run([vitd, "--help"], stdout=subprocess.PIPE, timeout=30).stdout.decode()
    names = set(re.findall(r"\bVITD_[A-Z0-9_]+", open(os.path.join(DEPLOY, "compose", "compose.yaml")).read()))
    for objs in objs_by_variant:
        for o in objs:
            if o["kind"] == "Deployment":
                names |= {e["name"] for c in o["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])
                          if e["name"].startswith("VITD_")}
    unknown = sorted(n for n in names if f"env {n})" not in helptext)
    T.check(names and not unknown, f"the {len(names)} VITD_ variables deploy/ sets are vitd flags", str(unknown))


def main():
    if not os.path.isdir(os.path.join(DEPLOY, "node_modules", "kubernetes-models")):
        T.check(False, "deploy/node_modules", "missing: run `make deps-test` (npm ci --prefix deploy)")
        return T.summary()
    if not shutil.which("kubectl"):
        T.check(False, "kubectl", "missing: run `make deps-test`")
        return T.summary()
    rendered = []
    for variant in ("cpu", "gpu"):
        objs = render_and_validate(variant)
        if objs:
            check_objects(variant, objs)
            rendered.append(objs)
    check_env_names(rendered)
    validator_fails_on_broken()
    check_compose()
    check_dockerfile()
    dep = json.load(open(os.path.join(TMP, "cpu.json"))) if os.path.exists(os.path.join(TMP, "cpu.json")) else []
    uids = [o["spec"]["template"]["spec"]["securityContext"].get("runAsUser") for o in dep if o["kind"] == "Deployment"]
    T.check(uids == [10001], "k8s runAsUser is the image's vitd uid (10001)", str(uids))
    shutil.rmtree(TMP, ignore_errors=True)
    return T.summary()


if __name__ == "__main__":
    sys.exit(main())
