#!/usr/bin/env bash
# The whole test suite on a fresh machine with Python and PostgreSQL: creates .venv, installs
# the locked dependencies and the browser tests' Chromium and axe-core, then lint, format check,
# type check, the rule toolchain (validate, clinical vignettes, full three-valued coverage) and
# pytest twice: the application on SQLite (the
# embedded default), then again on the local PostgreSQL (started if it is down). The database
# layer's own tests use both in each pass. Each pass runs on one pytest-xdist worker per core
# (ELIGO_TEST_WORKERS=N to choose; 0 runs in this process), a test file's tests on one worker,
# since module fixtures start servers; every test makes its own databases, so workers share
# nothing. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
source scripts/postgres.sh
source scripts/browser.sh  # Debian's Chromium and axe-core (npm ci) for tests/e2e/browser
source scripts/java.sh  # a Java 17+ runtime for the Spark (local mode) screening tests
echo "== ruff check"; .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy (strict)"; .venv/bin/mypy
echo "== eligo rules validate / test / coverage"
.venv/bin/eligo rules validate rules
.venv/bin/eligo rules test rules
# The full table only when something was never exercised; otherwise its last line.
coverage=$(.venv/bin/eligo rules coverage rules --fail-under 100) || { echo "$coverage"; exit 1; }
echo "${coverage##*$'\n'}"
parallel=(-n "${ELIGO_TEST_WORKERS:-auto}" --dist loadfile)
echo "== pytest (application database: SQLite)"
ELIGO_TEST_DATABASE=sqlite .venv/bin/pytest "${parallel[@]}" "$@"
echo "== pytest (application database: PostgreSQL; tests marked one_pass ran above)"
ELIGO_TEST_DATABASE=postgres .venv/bin/pytest "${parallel[@]}" -m "not one_pass" "$@"
