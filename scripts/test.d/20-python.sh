#!/usr/bin/env bash
# Python package: builds and installs bindings/python (maturin, via pip) into a virtual
# environment under $STOCKLEDGER_CACHE, then runs its pytest suite and a mypy check of a
# typed usage file against the shipped stubs. Idempotent: the venv is reused when healthy.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${STOCKLEDGER_CACHE:-$ROOT/.cache}
VENV="$CACHE/py-venv"
PY=${PYTHON:-python3}

if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install --quiet --upgrade "pytest>=7" "mypy>=1.8" "pandas>=1.5"
# Always rebuilt from the working tree (a local folder is never taken as up to date).
# CARGO_TARGET_DIR is left alone so that maturin shares target/ with `cargo test --release`.
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps ./bindings/python

cd bindings/python
# Run from outside the source folder so that the installed wheel, not python/, is imported.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --rootdir tests tests
"$VENV/bin/python" -m mypy --strict --no-incremental --cache-dir=/dev/null tests/typed_usage.py
