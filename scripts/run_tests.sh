#!/usr/bin/env bash
# The test command: prepare the virtualenv (idempotent), lint, then the whole test suite.
#   usage: scripts/run_tests.sh [--fast] [pytest args...]
#   --fast: only the tests that need no DDS, no subprocess and no export, and are not slow (the edit-test loop)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/prepare_venv.sh
venv="${VENV:-$root/.venv}"
echo "lint: ruff check + ruff format --check"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
if [ "${1:-}" = "--fast" ]; then
  shift
  export DINOV2_ROS_FAST_LANE=1
  exec "$venv/bin/python" -m pytest -m "not dds and not subprocess and not export and not slow" "$@"
fi
exec "$venv/bin/python" -m pytest "$@"
