#!/usr/bin/env bash
# Node package: installs bindings/node's dev dependencies (npm ci, pinned by its
# package-lock.json, downloads cached under $STOCKLEDGER_CACHE/npm), builds the addon
# (`npm run build`: napi build --platform --release, into the workspace's target/), then runs
# the node --test suite and `tsc --noEmit` of a typed usage file against index.d.ts.
# Idempotent: npm ci runs again only when package-lock.json changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
export STOCKLEDGER_CACHE=${STOCKLEDGER_CACHE:-$ROOT/.cache}
export npm_config_cache="$STOCKLEDGER_CACHE/npm"
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

node -e 'const [a, b] = process.versions.node.split(".").map(Number);
  if (a < 20 || (a === 20 && b < 17)) { console.error(`node ${process.version}: 20.17 or newer is needed`); process.exit(1); }'

cd bindings/node
stamp=node_modules/.stockledger-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-progress --loglevel=error
  echo "$want" > "$stamp"
fi

npm run --silent build
npx --no-install tsc --noEmit -p __test__/tsconfig.json
echo "tsc --noEmit: typed usage of index.d.ts compiles"
node --test __test__/*.test.mjs
