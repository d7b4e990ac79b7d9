#!/usr/bin/env bash
# deploy/ checked offline: the Kubernetes manifests against the API schemas
# (kubernetes-validate, pinned, in a venv cached under $STOCKLEDGER_CACHE), and
# service/tests/deploy/check_deploy.py: the Grafana dashboard names only metrics a live
# stockledgerd's /metrics exports, the alert rules are well formed with runbooks, and the
# manifests are wired together (probes, PVC, Secret, ConfigMap, selectors).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${STOCKLEDGER_CACHE:-$ROOT/.cache}
VENV="$CACHE/venv-deploy"
KV_VERSION=1.37.0

if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KV_VERSION"; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi
"$VENV/bin/kubernetes-validate" --strict --quiet -k 1.30.0 deploy/kubernetes/*.yaml

cargo build --quiet --release -p stockledger-service --bin stockledgerd
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/stockledgerd"
WORK=$(mktemp -d)
PID=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$BIN" --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" --partner-token "s1:t" 2>"$WORK/stderr" &
PID=$!
for _ in $(seq 1 600); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then cat "$WORK/stderr"; echo "stockledgerd exited" >&2; exit 1; fi
  sleep 0.1
done
# Some traffic, so that labelled series exist too.
curl -fsS -X PUT -H 'authorization: Bearer t' -d '{"on_hand":1}' "http://127.0.0.1:$PORT/v1/partner/stock/A1/kol" >/dev/null
curl -fsS -X POST -d '{"order_id":"o1","lines":[{"sku":"A1","warehouse":"kol","qty":1}]}' "http://127.0.0.1:$PORT/v1/reservations" >/dev/null
curl -fsS "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics"
"$VENV/bin/python" service/tests/deploy/check_deploy.py "$ROOT" "$WORK/metrics"
kill -TERM "$PID"
wait "$PID"
PID=
