#!/usr/bin/env bash
# Run the service on http://127.0.0.1:8000 with the embedded defaults (SQLite, shipped rules),
# in the announced local development mode: bound to 127.0.0.1, authentication off unless
# ELIGO_AUTH=on. Production (ELIGO_ENV=production) refuses to start with authentication off.
#
# Serving needs only the runtime dependencies (requirements.runtime.lock, what the Docker image
# installs), so they go into an environment of their own, .venv-serve: the test environment
# (.venv, scripts/venv.sh) adds PySpark, Playwright and the linters, over a gigabyte that
# nobody needs to try the service. Installed once per change of the lock or pyproject.toml (a
# stamp file records what was installed); each step says what it does, because a first run
# takes a while. ELIGO_SERVE_VENV names another directory for it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ELIGO_SERVE_VENV:-.venv-serve}"
python="${PYTHON:-python3}"
lock=requirements.runtime.lock
say() { echo "serve.sh: $*" >&2; }

stamp="$venv/.eligo-serve-installed"  # not .venv's stamp name: ELIGO_SERVE_VENV=.venv works
want=$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2> /dev/null; then
      say "Eligo needs Python >= 3.11; $python is $("$python" --version 2>&1 || echo missing)" \
        "(set PYTHON=/path/to/python3.11 or newer)"
      exit 1
    fi
    say "creating $venv with $("$python" --version 2>&1) ..."
    "$python" -m venv "$venv"
  fi
  packages=$(grep -c '^[A-Za-z0-9]' "$lock")
  say "installing the runtime dependencies into $venv ($packages packages from $lock) ..."
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock"
  say "installing eligo from this checkout (editable: rules/ and migrations/ are read here) ..."
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
  say "installed; the eligo command is $venv/bin/eligo"
fi
export ELIGO_AUTH="${ELIGO_AUTH:-off}"
say "starting $venv/bin/eligo serve $* (Ctrl+C stops it) ..."
exec "$venv/bin/eligo" serve "$@"
