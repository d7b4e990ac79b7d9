#!/usr/bin/env bash
# The Kafka publisher and stock feed consumer against a real Apache Kafka broker: starts a
# private single-node broker (scripts/kafka, fetched from Maven Central and cached under
# $STOCKLEDGER_CACHE), runs service/tests/kafka.rs against it, and always stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
export STOCKLEDGER_CACHE=${STOCKLEDGER_CACHE:-$(pwd)/.cache}

scripts/kafka reset
trap 'scripts/kafka stop || true' EXIT
scripts/kafka start
eval "$(scripts/kafka env)"
export STOCKLEDGER_KAFKA_BROKERS
# The outage test may stop and start this broker (it is ours).
export STOCKLEDGER_KAFKA_CONTROL=1
cargo test --release -p stockledger-service --test kafka -- --test-threads=1 --nocapture
