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

# CLIP's BPE vocabulary for the tokenizer tests (dino.txt), as a package ships it: the open_clip_torch
# wheel (not installed: only this data file is taken), checked against the file's well-known sha256
vocab="$venv/test-data/bpe_simple_vocab_16e6.txt.gz"
if [ ! -f "$vocab" ]; then
  echo "prepare: taking CLIP's BPE vocabulary for the tests from the open_clip_torch 3.3.0 wheel"
  wheel_dir="$(mktemp -d)"
  "$venv/bin/python" -m pip download --disable-pip-version-check -q --no-deps -d "$wheel_dir" \
    open_clip_torch==3.3.0 2>&1 | quiet_pip || true
  "$venv/bin/python" - "$wheel_dir" "$vocab" <<'PY' || echo "prepare: no CLIP vocabulary; the tokenizer tests will skip"
import glob, hashlib, pathlib, sys, zipfile
wheels = glob.glob(sys.argv[1] + "/open_clip_torch-*.whl")
data = zipfile.ZipFile(wheels[0]).read("open_clip/bpe_simple_vocab_16e6.txt.gz")
assert hashlib.sha256(data).hexdigest() == "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
target = pathlib.Path(sys.argv[2])
target.parent.mkdir(parents=True, exist_ok=True)
target.write_bytes(data)
PY
  rm -rf "$wheel_dir"
fi

scripts/build_vision_msgs.sh "$venv"
scripts/prepare_tensorrt_api.sh "$venv"
