"""Build a serialised TensorRT engine from the exported ONNX graph, on TensorRT 10.0 .. 11.x.

`plan_build(version, precision)` decides what the build does on one TensorRT version, and lists every
`tensorrt` attribute, enum member and method the build touches there (`BuildPlan.api`), so tests can
check the plan against each version's real bindings. Precision routes (NVIDIA's "Migrating from
TensorRT 10.x to 11.x": weak typing deprecated in 10.12, removed in 11.0):
- fp16 on 10.0 .. 10.11: weakly typed, `BuilderFlag.FP16` with `OBEY_PRECISION_CONSTRAINTS`, and the
  layers of `mixed_precision.fp32_nodes` (LayerNorm, Softmax, reductions, depth bins, the detection
  head and its boxes) pinned to fp32: precision and output types of their float outputs;
- fp16 on 10.12 and later: a strongly typed network parsed from the mixed-precision copy of the graph
  (`mixed_precision.fp16_graph`, the same nodes fp32; written to a scratch file and parsed from it);
  `NetworkDefinitionCreationFlag.STRONGLY_TYPED` on 10.x, the default (no flag) on 11.x;
- fp32: the fp32 graph as it is (strongly typed from 10.12 on, where the types come from the graph).
- int8: the calibrated Q/DQ graph (`quantize.quantize_qdq`), explicit quantisation, TensorRT 10's
  supported int8 route: on 10.0 .. 10.11 weakly typed with `BuilderFlag.INT8` and `FP16` (the layers
  between the Q/DQ pairs in fp16) and the same fp32 set pinned; from 10.12 strongly typed, the types
  as the graph gives them (int8 between the Q/DQ pairs, fp32 elsewhere).
On every route `BuilderFlag.TF32` is cleared: TensorRT sets it by default (the bindings' IBuilderConfig
documentation, 10.3 and 11.4), which lets fp32 matrix products and convolutions run in TF32 (a 10-bit
mantissa) on Ampere and later GPUs, Orin included; fp32 must mean fp32, both for an fp32 engine and for
the layers the fp16 routes keep in fp32.
TensorRT 8.6 (JetPack 6.0) is refused: it parses opset <= 17, which torch.onnx cannot write.
Before parsing, the graph is checked against the version's documented ONNX restrictions
(`tensorrt_compat`). A workspace limit, one optimisation profile over the batch axis, and build
progress through IProgressMonitor, and TensorRT's timing cache kept beside the engines (rebuilds in
seconds). `build_engine` writes the engine into the cache under the name and key the runtime's loader
computes (runtime/backends/tensorrt/loader.py), where the node finds it.
`tensorrt` is imported on use only.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from dinov2_ros.export.camera_graph import save_model
from dinov2_ros.export.mixed_precision import fp16_graph, fp32_nodes
from dinov2_ros.export.tensorrt_compat import graph_violations, max_topk
from dinov2_ros.runtime.backends.tensorrt.engine_cache import TimingCacheFile
from dinov2_ros.runtime.backends.tensorrt.loader import (
    PRECISIONS,
    EngineLoader,
    UnsupportedTensorRTError,
    batch_profile,
    check_version,
    import_tensorrt,
    parse_version,
)
from dinov2_ros.runtime.backends.tensorrt.trt_logger import LOGGER_API, tensorrt_logger
from dinov2_ros.runtime.graph_spec import GraphSpec

LOG = logging.getLogger(__name__)

DEFAULT_WORKSPACE_BYTES = 2 << 30


STRONG_TYPING_FROM = (10, 12)  # weak typing deprecated in 10.12, removed in 11.0

# what every build touches, on every version
_COMMON_API = (
    "__version__",
    *LOGGER_API,
    "Builder",
    "Builder.create_network",
    "Builder.create_builder_config",
    "Builder.create_optimization_profile",
    "Builder.build_serialized_network",
    "OnnxParser",
    "OnnxParser.parse_from_file",
    "OnnxParser.num_errors",
    "OnnxParser.get_error",
    "IBuilderConfig.set_memory_pool_limit",
    "IBuilderConfig.add_optimization_profile",
    "IBuilderConfig.progress_monitor",
    "IBuilderConfig.create_timing_cache",
    "IBuilderConfig.set_timing_cache",
    "IBuilderConfig.get_timing_cache",
    "ITimingCache.serialize",
    "MemoryPoolType.WORKSPACE",
    "IOptimizationProfile.set_shape",
    "IProgressMonitor",
)
_WEAK_FP16_API = (
    "IBuilderConfig.set_flag",
    "BuilderFlag.FP16",
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
    "INetworkDefinition.num_layers",
    "INetworkDefinition.get_layer",
    "ILayer.name",
    "ILayer.type",
    "ILayer.precision",
    "ILayer.num_outputs",
    "ILayer.get_output",
    "ILayer.set_output_type",
    "ITensor.dtype",
    "LayerType.NORMALIZATION",
    "LayerType.SOFTMAX",
    "LayerType.REDUCE",
    "float32",
)


@dataclass(frozen=True)
class BuildPlan:
    """What `build_serialized_engine` does on one TensorRT version and precision.

    `network_flags` and `builder_flags` name members of NetworkDefinitionCreationFlag and BuilderFlag;
    `api` is every dotted `tensorrt` name the build touches on this route ("Builder.create_network").
    """

    tensorrt_version: str
    precision: str
    strongly_typed: bool
    fp16_graph: bool  # parse the mixed-precision copy of the graph
    pin_fp32_layers: bool  # weak typing: the layers of mixed_precision.fp32_nodes pinned to fp32
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    cleared_builder_flags: tuple[str, ...] = ("TF32",)  # on by default: fp32 matmuls in TF32 on Ampere+

    @property
    def api(self) -> tuple[str, ...]:
        names = [*_COMMON_API]
        names += [f"NetworkDefinitionCreationFlag.{flag}" for flag in self.network_flags]
        names += [f"BuilderFlag.{flag}" for flag in self.builder_flags]
        if self.cleared_builder_flags:
            names += ["IBuilderConfig.clear_flag", *(f"BuilderFlag.{flag}" for flag in self.cleared_builder_flags)]
        if self.pin_fp32_layers:
            names += _WEAK_FP16_API
        return tuple(dict.fromkeys(names))


def plan_build(tensorrt_version: str, precision: str) -> BuildPlan:
    """The build route for `precision` ("fp16"/"fp32"/"int8") on `tensorrt_version`; UnsupportedTensorRTError below 10.0."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    check_version(tensorrt_version)
    version = parse_version(tensorrt_version)
    strong = version >= STRONG_TYPING_FROM
    fp16, int8 = precision == "fp16", precision == "int8"
    weak_flags = {
        "fp16": ("FP16", "OBEY_PRECISION_CONSTRAINTS"),
        "int8": ("INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"),
    }
    return BuildPlan(
        tensorrt_version=tensorrt_version,
        precision=precision,
        strongly_typed=strong,
        fp16_graph=strong and fp16,
        pin_fp32_layers=(fp16 or int8) and not strong,
        network_flags=("STRONGLY_TYPED",) if strong and version[0] == 10 else (),
        builder_flags=() if strong else weak_flags.get(precision, ()),
    )


def build_serialized_engine(
    onnx_path: Path,
    spec: GraphSpec,
    precision: str,
    max_batch: int,
    workspace_bytes: int,
    opt_batch: int | None = None,
    timing_cache: TimingCacheFile | None = None,
) -> bytes:
    """Check, parse and build `onnx_path` for `spec`, batches 1..`max_batch` tuned for `opt_batch`; the
    serialised engine's bytes. The build starts from `timing_cache` (kernel timings of earlier builds
    on this TensorRT and GPU) and stores it back with this build's timings added.

    UnsupportedTensorRTError when the TensorRT version or the graph breaks a documented restriction
    (all of them listed); RuntimeError with the parser's errors, or when the build fails.
    """
    trt = import_tensorrt()
    plan = plan_build(trt.__version__, precision)
    model = onnx.load(str(onnx_path))
    if plan.pin_fp32_layers:
        kept, node_names = set(fp32_nodes(model, spec)), {node.name for node in model.graph.node}
    if plan.fp16_graph:
        model = fp16_graph(model, spec, onnx_path)
    violations = graph_violations(model, trt.__version__)
    if violations:
        raise UnsupportedTensorRTError(
            f"{onnx_path} cannot be built with TensorRT {trt.__version__}: " + "; ".join(violations)
        )
    logger = tensorrt_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    for flag in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, flag))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)  # holds the weights the network refers to, until the build
    with tempfile.TemporaryDirectory(prefix="dinov2_ros_fp16_") as scratch:
        parsed = onnx_path
        if plan.fp16_graph:  # parsed from a file as the fp32 graph is: with external data where it is large
            parsed = Path(scratch) / onnx_path.name
            save_model(model, parsed)
        del model  # the build needs the network, not this copy (GBs for the larger encoders)
        if not parser.parse_from_file(str(parsed)):
            errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for flag in plan.cleared_builder_flags:
        config.clear_flag(getattr(trt.BuilderFlag, flag))
    if plan.pin_fp32_layers:
        _pin_fp32_layers(trt, network, kept, node_names)
    timings = config.create_timing_cache(timing_cache.read() if timing_cache else b"")
    if not config.set_timing_cache(timings, False):  # ignore_mismatch=False: TensorRT checks it too
        LOG.warning("TensorRT refused the stored timing cache; building without it")
    profile = builder.create_optimization_profile()
    low, opt, high = batch_profile(max_batch, opt_batch)
    for tensor in spec.input_specs():
        if tensor.shape[0] is None:
            tail = tuple(tensor.shape[1:])
            profile.set_shape(tensor.name, (low, *tail), (opt, *tail), (high, *tail))
    config.add_optimization_profile(profile)
    config.progress_monitor = _progress_monitor(trt)
    LOG.info(
        "TensorRT %s: building %s %s engine (batch 1..%d, tuned for %d, %s); minutes on a first build, "
        "seconds with a timing cache",
        trt.__version__,
        spec.key,
        precision,
        max_batch,
        opt,
        "strongly typed" if plan.strongly_typed else "weakly typed",
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path}; see the TensorRT log above")
    if timing_cache is not None:
        timing_cache.write(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def onnx_node_of(layer_name: str, node_names: set[str]) -> str | None:
    """The ONNX node a TensorRT layer was made from, or None (a layer the parser adds for itself).

    onnx-tensorrt names a node's first layer after the node and any further ones `<node>_<n>`
    (ImporterContext::registerLayer, generateUniqueName), so the longest node name the layer name
    reduces to by dropping `_<n>` suffixes is its node."""
    name = layer_name
    while name not in node_names:
        base, separator, suffix = name.rpartition("_")
        if not separator or not suffix.isdigit():
            return None
        name = base
    return name


def _pin_fp32_layers(trt, network, kept: set[str], node_names: set[str]) -> None:
    """Weak typing: every LayerNorm, Softmax and reduction layer and every layer made from a node of
    `kept` (mixed_precision.fp32_nodes) computes in fp32 with fp32 outputs, as the strongly typed copy
    does (OBEY_PRECISION_CONSTRAINTS holds them). Layers without a float output (shapes, indices,
    masks) keep their types."""
    fp32_types = (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE)
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if onnx_node_of(str(layer.name), node_names) not in kept and layer.type not in fp32_types:
            continue
        floats = [output for output in range(layer.num_outputs) if layer.get_output(output).dtype == trt.float32]
        if not floats:
            continue
        layer.precision = trt.float32
        for output in floats:
            layer.set_output_type(output, trt.float32)
        pinned += 1
    LOG.info(
        "TensorRT: fp16 with %d layers kept in fp32 (LayerNorm, Softmax, reductions, depth bins, detection head)",
        pinned,
    )


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


def build_engine(loader: EngineLoader, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> Path:
    """Build the engine `loader` looks for into its cache, unless the cache holds it already; the
    engine file's path. The runner then loads it (`TensorRTRunner(loader)`).

    Refuses a TensorRT version it cannot build for, and a top_k beyond its TopK, before touching CUDA.
    """
    version = import_tensorrt().__version__
    plan_build(version, loader.precision)
    if loader.spec.detection and loader.spec.top_k > max_topk(version):
        raise ValueError(
            f"top_k {loader.spec.top_k} is more than TensorRT {version}'s TopK takes (K <= {max_topk(version)}); "
            "export the graph with a smaller top_k"
        )
    loader.cache.load_or_build(
        loader.name,
        loader.key(),
        build=lambda: build_serialized_engine(
            loader.onnx_path,
            loader.spec,
            loader.precision,
            loader.max_batch,
            workspace_bytes,
            opt_batch=loader.profile[1],
            timing_cache=loader.cache.timing_cache(loader.key()),
        ),
        deserialize=loader.runtime().deserialize_cuda_engine,
    )
    return loader.cache.path_for(loader.name)
