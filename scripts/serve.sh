#!/usr/bin/env bash
# Run the service on http://127.0.0.1:8000 with the embedded defaults (SQLite, shipped rules).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec .venv/bin/eligo serve "$@"
