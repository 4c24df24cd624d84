#!/usr/bin/env bash
# Run the service on http://127.0.0.1:8000 with the embedded defaults (SQLite, shipped rules),
# in the announced local development mode: bound to 127.0.0.1, authentication off unless
# ELIGO_AUTH=on. Production (ELIGO_ENV=production) refuses to start with authentication off.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
export ELIGO_AUTH="${ELIGO_AUTH:-off}"
exec .venv/bin/eligo serve "$@"
