#!/usr/bin/env bash
# Build vision_msgs 4.1.1 from third_party/vision_msgs into a virtualenv, with the rosidl wheels.
# For machines WITHOUT a ROS 2 install only; where `import vision_msgs` already works (a sourced
# ROS 2 install, or an earlier run) it does nothing.
#   usage: scripts/build_vision_msgs.sh [VENV]   (default: .venv)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$(cd "${1:-$root/.venv}" && pwd)"
py="$venv/bin/python"

if "$py" -c "import vision_msgs.msg" 2>/dev/null; then
  echo "vision_msgs: already importable, nothing to build"
  exit 0
fi

# The wheels' exported CMake targets name the include dirs of the manylinux build machine
# (/opt/python/cpXY-cpXY/...). Point them at this interpreter's and numpy's, inside the venv only.
"$py" - "$venv" <<'PY'
import pathlib, re, sys, sysconfig
import numpy
venv = pathlib.Path(sys.argv[1])
python_include = sysconfig.get_paths()["include"]
numpy_include = numpy.get_include()
patterns = [
    (re.compile(r"/opt/python/cp\d+-cp\d+/lib/python3\.\d+/site-packages/numpy/_core/include"), numpy_include),
    (re.compile(r"/opt/python/cp\d+-cp\d+/include/python3\.\d+"), python_include),
]
fixed = 0
for path in (venv / "share").glob("*/cmake/*.cmake"):
    text = path.read_text()
    if "/opt/python/" not in text:
        continue
    for pattern, replacement in patterns:
        text = pattern.sub(replacement, text)
    path.write_text(text)
    fixed += 1
print(f"vision_msgs: pointed {fixed} exported CMake files at {python_include} and {numpy_include}")
PY

build="$root/build/vision_msgs"
mkdir -p "$build"
export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
echo "vision_msgs: building into $venv"
cmake -S "$root/third_party/vision_msgs" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$venv" \
  -DPython3_EXECUTABLE="$py" -DPython3_FIND_VIRTUALENV=ONLY -DBUILD_TESTING=OFF >"$build.log" 2>&1 \
  || { tail -40 "$build.log"; echo "vision_msgs: cmake configure failed (full log: $build.log)"; exit 1; }
cmake --build "$build" >>"$build.log" 2>&1 \
  || { tail -40 "$build.log"; echo "vision_msgs: build failed (full log: $build.log)"; exit 1; }
cmake --install "$build" >>"$build.log" 2>&1 \
  || { tail -40 "$build.log"; echo "vision_msgs: install failed (full log: $build.log)"; exit 1; }
"$py" -c "import vision_msgs.msg" || { echo "vision_msgs: built but not importable (see $build.log)"; exit 1; }
echo "vision_msgs: built and installed"
