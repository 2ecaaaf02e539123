"""Build a serialised TensorRT engine from the exported ONNX graph (TensorRT >= 8.6 Python API).

ONNX parser into a network, fp16 by default with LayerNorm (INormalizationLayer) pinned to fp32, a
workspace limit, one optimisation profile over the batch axis, and build progress through
IProgressMonitor where the TensorRT version has it. `tensorrt` is imported on use only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dinov2_ros.runtime.graph_spec import GraphSpec

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32")
DEFAULT_WORKSPACE_BYTES = 2 << 30


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


def batch_profile(max_batch: int) -> tuple[int, int, int]:
    """(min, opt, max) batch of the optimisation profile: tuned for the largest batch the node sends."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    return 1, max_batch, max_batch


def shapes_signature(spec: GraphSpec, max_batch: int) -> str:
    """The input shapes an engine is built for, as one string for the cache key."""
    low, opt, high = batch_profile(max_batch)
    parts = []
    for tensor in spec.input_specs():
        tail = "x".join(str(size) for size in tensor.shape[1:])
        if tensor.shape[0] is None:
            parts.append(f"{tensor.name}:" + "/".join(f"{n}x{tail}" for n in (low, opt, high)))
        else:
            parts.append(f"{tensor.name}:" + "x".join(map(str, tensor.shape)))
    return ";".join(parts)


def build_serialized_engine(
    onnx_path: Path,
    spec: GraphSpec,
    precision: str,
    max_batch: int,
    workspace_bytes: int,
) -> bytes:
    """Parse the ONNX graph and build a serialised engine; RuntimeError with the parser's errors on failure."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    # explicit batch is the only mode from TensorRT 10 on; 8.6 needs the flag
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = 0
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            if layer.type == trt.LayerType.NORMALIZATION:
                layer.precision = trt.float32
                for output in range(layer.num_outputs):
                    layer.set_output_type(output, trt.float32)
                pinned += 1
        LOG.info("TensorRT: fp16 with %d LayerNorm layers kept in fp32", pinned)
    profile = builder.create_optimization_profile()
    low, opt, high = batch_profile(max_batch)
    for tensor in spec.input_specs():
        if tensor.shape[0] is None:
            tail = tuple(tensor.shape[1:])
            profile.set_shape(tensor.name, (low, *tail), (opt, *tail), (high, *tail))
    config.add_optimization_profile(profile)
    if hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _progress_monitor(trt)
    LOG.info(
        "TensorRT %s: building %s %s engine (max batch %d); this takes minutes",
        trt.__version__,
        spec.key,
        precision,
        max_batch,
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path}; see the TensorRT log above")
    return bytes(serialized)


def _progress_monitor(trt):
    """An IProgressMonitor that logs the builder's top-level phases and their steps."""

    class LogProgress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.steps[phase_name] = num_steps
            if parent_phase is None:
                LOG.info("TensorRT build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name, step):
            return True  # never cancel

        def phase_finish(self, phase_name):
            self.steps.pop(phase_name, None)

    return LogProgress()
