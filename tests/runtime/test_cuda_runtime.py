"""Why CUDA is unusable, in one message: no driver, a driver older than cuda-python's CUDA, no GPU.

The message logic is tested on the versions it reads; the no-driver case also against the real
cuda-python 12 bindings in a subprocess (this machine has no NVIDIA driver), including the
`dinov2-ros build-engine` exit. Where a driver is present those two skip: the fault cannot be made.
"""

from __future__ import annotations

import pytest
from tensorrt_modules import missing, run_python

from dinov2_ros.runtime.backends.tensorrt.cuda_runtime import (
    CUDA_ERROR_INSUFFICIENT_DRIVER,
    CUDA_ERROR_NO_DEVICE,
    CudaUnavailableError,
    CudaVersions,
    unavailable_reason,
)

INSUFFICIENT = "cudaErrorInsufficientDriver (35): CUDA driver version is insufficient for CUDA runtime version"


def test_no_driver_says_so_and_names_the_other_backends():
    reason = unavailable_reason(CudaVersions(driver=0, runtime=12090), CUDA_ERROR_INSUFFICIENT_DRIVER, INSUFFICIENT)
    assert reason.startswith("no NVIDIA driver found")
    assert INSUFFICIENT in reason and "'onnxruntime'" in reason


def test_driver_of_an_older_cuda_major_asks_for_the_matching_cuda_python():
    reason = unavailable_reason(CudaVersions(driver=12060, runtime=13000), CUDA_ERROR_INSUFFICIENT_DRIVER, INSUFFICIENT)
    assert "supports CUDA up to 12.6, but cuda-python here is built for CUDA 13.0" in reason
    assert "pip install 'cuda-python>=12.0,<13'" in reason


def test_driver_of_the_same_major_asks_for_a_driver_update():
    reason = unavailable_reason(CudaVersions(driver=12020, runtime=12090), CUDA_ERROR_INSUFFICIENT_DRIVER, INSUFFICIENT)
    assert "supports CUDA up to 12.2" in reason and "update the NVIDIA driver" in reason


def test_no_visible_gpu_points_at_cuda_visible_devices():
    reason = unavailable_reason(CudaVersions(driver=12080, runtime=12090), CUDA_ERROR_NO_DEVICE, "no device")
    assert "sees no CUDA GPU" in reason and "CUDA_VISIBLE_DEVICES" in reason


PROBE = """
from dinov2_ros.runtime.backends.tensorrt.cuda_runtime import cuda_call, cuda_versions, import_cudart, require_cuda
cudart = import_cudart()
print("driver", cuda_versions(cudart).driver)
try:
    cuda_call(cudart, cudart.cudaGetDevice())
except RuntimeError as error:
    print("call:", error)
try:
    require_cuda(cudart)
except Exception as error:
    print("require:", type(error).__name__, error)
"""


@pytest.fixture(scope="module")
def probe():
    reason = missing(cuda_python=True)
    if reason:
        pytest.skip(reason)
    result = run_python(PROBE, cuda_python=True)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    if lines["driver"] != "0":
        pytest.skip(f"an NVIDIA driver is present (CUDA {lines['driver']}): the no-driver fault cannot be made here")
    return lines


def test_real_cuda_python_without_a_driver(probe):
    assert probe["call:"] == f"CUDA error {INSUFFICIENT}"
    assert probe["require:"].startswith(f"{CudaUnavailableError.__name__} no NVIDIA driver found")


@pytest.mark.subprocess
def test_build_engine_without_a_driver_exits_2_with_one_line(probe, tmp_path):
    """The real command with the real cuda-python and TensorRT 10.16 bindings (stub libraries); it
    stops before exporting anything."""
    reason = missing("10.16.0.72")
    if reason:
        pytest.skip(reason)
    argv = ["build-engine", "--weights", "random", "--graph-dir", str(tmp_path)]
    code = f"from dinov2_ros.cli import main\nraise SystemExit(main({argv!r}))"
    result = run_python(code, version="10.16.0.72", cuda_python=True)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "no NVIDIA driver found" in line]
    assert len(errors) == 1, result.stderr
    assert not list(tmp_path.glob("*.onnx")), "no export before finding that CUDA is unusable"


class NoLibcuda:
    """Stands in for cuda-python 12.6.2.post1 on a machine without the NVIDIA driver (that release is not
    installed here): its first runtime call raises instead of returning an error code."""

    def cudaDriverGetVersion(self):
        raise RuntimeError("Failed to dlopen libcuda.so.1")

    cudaRuntimeGetVersion = cudaGetDeviceCount = cudaDriverGetVersion


def test_cuda_python_that_cannot_load_libcuda_is_the_no_driver_message():
    from dinov2_ros.runtime.backends.tensorrt.cuda_runtime import require_cuda

    with pytest.raises(
        CudaUnavailableError,
        match=r"^no NVIDIA driver found \(cuda-python: Failed to dlopen libcuda\.so\.1\)\. .*'onnxruntime'",
    ):
        require_cuda(NoLibcuda())
