#!/usr/bin/env bash
# The test command: prepare the virtualenv (idempotent), lint, then the whole test suite.
#   usage: scripts/run_tests.sh [pytest args...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/prepare_venv.sh
venv="${VENV:-$root/.venv}"
echo "lint: ruff check + ruff format --check"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
exec "$venv/bin/python" -m pytest "$@"
