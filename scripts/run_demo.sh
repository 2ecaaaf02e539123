#!/usr/bin/env bash
# The run command: prepare the virtualenv (idempotent), then run the demo — a synthetic camera and the
# perception node, as launch/demo.launch.py starts them — for 30 s after the first output, with a report.
#   usage: scripts/run_demo.sh [dinov2-ros demo options, e.g. --duration 0 to run until Ctrl-C]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/prepare_venv.sh
exec "${VENV:-$root/.venv}/bin/dinov2-ros" demo "$@"
