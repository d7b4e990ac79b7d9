#!/usr/bin/env bash
# The status page in a real browser: Debian's chromium (installed with apt-get when missing)
# driven by playwright-core (npm, pinned, cached under $STOCKLEDGER_CACHE/ui-node) against a
# stockledgerd on a free port with a temporary data dir. Asserts the rendered figures move and
# match /v1/stats and the stock API; leaves a screenshot in $STOCKLEDGER_TEST_OUT (default
# target/test-output/ui).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${STOCKLEDGER_CACHE:-$ROOT/.cache}
export npm_config_cache="$CACHE/npm" npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
PW_VERSION=1.65.1
PW_DIR="$CACHE/ui-node"
OUT=${STOCKLEDGER_TEST_OUT:-${CARGO_TARGET_DIR:-$ROOT/target}/test-output/ui}
mkdir -p "$OUT"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" != 0 ]; then echo "70-ui: /usr/bin/chromium is missing and installing it needs root" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
if ! grep -qs "\"version\": \"$PW_VERSION\"" "$PW_DIR/node_modules/playwright-core/package.json"; then
  rm -rf "$PW_DIR"
  mkdir -p "$PW_DIR"
  npm install --prefix "$PW_DIR" --no-progress --loglevel=error "playwright-core@$PW_VERSION"
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
  --partner-token "s1:ui-token" 2>"$WORK/stderr" &
PID=$!
for _ in $(seq 1 600); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$PID" 2>/dev/null; then cat "$WORK/stderr"; echo "stockledgerd exited" >&2; exit 1; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null

PLAYWRIGHT_CORE="$PW_DIR/node_modules/playwright-core" BASE="http://127.0.0.1:$PORT" \
  TOKEN=ui-token OUT="$OUT" node service/tests/ui/status_page.cjs

kill -TERM "$PID"
wait "$PID"
PID=
