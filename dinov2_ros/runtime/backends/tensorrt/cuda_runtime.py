"""The CUDA runtime through cuda-python: import, error checking, device identity, and why CUDA is unusable.

cuda-python's runtime bindings (`cuda.bindings.runtime`, formerly `cuda.cudart`) return `(error,
*values)` tuples. `cuda_call` turns a non-zero error into a CudaError naming it; `require_cuda`
runs first and turns the usual set-up faults (no NVIDIA driver, a driver older than the CUDA runtime
cuda-python was built for, no visible GPU) into a `CudaUnavailableError` that says which one it is
and what to install, from `cudaDriverGetVersion`, `cudaRuntimeGetVersion` and `cudaGetErrorString`.
Versions are CUDA's integer encoding, 1000 * major + 10 * minor (12090 is CUDA 12.9).
"""

from __future__ import annotations

from dataclasses import dataclass

# cudaError_t values (CUDA runtime API, driver_types.h)
CUDA_SUCCESS = 0
CUDA_ERROR_INSUFFICIENT_DRIVER = 35
CUDA_ERROR_NO_DEVICE = 100
NO_DRIVER_ADVICE = (
    "The TensorRT backend needs an NVIDIA GPU with its driver (JetPack on a Jetson); "
    "without one use backend 'onnxruntime' or 'torch'"
)


class CudaUnavailableError(RuntimeError):
    """CUDA cannot run here: no NVIDIA driver, a driver too old for cuda-python's CUDA runtime, or no GPU."""


class CudaError(RuntimeError):
    """A CUDA runtime call returned an error (`cuda_call`)."""


@dataclass(frozen=True)
class CudaVersions:
    """What cuda-python reports: the driver's CUDA version (0 without a driver) and its own runtime's."""

    driver: int
    runtime: int

    @staticmethod
    def text(version: int) -> str:
        """CUDA's integer version as "major.minor" (12090 -> "12.9")."""
        return f"{version // 1000}.{version % 1000 // 10}"


def import_cudart():
    """cuda-python's runtime API module (new and old import paths), or ImportError saying how to get it."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as error:
            raise ImportError(
                "the TensorRT backend needs cuda-python for device memory: "
                "`pip install -r requirements/tensorrt.txt` (cuda-python 12.x for CUDA 12 drivers and "
                "JetPack 6; 13.x only with a CUDA 13 driver, 580 or newer)"
            ) from error
    return cudart


def error_text(cudart, error) -> str:
    """`cudaErrorName (code): description` of a cudaError_t, from cudaGetErrorName and cudaGetErrorString."""

    def lookup(function) -> str:
        text = function(error)[1]
        return text.decode(errors="replace") if isinstance(text, bytes) else str(text)

    return f"{lookup(cudart.cudaGetErrorName)} ({int(error)}): {lookup(cudart.cudaGetErrorString)}"


def cuda_call(cudart, result):
    """Unpack a cuda-python `(error, *values)` result; CudaError naming the error when it is not success."""
    error, *values = result
    if int(error) != CUDA_SUCCESS:
        raise CudaError(f"CUDA error {error_text(cudart, error)}")
    return values[0] if len(values) == 1 else values or None


def cuda_versions(cudart) -> CudaVersions:
    """The driver's and cuda-python's runtime CUDA versions; both calls work without a GPU or driver."""
    return CudaVersions(
        driver=int(cuda_call(cudart, cudart.cudaDriverGetVersion())),
        runtime=int(cuda_call(cudart, cudart.cudaRuntimeGetVersion())),
    )


def unavailable_reason(versions: CudaVersions, error_code: int, error: str) -> str:
    """Why cudaGetDeviceCount failed with `error_code` (`error` is its text), and what to do about it."""
    runtime = CudaVersions.text(versions.runtime)
    runtime_major = versions.runtime // 1000
    if versions.driver == 0:
        return f"no NVIDIA driver found (cudaDriverGetVersion reports none; {error}). {NO_DRIVER_ADVICE}"
    if error_code == CUDA_ERROR_INSUFFICIENT_DRIVER:
        driver = CudaVersions.text(versions.driver)
        driver_major = versions.driver // 1000
        fix = (
            f"install the cuda-python of the driver's CUDA major: `pip install 'cuda-python>={driver_major}.0,<{driver_major + 1}'`"
            if driver_major < runtime_major
            else f"update the NVIDIA driver, or install a cuda-python built for CUDA {driver} or older"
        )
        return (
            f"the NVIDIA driver supports CUDA up to {driver}, but cuda-python here is built for CUDA {runtime} "
            f"({error}); {fix}. cuda-python 13.x needs driver 580 or newer; JetPack 6 is CUDA 12"
        )
    if error_code == CUDA_ERROR_NO_DEVICE:
        return f"the NVIDIA driver sees no CUDA GPU ({error}); check CUDA_VISIBLE_DEVICES and that the GPU is present"
    return f"CUDA cannot be initialised ({error}; driver CUDA {CudaVersions.text(versions.driver)}, runtime {runtime})"


def require_cuda(cudart) -> int:
    """The number of visible CUDA devices; CudaUnavailableError saying what is wrong when there are none.

    Without a driver, cuda-python 12.9 returns cudaErrorInsufficientDriver with driver version 0, but
    12.6.x (12.6.2.post1, as JetPack 6 users pin it) raises `RuntimeError: Failed to dlopen
    libcuda.so.1` from its first call: both are "no NVIDIA driver".
    """
    try:
        versions = cuda_versions(cudart)
        error, count = cudart.cudaGetDeviceCount()
    except CudaError:
        raise
    except RuntimeError as failure:
        if "libcuda" not in str(failure):
            raise
        raise CudaUnavailableError(f"no NVIDIA driver found (cuda-python: {failure}). {NO_DRIVER_ADVICE}") from failure
    if int(error) != CUDA_SUCCESS:
        raise CudaUnavailableError(unavailable_reason(versions, int(error), error_text(cudart, error)))
    if count < 1:
        raise CudaUnavailableError(unavailable_reason(versions, CUDA_ERROR_NO_DEVICE, "cudaGetDeviceCount is 0"))
    return count


@dataclass(frozen=True)
class GpuIdentity:
    """What an engine is tied to besides TensorRT: GPU, compute capability, SM count, driver and runtime."""

    name: str
    compute_capability: str  # "major.minor"
    multiprocessors: int
    versions: CudaVersions


def gpu_identity(cudart) -> GpuIdentity:
    """The current CUDA device's identity (cudaGetDeviceProperties) and the CUDA versions in use."""
    device = cuda_call(cudart, cudart.cudaGetDevice())
    properties = cuda_call(cudart, cudart.cudaGetDeviceProperties(device))
    name = properties.name
    name = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return GpuIdentity(
        name=name.rstrip("\x00").strip(),
        compute_capability=f"{properties.major}.{properties.minor}",
        multiprocessors=int(properties.multiProcessorCount),
        versions=cuda_versions(cudart),
    )
