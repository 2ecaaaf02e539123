"""The real `tensorrt` bindings and cuda-python that scripts/prepare_tensorrt_api.sh installs, run in subprocesses.

Each TensorRT version lives in its own folder under `<venv>/tensorrt-api` and imports against stub
TensorRT libraries (no GPU, no TensorRT here), so a subprocess per version can read its API. The
bindings wheel names its package `tensorrt_bindings`; the `tensorrt` wheel that users install exposes
the same module as `tensorrt`, so the subprocess registers it under that name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API_DIR = Path(sys.prefix) / "tensorrt-api"
VERSIONS_FILE = Path(__file__).parent / "tensorrt_api" / "versions.txt"
CUDA_PYTHON = API_DIR / "cuda-python-12"
PREPARE = "run scripts/prepare_tensorrt_api.sh"

ALIAS_TENSORRT = "import sys, tensorrt_bindings; sys.modules['tensorrt'] = tensorrt_bindings\n"


def bindings_versions() -> list[str]:
    """Every TensorRT version in versions.txt, oldest first."""
    lines = VERSIONS_FILE.read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def missing(version: str | None = None, cuda_python: bool = False) -> str | None:
    """Why the bindings of `version` (and/or cuda-python) cannot be run here, or None when they can."""
    if version is not None:
        if not (API_DIR / f"tensorrt-{version}" / "tensorrt_bindings").is_dir():
            return f"tensorrt bindings {version} are not installed in {API_DIR}; {PREPARE}"
        if not (API_DIR / "stubs" / version.split(".")[0]).is_dir():
            return f"no stub TensorRT libraries in {API_DIR / 'stubs'} (gcc missing?); {PREPARE}"
    if cuda_python and not (CUDA_PYTHON / "cuda").is_dir():
        return f"cuda-python 12 is not installed in {CUDA_PYTHON}; {PREPARE}"
    return None


def run_python(code: str, version: str | None = None, cuda_python: bool = False) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with the bindings of `version` as `tensorrt` and/or cuda-python 12."""
    paths = [str(ROOT)]
    env = dict(os.environ)
    if version is not None:
        paths.append(str(API_DIR / f"tensorrt-{version}"))
        env["LD_LIBRARY_PATH"] = str(API_DIR / "stubs" / version.split(".")[0])
        code = ALIAS_TENSORRT + code
    if cuda_python:
        paths.append(str(CUDA_PYTHON))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def engine_key(**changes):
    """An EngineKey of a Jetson AGX Orin on TensorRT 10.12 (fields replaced by `changes`), for tests."""
    from dinov2_ros.runtime.backends.tensorrt.engine_cache import EngineKey

    fields = dict(
        onnx_sha256="ab" * 32,
        tensorrt_version="10.12.0",
        gpu_name="NVIDIA Jetson AGX Orin",
        compute_capability="8.7",
        multiprocessors=16,
        cuda_driver_version=12060,
        precision="fp16",
        shapes="images:1x480x640x3/4x480x640x3/4x480x640x3",
    )
    return EngineKey(**(fields | changes))
