"""TensorRT's loader: the engine for a stored graph from the engine cache, checked against everything an
engine is tied to, as Polygraphy's loaders feed its runner.

It never builds: a missing or stale engine is MissingEngineError with the reason, and the engine is
built at build time (`dinov2_ros.export.engine_build`, run by `dinov2-ros build-engine` or the node's
child process). The key (runtime/backends/tensorrt/engine_cache.EngineKey) holds the ONNX graph's
sha256 (its external data file included), the TensorRT version, the GPU, its SM count, the CUDA
driver version, the precision and the input shapes (with the batch the profile is tuned for); the
builder writes the engine under the name and key this loader computes.
`tensorrt` is imported when a loader is used, so the package imports anywhere.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dinov2_ros.runtime.artifact_store import ArtifactStore
from dinov2_ros.runtime.backends.tensorrt.cuda_runtime import gpu_identity, import_cudart, require_cuda
from dinov2_ros.runtime.backends.tensorrt.engine_cache import EngineCache, EngineKey
from dinov2_ros.runtime.backends.tensorrt.trt_logger import LOGGER_API, tensorrt_logger
from dinov2_ros.runtime.graph_file import PRECISION_KEY, QDQ_PRECISION, graph_sha256, load_graph_metadata
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.model_settings import DEFAULT_GRAPH_DIR

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32", "int8")
# the stored graph each engine precision is built from: int8 from the calibrated Q/DQ graph (explicit
# quantisation), the others from the fp32 graph (fp16 makes its own mixed-precision copy)
GRAPH_PRECISIONS = {"fp16": "fp32", "fp32": "fp32", "int8": QDQ_PRECISION}
DEFAULT_ENGINE_DIR = ArtifactStore(DEFAULT_GRAPH_DIR).engine_dir  # where the node and build-engine look
MIN_TENSORRT = (10, 0)
# every `tensorrt` name loading touches (tests check each TensorRT version's bindings for them)
LOADER_API = ("__version__", *LOGGER_API, "Runtime", "Runtime.deserialize_cuda_engine")


class UnsupportedTensorRTError(ValueError):
    """A TensorRT version this package cannot build for, or a graph it cannot parse (the message says which)."""


class MissingEngineError(FileNotFoundError):
    """The engine cache holds no engine for this graph, GPU and TensorRT; the message says why and how to build it."""


def import_tensorrt():
    """The `tensorrt` module, or ImportError saying how to get it."""
    try:
        import tensorrt
    except ImportError as error:
        raise ImportError(
            "the TensorRT backend needs the `tensorrt` Python package (part of JetPack; on x86_64 "
            "`pip install tensorrt`); use backend 'onnxruntime' or 'torch' without it"
        ) from error
    return tensorrt


def parse_version(version: str) -> tuple[int, int]:
    """(major, minor) of a TensorRT version string such as "10.12.0.36"; ValueError otherwise."""
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError) as error:
        raise ValueError(f"not a TensorRT version: {version!r} (expected e.g. '10.3.0')") from error


def check_version(version: str) -> None:
    """UnsupportedTensorRTError for a TensorRT older than 10.0, which cannot take the exported graphs."""
    if parse_version(version) < MIN_TENSORRT:
        raise UnsupportedTensorRTError(
            f"TensorRT {version} is not supported: it parses ONNX opsets up to 17 and torch.onnx writes "
            "18. Use TensorRT 10 or newer (on a Jetson JetPack 6.1 or 6.2, which ship TensorRT 10.3; elsewhere "
            "`pip install tensorrt`), or backend 'onnxruntime'"
        )


def batch_profile(max_batch: int, opt_batch: int | None = None) -> tuple[int, int, int]:
    """(min, opt, max) batch of the optimisation profile: TensorRT picks its kernels for `opt` (the
    batch the node sends most: one frame per camera of a size; default `max_batch`)."""
    opt = max_batch if opt_batch is None else opt_batch
    if not 1 <= opt <= max_batch:
        raise ValueError(f"need 1 <= opt_batch <= max_batch, got opt_batch {opt} and max_batch {max_batch}")
    return 1, opt, max_batch


def shapes_signature(spec: GraphSpec, max_batch: int, opt_batch: int | None = None) -> str:
    """The input shapes an engine is built for, as one string for the cache key."""
    low, opt, high = batch_profile(max_batch, opt_batch)
    parts = []
    for tensor in spec.input_specs():
        tail = "x".join(str(size) for size in tensor.shape[1:])
        if tensor.shape[0] is None:
            parts.append(f"{tensor.name}:" + "/".join(f"{n}x{tail}" for n in (low, opt, high)))
        else:
            parts.append(f"{tensor.name}:" + "x".join(map(str, tensor.shape)))
    return ";".join(parts)


class EngineLoader:
    """The engine of `onnx_path` (a graph of the artifact store: the fp32 one, the Q/DQ one for int8)
    for `precision` and up to
    `max_batch` frames a call, tuned for `opt_batch` (default `max_batch`), from the engine cache in
    `cache_dir`.

    ValueError for an int8 or mismatched graph file; ImportError without `tensorrt`;
    cuda_runtime.CudaUnavailableError without a usable GPU, before touching TensorRT.
    """

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        spec: GraphSpec | None = None,
        precision: str = "fp16",
        max_batch: int = 4,
        cache_dir: str | os.PathLike = DEFAULT_ENGINE_DIR,
        opt_batch: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.profile = batch_profile(max_batch, opt_batch)
        self.onnx_path = Path(onnx_path)
        self.spec, metadata = load_graph_metadata(self.onnx_path, expected=spec)
        stored_precision, wanted = metadata.get(PRECISION_KEY), GRAPH_PRECISIONS[precision]
        if stored_precision != wanted:
            raise ValueError(
                f"{self.onnx_path} is a {stored_precision} graph; a TensorRT {precision} engine is built from the "
                f"{wanted} graph (`dinov2-ros build-engine --precision {precision}` makes and finds it)"
            )
        self.precision = precision
        self.max_batch = max_batch
        self.cache = EngineCache(cache_dir)
        self._key: EngineKey | None = None

    @property
    def name(self) -> str:
        """The engine's name in the cache (its file is `<name>.engine`): graph, precision, batch and the
        key's digest, so engines of other TensorRT versions or GPUs in the same directory stay."""
        return f"{self.spec.key}-{self.precision}-b{self.max_batch}-{self.key().digest}"

    def key(self) -> EngineKey:
        """What the engine is tied to, on this machine (computed once: it hashes the graph file)."""
        if self._key is None:
            trt = import_tensorrt()
            check_version(trt.__version__)
            cudart = import_cudart()
            require_cuda(cudart)
            gpu = gpu_identity(cudart)
            self._key = EngineKey(
                onnx_sha256=graph_sha256(self.onnx_path),
                tensorrt_version=trt.__version__,
                gpu_name=gpu.name,
                compute_capability=gpu.compute_capability,
                multiprocessors=gpu.multiprocessors,
                cuda_driver_version=gpu.versions.driver,
                precision=self.precision,
                shapes=shapes_signature(self.spec, self.max_batch, self.profile[1]),
            )
        return self._key

    def runtime(self):
        """A TensorRT runtime to deserialise engines with (it must outlive the engines it made)."""
        trt = import_tensorrt()
        return trt.Runtime(tensorrt_logger(trt))

    def __call__(self, runtime=None):
        """The deserialised engine (an ICudaEngine), or MissingEngineError saying why there is none."""
        runtime = runtime or self.runtime()
        engine, reason = self.cache.load(self.name, self.key(), runtime.deserialize_cuda_engine)
        if engine is None:
            raise MissingEngineError(
                f"no TensorRT engine for {self.onnx_path.name} ({self.precision}, max batch {self.max_batch}) in "
                f"{self.cache.directory}: {reason}; build it on this machine with `dinov2-ros build-engine` "
                "(the node does so itself in a child process)"
            )
        return engine
