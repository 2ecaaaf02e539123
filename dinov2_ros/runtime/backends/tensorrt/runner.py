"""TensorRT's runner: runs an engine the loader gives it, and only that (context, stream, buffers), as
Polygraphy's TrtRunner does; the loader (loader.py) finds the engine, building is build time.

Execution uses the TensorRT >= 8.6 name-based API (`set_tensor_address`, `execute_async_v3`) on one
CUDA stream, with page-locked host buffers allocated once for the largest batch.

Device memory goes through cuda-python (`cuda.bindings.runtime`, formerly `cuda.cudart`) rather than
pycuda: NVIDIA maintains it next to TensorRT and its own TensorRT samples use it, it ships as binary
wheels for x86_64 and aarch64 (pycuda compiles against the CUDA toolkit at install, which often fails
on Jetson), and it uses the primary context TensorRT itself uses instead of creating its own.
`tensorrt` and cuda-python are imported when a runner is created, so the package imports anywhere.
"""

from __future__ import annotations

import ctypes

import numpy as np

from dinov2_ros.runtime.backends.base import Backend
from dinov2_ros.runtime.backends.tensorrt.cuda_runtime import cuda_call, import_cudart
from dinov2_ros.runtime.backends.tensorrt.loader import LOADER_API, EngineLoader, import_tensorrt

# every `tensorrt` name running touches, loading included (tests check each TensorRT version's bindings)
RUNTIME_API = (
    *LOADER_API,
    "ICudaEngine.create_execution_context",
    "ICudaEngine.get_tensor_dtype",
    "IExecutionContext.set_tensor_address",
    "IExecutionContext.set_input_shape",
    "IExecutionContext.execute_async_v3",
    "IExecutionContext.get_tensor_shape",
    "nptype",
)


class TensorRTRunner(Backend):
    """Runs the engine `loader` gives (see loader.EngineLoader: MissingEngineError when the cache has
    none for this graph, GPU and TensorRT). Up to `loader.max_batch` frames a call; `infer` splits
    larger batches."""

    kind = "tensorrt"

    def __init__(self, loader: EngineLoader) -> None:
        super().__init__(loader.spec)
        self._host: dict[str, np.ndarray] = {}
        self._host_ptr: dict[str, int] = {}
        self._device: dict[str, int] = {}
        self._stream = None
        self._cudart = import_cudart()
        try:  # a failure part way frees what was allocated: a node retrying must not leak pinned memory
            self._runtime = loader.runtime()  # outlives the engine it deserialised
            self.engine = loader(self._runtime)
            self.max_batch = max_batch = loader.max_batch
            self.context = self.engine.create_execution_context()
            self._stream = cuda_call(self._cudart, self._cudart.cudaStreamCreate())
            for tensor in (*self.inputs, *self.outputs):
                shape = (max_batch, *tensor.shape[1:]) if tensor.shape[0] is None else tensor.shape
                self._allocate(tensor.name, tensor.dtype, shape)
        except BaseException:
            self.close()
            raise

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
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
        self._device, self._host_ptr, self._host, self._stream = {}, {}, {}, None
        self.context = self.engine = self._runtime = None
        self._cudart = None
