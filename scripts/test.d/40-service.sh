#!/usr/bin/env bash
# Schemathesis against the running stockledgerd's own /openapi.json: property-based requests
# to every documented operation; fails on any 5xx or on a response that does not match the
# documented status codes, content types and schemas. Installs schemathesis (pinned) into a
# venv cached under $STOCKLEDGER_CACHE.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${STOCKLEDGER_CACHE:-$ROOT/.cache}
VENV="$CACHE/venv-schemathesis"
ST_VERSION=4.32.5

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

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
RUST_LOG=warn "$BIN" --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
  --partner-token "s1:st-token" --admin-token "st-token" --payment-secret "st-secret" \
  2>"$WORK/stderr" &
PID=$!
for _ in $(seq 1 600); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then cat "$WORK/stderr"; echo "stockledgerd exited" >&2; exit 1; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null

# The bearer token is valid for both the partner and the admin endpoints, so generated
# requests get past authentication and exercise validation and the ledger.
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --header "Authorization: Bearer st-token" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-60}" \
  --seed 1 \
  --no-color

# The service must have survived everything and still serve.
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null
kill -TERM "$PID"
wait "$PID"
PID=
echo "schemathesis: ok"
