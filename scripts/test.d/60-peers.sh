#!/usr/bin/env bash
# Peer benchmarks in smoke mode: every backend (stockledger embedded and over HTTP, Redis +
# Lua, PostgreSQL, a naive map) for about a second on a small catalogue; fails if any run
# oversold, lost or invented units, refused dishonestly or errored. Figures are not judged.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/peers --smoke
