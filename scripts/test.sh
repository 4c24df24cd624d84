#!/usr/bin/env bash
# The whole test suite on a fresh machine with only Python: creates .venv, installs the locked
# dependencies, then lint, format check, type check and pytest. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
echo "== ruff check"; .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy (strict)"; .venv/bin/mypy
echo "== pytest"; .venv/bin/pytest "$@"
