"""TensorRT backend: builds (or reuses from the cache) an engine for the exported graph and runs it, no torch.

Building is in `tensorrt_build.py`. Execution uses the TensorRT >= 8.6 name-based API
(`set_tensor_address`, `execute_async_v3`) on one CUDA stream, with page-locked host buffers allocated
once for the largest batch.

Device memory goes through cuda-python (`cuda.bindings.runtime`, formerly `cuda.cudart`) rather than
pycuda: NVIDIA maintains it next to TensorRT and its own TensorRT samples use it, it ships as binary
wheels for x86_64 and aarch64 (pycuda compiles against the CUDA toolkit at install, which often fails
on Jetson), and it uses the primary context TensorRT itself uses instead of creating its own.
`tensorrt` and cuda-python are imported when a backend is created, so the package imports anywhere.
Without a usable GPU (no driver, a driver older than cuda-python's CUDA) the constructor raises
`cuda_runtime.CudaUnavailableError` saying which, before touching TensorRT.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

import numpy as np

from dinov2_ros.model.weights import sha256_of
from dinov2_ros.runtime.artifact_store import ArtifactStore
from dinov2_ros.runtime.backend import Backend
from dinov2_ros.runtime.cuda_runtime import cuda_call, gpu_identity, import_cudart, require_cuda
from dinov2_ros.runtime.engine_cache import EngineCache, EngineKey
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.model_settings import DEFAULT_GRAPH_DIR
from dinov2_ros.runtime.onnx_export import PRECISION_KEY, load_graph_metadata
from dinov2_ros.runtime.tensorrt_build import (
    DEFAULT_WORKSPACE_BYTES,
    PRECISIONS,
    build_serialized_engine,
    import_tensorrt,
    plan_build,
    shapes_signature,
)
from dinov2_ros.runtime.tensorrt_compat import max_topk

LOG = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = ArtifactStore(DEFAULT_GRAPH_DIR).engine_dir  # where the node and build-engine look
# every `tensorrt` name the run path below touches (tests check each TensorRT version's bindings for them)
RUNTIME_API = (
    "__version__",
    "Logger",
    "Logger.WARNING",
    "Runtime",
    "Runtime.deserialize_cuda_engine",
    "ICudaEngine.create_execution_context",
    "ICudaEngine.get_tensor_dtype",
    "IExecutionContext.set_tensor_address",
    "IExecutionContext.set_input_shape",
    "IExecutionContext.execute_async_v3",
    "IExecutionContext.get_tensor_shape",
    "nptype",
)


class TensorRTBackend(Backend):
    """Runs an exported graph as a TensorRT engine, built on first use and cached on disk.

    The engine cache lives in `cache_dir`; a cached engine is reused only when its key (ONNX sha256,
    TensorRT version, GPU, compute capability, SM count, CUDA driver and runtime versions, precision,
    shapes) matches.
    """

    kind = "tensorrt"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        spec: GraphSpec | None = None,
        precision: str = "fp16",
        max_batch: int = 4,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        onnx_path = Path(onnx_path)
        spec, metadata = load_graph_metadata(onnx_path, expected=spec)
        stored_precision = metadata.get(PRECISION_KEY)
        if stored_precision != "fp32":
            raise ValueError(
                f"{onnx_path} is a {stored_precision} graph; TensorRT builds from the fp32 export "
                "(the fp16 route makes its own mixed-precision copy), so pass the file `dinov2-ros export` "
                "wrote before quantising"
            )
        super().__init__(spec)
        trt = import_tensorrt()
        plan_build(trt.__version__, precision)  # refuses a TensorRT version it cannot build for
        if spec.detection and spec.top_k > max_topk(trt.__version__):
            raise ValueError(
                f"top_k {spec.top_k} is more than TensorRT {trt.__version__}'s TopK takes "
                f"(K <= {max_topk(trt.__version__)}); export the graph with a smaller top_k"
            )
        self._cudart = cudart = import_cudart()
        require_cuda(cudart)
        gpu = gpu_identity(cudart)
        key = EngineKey(
            onnx_sha256=sha256_of(onnx_path),
            tensorrt_version=trt.__version__,
            gpu_name=gpu.name,
            compute_capability=gpu.compute_capability,
            multiprocessors=gpu.multiprocessors,
            cuda_driver_version=gpu.versions.driver,
            cuda_runtime_version=gpu.versions.runtime,
            precision=precision,
            shapes=shapes_signature(spec, max_batch),
        )
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = EngineCache(cache_dir).load_or_build(
            f"{spec.key}-{precision}-b{max_batch}",
            key,
            build=lambda: build_serialized_engine(onnx_path, spec, precision, max_batch, workspace_bytes),
            deserialize=self._runtime.deserialize_cuda_engine,
        )
        self.max_batch = max_batch
        self.context = self.engine.create_execution_context()
        self._stream = cuda_call(cudart, cudart.cudaStreamCreate())
        self._host: dict[str, np.ndarray] = {}
        self._host_ptr: dict[str, int] = {}
        self._device: dict[str, int] = {}
        for tensor in (*self.inputs, *self.outputs):
            self._allocate(
                tensor.name, tensor.dtype, (max_batch, *tensor.shape[1:]) if tensor.shape[0] is None else tensor.shape
            )

    def _allocate(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        engine_dtype = np.dtype(import_tensorrt().nptype(self.engine.get_tensor_dtype(name)))
        if engine_dtype != dtype:
            raise RuntimeError(f"engine tensor '{name}' is {engine_dtype}, the graph spec says {dtype}; re-export")
        count = int(np.prod(shape))
        nbytes = count * dtype.itemsize
        host = cuda_call(self._cudart, self._cudart.cudaMallocHost(nbytes))
        self._host_ptr[name] = int(host)
        buffer = (ctypes.c_byte * nbytes).from_address(int(host))
        self._host[name] = np.frombuffer(buffer, dtype=dtype, count=count)
        self._device[name] = int(cuda_call(self._cudart, self._cudart.cudaMalloc(nbytes)))
        if not self.context.set_tensor_address(name, self._device[name]):
            raise RuntimeError(
                f"TensorRT refused the device address of tensor '{name}' {list(shape)} {dtype}: the engine "
                "does not have this tensor or needs other alignment; rebuild it (delete the cached engine)"
            )

    def _infer_impl(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        stream = self._stream
        for name, array in inputs.items():
            if not self.context.set_input_shape(name, array.shape):
                raise ValueError(
                    f"TensorRT refused shape {list(array.shape)} for input '{name}': the engine's profile "
                    f"takes batch 1..{self.max_batch} and the GraphSpec's other sizes; check the input"
                )
            self._host[name][: array.size] = array.reshape(-1)
            cuda_call(
                cudart,
                cudart.cudaMemcpyAsync(
                    self._device[name],
                    self._host_ptr[name],
                    array.nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                    stream,
                ),
            )
        if not self.context.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log")
        shapes = {}
        for tensor in self.outputs:
            shape = tuple(self.context.get_tensor_shape(tensor.name))
            shapes[tensor.name] = shape
            nbytes = int(np.prod(shape)) * tensor.dtype.itemsize
            cuda_call(
                cudart,
                cudart.cudaMemcpyAsync(
                    self._host_ptr[tensor.name],
                    self._device[tensor.name],
                    nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                    stream,
                ),
            )
        cuda_call(cudart, cudart.cudaStreamSynchronize(stream))
        # copies: the page-locked buffers are reused by the next call
        return {name: self._host[name][: int(np.prod(shape))].reshape(shape).copy() for name, shape in shapes.items()}

    def close(self) -> None:
        super().close()
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for pointer in self._device.values():
            cudart.cudaFree(pointer)
        for pointer in self._host_ptr.values():
            cudart.cudaFreeHost(pointer)
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)
        self._device, self._host_ptr, self._host, self._stream = {}, {}, {}, None
        self.context = self.engine = None
        self._cudart = None
