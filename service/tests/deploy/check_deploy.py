#!/usr/bin/env python3
"""Offline checks of deploy/: the Grafana dashboard, the Prometheus alert rules and the
Kubernetes manifests. Run by scripts/test.d/70-deploy.sh with the text of a live /metrics.

usage: check_deploy.py ROOT METRICS_FILE
"""
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(sys.argv[1])
METRICS = Path(sys.argv[2]).read_text()
failures = []


def fail(msg):
    failures.append(msg)


# ---- what a live /metrics exports, and what the Kafka clients add ------------------------
live = set()
for line in METRICS.splitlines():
    if line and not line.startswith("#"):
        live.add(re.split(r"[{ ]", line, maxsplit=1)[0])
if "stockledger_wal_fsync_seconds_bucket" not in live or "stockledger_reservations_total" not in live:
    fail(f"/metrics looks wrong: {sorted(live)}")
families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in live}
source = "\n".join(p.read_text() for p in (ROOT / "service/src/kafka").rglob("*.rs"))
kafka = set(re.findall(r'"(stockledger_[a-z_]+)"', source))
if not kafka:
    fail("no Kafka metric names found in service/src/kafka")

# ---- Grafana dashboard --------------------------------------------------------------------
dash_path = ROOT / "deploy/grafana/stockledger.json"
dash = json.loads(dash_path.read_text())
for key in ("uid", "title", "panels", "schemaVersion"):
    if key not in dash:
        fail(f"{dash_path}: no {key}")
exprs = []
ids = set()
for p in dash.get("panels", []):
    title = p.get("title", "?")
    if p.get("id") in ids:
        fail(f"dashboard: panel id {p.get('id')} twice")
    ids.add(p.get("id"))
    if "gridPos" not in p or not p.get("targets"):
        fail(f"dashboard panel {title!r}: needs gridPos and targets")
    for t in p.get("targets", []):
        if not t.get("expr"):
            fail(f"dashboard panel {title!r}: a target without expr")
        exprs.append((title, t.get("expr", "")))
for v in dash.get("templating", {}).get("list", []):
    q = v.get("query")
    if isinstance(q, dict):
        exprs.append((f"variable {v.get('name')}", q.get("query", "")))
used = set()
for title, e in exprs:
    for name in re.findall(r"\bstockledger_[a-z0-9_]+\b", e):
        used.add(name)
        if name not in live:
            fail(f"dashboard panel {title!r}: {name} is not exported by /metrics")
missing = {f for f in families if not any(u == f or u.startswith(f + "_") for u in used)}
if missing:
    fail(f"dashboard: exported metrics shown nowhere: {sorted(missing)}")

# ---- Prometheus alert rules -----------------------------------------------------------------
KEYWORDS = {"and", "or", "unless", "by", "on", "without", "ignoring", "bool", "offset",
            "group_left", "group_right", "inf", "nan"}
OTHER_METRICS = {"up", "kubelet_volume_stats_available_bytes", "kubelet_volume_stats_capacity_bytes"}
allowed = live | kafka | OTHER_METRICS


def metric_names(expr):
    """Metric names of a PromQL expression: identifiers that are not functions, keywords,
    label names (inside {} or by/on(...)) or durations."""
    e = re.sub(r'"(\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def balanced(expr):
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in re.sub(r'"(\\.|[^"\\])*"', '""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


alerts_path = ROOT / "deploy/prometheus/alerts.yml"
rules = yaml.safe_load(alerts_path.read_text())
names = []
for g in rules.get("groups", []):
    if not g.get("name") or not g.get("rules"):
        fail(f"alerts: a group needs a name and rules: {g}")
    for r in g.get("rules", []):
        a = r.get("alert", "?")
        names.append(a)
        expr = r.get("expr", "")
        if not expr or not balanced(expr):
            fail(f"alert {a}: expr missing or unbalanced: {expr!r}")
        if not re.fullmatch(r"\d+[smh]", str(r.get("for", ""))):
            fail(f"alert {a}: 'for' must be a duration like 5m")
        if r.get("labels", {}).get("severity") not in ("warning", "critical"):
            fail(f"alert {a}: severity must be warning or critical")
        ann = r.get("annotations", {})
        for k in ("summary", "description", "runbook"):
            if not str(ann.get(k, "")).strip():
                fail(f"alert {a}: annotation {k} is missing")
        unknown = metric_names(expr) - allowed
        if unknown:
            fail(f"alert {a}: unknown metrics {sorted(unknown)}")
        extra = set(r) - {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        if extra:
            fail(f"alert {a}: unexpected keys {sorted(extra)}")
if len(names) != len(set(names)):
    fail("alerts: a name is used twice")
for need in ("LedgerUnavailable", "OutboxLag", "Fsync", "Capacity", "Stuck"):
    if not any(need in n for n in names):
        fail(f"alerts: nothing about {need}")
# The checker must catch what it claims to.
assert metric_names('sum by (le) (rate(foo_bucket{a="b"}[5m])) > 0.5 and on (x) bar') == {"foo_bucket", "bar"}
assert not balanced("sum(rate(x[5m])")

# ---- Kubernetes manifests (schemas checked by kubernetes-validate; here the wiring) ------
docs = []
for f in sorted((ROOT / "deploy/kubernetes").glob("*.yaml")):
    docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
for kind in ("StatefulSet", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"):
    if kind not in by_kind:
        fail(f"kubernetes: no {kind}")
if not failures:
    sts = by_kind["StatefulSet"][0]
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    c = pod["containers"][0]
    cm = by_kind["ConfigMap"][0]
    secret = by_kind["Secret"][0]
    if spec.get("replicas") != 1:
        fail("StatefulSet: exactly one replica (one writer per ledger folder)")
    if pod.get("terminationGracePeriodSeconds", 30) <= 10:
        fail("terminationGracePeriodSeconds must exceed the 10 s drain")
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        fail("liveness probe must be /healthz")
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        fail("readiness probe must be /readyz")
    req = c.get("resources", {}).get("requests", {})
    if "cpu" not in req or "memory" not in req:
        fail("resource requests for cpu and memory")
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        fail("the pod must run as non-root")
    data_dir = cm["data"].get("STOCKLEDGER_DATA_DIR")
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    if not any(mounts.get(n) == data_dir for n in claims):
        fail(f"the data dir {data_dir} must be a PVC from volumeClaimTemplates")
    if not cm["data"].get("STOCKLEDGER_KAFKA_BROKERS"):
        fail("ConfigMap: STOCKLEDGER_KAFKA_BROKERS")
    known_env = set(re.findall(r"STOCKLEDGER_[A-Z_]+", (ROOT / "service/src/config.rs").read_text()))
    for k in cm["data"]:
        if k.startswith("STOCKLEDGER_") and k not in known_env:
            fail(f"ConfigMap: {k} is not a setting of stockledgerd")
    if c["envFrom"][0]["configMapRef"]["name"] != cm["metadata"]["name"]:
        fail("envFrom must name the ConfigMap")
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    wanted = {"STOCKLEDGER_PAYMENT_SECRET", "STOCKLEDGER_PARTNER_TOKENS", "STOCKLEDGER_ADMIN_TOKEN"}
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            wanted.discard(e["name"])
            if ref["name"] != secret["metadata"]["name"] or ref["key"] not in secret_keys:
                fail(f"env {e['name']}: refers to a missing secret key {ref}")
    if wanted:
        fail(f"credentials not taken from the Secret: {sorted(wanted)}")
    for k in wanted | {"STOCKLEDGER_PAYMENT_SECRET", "STOCKLEDGER_ADMIN_TOKEN"}:
        if k in cm["data"]:
            fail(f"ConfigMap holds a credential: {k}")
    for kind in ("Service", "PodDisruptionBudget"):
        for d in by_kind[kind]:
            sel = d["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            if any(labels.get(k) != v for k, v in sel.items()):
                fail(f"{kind} {d['metadata']['name']}: selector does not match the pods")
    if spec.get("serviceName") not in {d["metadata"]["name"] for d in by_kind["Service"]}:
        fail("StatefulSet serviceName names no Service")

if failures:
    print("deploy checks failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"deploy: ok ({len(exprs)} dashboard queries, {len(names)} alerts, {len(docs)} manifests)")
