#!/usr/bin/env bash
# Test-only: the real `tensorrt` Python bindings of each version in tests/support/tensorrt_api/versions.txt
# (about 1 MB each, `pip --target`, no dependencies), cuda-python 12.x, and stub TensorRT libraries built
# with gcc, all under $VENV/tensorrt-api, so tests can check our build code against each version's API
# and reproduce the no-driver CUDA error without a GPU. Idempotent: a folder that is there is kept.
# A wheel that cannot be had (offline) is reported and skipped; the tests then skip with that reason.
#   usage: scripts/prepare_tensorrt_api.sh [venv]
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-${VENV:-$root/.venv}}"
target="$venv/tensorrt-api"
cuda_python="cuda-python==12.9.2"
mkdir -p "$target"

install() {  # install <folder> <requirement>...
  local folder="$1"; shift
  [ -f "$target/$folder/.installed" ] && return 0
  rm -rf "$target/$folder"
  if "$venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps --target "$target/$folder" "$@" \
      2>&1 | grep -v "is ignored: it is neither a file nor a directory"; then :; fi
  if [ -n "$(ls -A "$target/$folder" 2>/dev/null)" ]; then
    touch "$target/$folder/.installed"
  else
    echo "prepare: could not install $* (offline?); the tests that need it will skip"
    rm -rf "$target/$folder"
  fi
}

grep -v '^#' "$root/tests/support/tensorrt_api/versions.txt" | while read -r version distribution; do
  [ -n "$version" ] && install "tensorrt-$version" "$distribution==$version"
done
install cuda-python-12 "$cuda_python" "cuda-bindings==${cuda_python#cuda-python==}"

if command -v gcc >/dev/null; then
  for major in 8 10 11; do
    mkdir -p "$target/stubs/$major"
    for library in libnvinfer libnvonnxparser libnvinfer_plugin libnvparsers; do
      out="$target/stubs/$major/$library.so.$major"
      if [ ! -f "$out" ] || [ "$root/tests/support/tensorrt_api/stubs.c" -nt "$out" ]; then
        gcc -shared -fPIC -o "$out" "$root/tests/support/tensorrt_api/stubs.c"
      fi
    done
  done
else
  echo "prepare: no gcc: the TensorRT API tests will skip"
fi
echo "prepare: TensorRT bindings for the API tests in $target"
