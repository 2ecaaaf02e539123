"""Our TensorRT build and run code against each supported version's real `tensorrt` bindings, without a GPU.

Two halves, so that neither passes vacuously:
- `build_serialized_engine`, and the engine's way end to end (built into the cache, loaded by
  EngineLoader, run by TensorRTRunner: allocate, one batch),
  run against a recording stand-in for `tensorrt` and a host-only stand-in for cuda-python (TensorRT
  and CUDA cannot run here): every attribute, enum member and method they touch must be in
  `plan_build(...).api` or `RUNTIME_API`, and those may list nothing that is not touched (bar the
  parser-error path).
- In a subprocess per version, the real bindings (scripts/prepare_tensorrt_api.sh, stub libraries)
  must have every name of that version's plan and of the run path (`RUNTIME_API`), and report
  the version asked for. A version whose wheel is missing skips with the reason.
"""

from __future__ import annotations

import ctypes
import json
import sys
from types import SimpleNamespace
from typing import ClassVar

import pytest
from tensorrt_modules import bindings_versions, engine_key, missing, run_python
from tiny_graphs import frames, inputs_for, tiny_spec

from dinov2_ros.export.engine_build import build_engine, build_serialized_engine, plan_build
from dinov2_ros.runtime.backends.tensorrt import loader as loader_module
from dinov2_ros.runtime.backends.tensorrt import runner as runner_module
from dinov2_ros.runtime.backends.tensorrt.engine_cache import TimingCacheFile
from dinov2_ros.runtime.backends.tensorrt.loader import (
    PRECISIONS,
    EngineLoader,
    UnsupportedTensorRTError,
    parse_version,
)
from dinov2_ros.runtime.backends.tensorrt.runner import RUNTIME_API, TensorRTRunner

VERSIONS = bindings_versions()
SUPPORTED = [v for v in VERSIONS if parse_version(v) >= (10, 0)]
ERROR_PATH_ONLY = {"OnnxParser.num_errors", "OnnxParser.get_error"}  # read when parsing fails

# what a constructor or method returns, by the TensorRT class it is documented to return
RETURNS = {
    "Logger": "Logger",
    "Builder": "Builder",
    "OnnxParser": "OnnxParser",
    "Builder.create_network": "INetworkDefinition",
    "Builder.create_builder_config": "IBuilderConfig",
    "Builder.create_optimization_profile": "IOptimizationProfile",
    "IBuilderConfig.create_timing_cache": "ITimingCache",
    "IBuilderConfig.get_timing_cache": "ITimingCache",
    "INetworkDefinition.get_layer": "ILayer",
    "ILayer.get_output": "ITensor",
    "Runtime": "Runtime",
    "Runtime.deserialize_cuda_engine": "ICudaEngine",
    "ICudaEngine.create_execution_context": "IExecutionContext",
}


class Recorder:
    """Stands in for `tensorrt` and everything reached from it, recording each dotted name touched.

    An object made by a constructor or method is named by its TensorRT class (`Builder.create_network`
    gives an INetworkDefinition), so names read like the bindings' API. Values are chosen so every
    branch of the weakly typed route runs: one layer, a NORMALIZATION layer, one output, parse succeeds.
    """

    def __init__(self, log: set[str], prefix: str, callee: str = "", values=None, args=()) -> None:
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_callee", callee)
        object.__setattr__(self, "_values", values or {})  # callee -> function giving its concrete result
        object.__setattr__(self, "_args", args)

    def _name(self, attribute: str) -> str:
        return f"{self._prefix}.{attribute}" if self._prefix else attribute

    def __getattr__(self, attribute: str):
        name = self._name(attribute)
        self._log.add(name)
        if name == "IProgressMonitor":  # subclassed by the build code: a class is needed

            class IProgressMonitor:
                def __init__(self) -> None:
                    pass

            return IProgressMonitor
        if name == "ILogger":  # subclassed by trt_logger, which reads its Severity members

            class ILogger:
                Severity = Recorder(self._log, "ILogger.Severity")

                def __init__(self) -> None:
                    pass

            return ILogger
        return Recorder(self._log, name, callee=name, values=self._values)

    def __setattr__(self, attribute: str, value) -> None:
        self._log.add(self._name(attribute))

    def __call__(self, *args, **kwargs):
        if self._callee in self._values:
            return self._values[self._callee](*args)
        kind = RETURNS.get(self._callee, f"<result of {self._callee}>")
        return Recorder(self._log, kind, values=self._values, args=args)

    def __int__(self) -> int:
        return 0

    def __index__(self) -> int:
        return 1

    def __eq__(self, other) -> bool:
        return True

    __hash__ = object.__hash__

    def __bytes__(self) -> bytes:
        return b"serialised engine"


class RecordingTensorRT(Recorder):
    def __init__(self, log: set[str], version: str, values=None) -> None:
        super().__init__(log, "", values=values)
        object.__setattr__(self, "__version__", version)

    def __getattribute__(self, attribute: str):
        if attribute == "__version__":
            object.__getattribute__(self, "_log").add("__version__")
        return object.__getattribute__(self, attribute)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("version", SUPPORTED)
def test_build_touches_exactly_what_its_plan_lists(exported, monkeypatch, tmp_path, version, precision):
    spec = tiny_spec()
    _, path = exported(spec)
    touched: set[str] = set()
    monkeypatch.setitem(sys.modules, "tensorrt", RecordingTensorRT(touched, version))
    timing = TimingCacheFile(tmp_path, engine_key())
    engine = build_serialized_engine(path, spec, precision, 2, 1 << 20, opt_batch=1, timing_cache=timing)
    assert engine == b"serialised engine"
    assert timing.read() == b"serialised engine", "the builder's timing cache is stored (the stand-in's bytes)"
    touched, planned = leaves(touched), leaves(plan_build(version, precision).api)
    assert touched - planned == set(), "touched but not in the plan"
    assert planned - touched <= ERROR_PATH_ONLY, "planned but never touched"
    assert {"IBuilderConfig.clear_flag", "BuilderFlag.TF32"} <= touched, "TF32 (on by default) is cleared"


def leaves(names) -> set[str]:
    """Dotted names without those that only lead to another ("BuilderFlag" of "BuilderFlag.FP16"), and
    without the import system's dunders (`import tensorrt` reads `__spec__`)."""
    names = {name for name in names if not name.startswith("__") or name == "__version__"}
    return {name for name in names if not any(other.startswith(name + ".") for other in names)}


class HostOnlyCudart:
    """cuda-python's runtime API without a GPU: "device" memory is host memory, every call succeeds.

    Stands in for CUDA, which cannot run here; copies really copy, so the backend's buffer handling runs.
    """

    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self) -> None:
        self.buffers = []

    def cudaDriverGetVersion(self):
        return 0, 12060

    def cudaRuntimeGetVersion(self):
        return 0, 12090

    def cudaGetDeviceCount(self):
        return 0, 1

    def cudaGetDevice(self):
        return 0, 0

    def cudaGetDeviceProperties(self, device):
        return 0, SimpleNamespace(name=b"host-only stand-in", major=8, minor=7, multiProcessorCount=16)

    def cudaStreamCreate(self):
        return 0, 1

    def cudaMallocHost(self, nbytes):
        self.buffers.append(ctypes.create_string_buffer(nbytes))
        return 0, ctypes.addressof(self.buffers[-1])

    cudaMalloc = cudaMallocHost

    def cudaMemcpyAsync(self, target, source, nbytes, kind, stream):
        ctypes.memmove(target, source, nbytes)
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    cudaFree = cudaFreeHost = cudaStreamDestroy = cudaStreamSynchronize


@pytest.mark.parametrize("version", SUPPORTED)
def test_backend_touches_only_what_runtime_api_and_the_plan_list(exported, monkeypatch, tmp_path, version):
    """An engine built (recording stand-in) into the cache, loaded and run on one batch end to end."""
    spec = tiny_spec()
    _, path = exported(spec)
    batch = 2
    tensors = {tensor.name: tensor for tensor in (*spec.input_specs(), *spec.output_specs())}
    values = {
        "nptype": lambda dtype: tensors[dtype._args[0]].dtype.type,  # get_tensor_dtype(name) -> name's dtype
        "IExecutionContext.get_tensor_shape": lambda name: (batch, *tensors[name].shape[1:]),
    }
    touched: set[str] = set()
    monkeypatch.setitem(sys.modules, "tensorrt", RecordingTensorRT(touched, version, values))
    monkeypatch.setattr(loader_module, "import_cudart", HostOnlyCudart)
    monkeypatch.setattr(runner_module, "import_cudart", HostOnlyCudart)
    loader = EngineLoader(path, spec, max_batch=batch, cache_dir=tmp_path)
    build_engine(loader)
    with TensorRTRunner(loader) as backend:
        outputs = backend.infer(inputs_for(spec, frames("random", spec, batch)))
    assert {name: array.shape for name, array in outputs.items()} == {
        tensor.name: (batch, *tensor.shape[1:]) for tensor in spec.output_specs()
    }
    touched, planned = leaves(touched), leaves([*RUNTIME_API, *plan_build(version, "fp16").api])
    assert touched - planned == set(), "touched but in neither RUNTIME_API nor the build plan"
    assert leaves(RUNTIME_API) - touched == set(), "in RUNTIME_API but never touched"


def test_build_refuses_a_graph_the_version_cannot_parse_before_touching_the_builder(exported, monkeypatch, tmp_path):
    import onnx

    spec = tiny_spec()
    _, path = exported(spec)
    model = onnx.load(path)
    next(entry for entry in model.opset_import if entry.domain == "").version = 21
    too_new = tmp_path / "opset21.onnx"
    onnx.save(model, too_new)
    touched: set[str] = set()
    monkeypatch.setitem(sys.modules, "tensorrt", RecordingTensorRT(touched, "10.3.0"))
    with pytest.raises(UnsupportedTensorRTError, match=r"cannot be built with TensorRT 10\.3\.0: opset 21"):
        build_serialized_engine(too_new, spec, "fp16", max_batch=2, workspace_bytes=1 << 20)
    assert "Builder" not in touched


CHECK_API = """
import json, sys, tensorrt
names = json.loads(sys.argv[1]) if len(sys.argv) > 1 else json.loads({names!r})
absent = []
for name in names:
    owner = tensorrt
    for part in name.split("."):
        if not hasattr(owner, part):
            absent.append(name)
            break
        owner = getattr(owner, part)
print(json.dumps({{"version": tensorrt.__version__, "absent": absent}}))
"""


def real_api(version: str, names) -> dict:
    reason = missing(version)
    if reason:
        pytest.skip(reason)
    result = run_python(CHECK_API.format(names=json.dumps(sorted(set(names)))), version=version)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.subprocess
@pytest.mark.parametrize("version", SUPPORTED)
def test_real_bindings_have_everything_the_build_and_run_code_use(version):
    names = [*RUNTIME_API, *(name for precision in PRECISIONS for name in plan_build(version, precision).api)]
    found = real_api(version, names)
    assert found["version"] == version
    assert found["absent"] == []


@pytest.mark.subprocess
@pytest.mark.parametrize("version", [v for v in VERSIONS if v.startswith("11.")])
def test_weak_typing_is_gone_in_tensorrt_11(version):
    """What the old fp16 build used is absent in 11.x: the checks above can see a missing name."""
    weak = ["BuilderFlag.FP16", "BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "ILayer.precision", "ILayer.set_output_type"]
    found = real_api(version, weak)
    assert found["version"] == version
    assert found["absent"] == weak
    assert not plan_build(version, "fp16").pin_fp32_layers


@pytest.mark.subprocess
def test_tensorrt_8_6_bindings_are_refused_by_version():
    found = real_api("8.6.1", ["__version__"])
    assert found["version"] == "8.6.1"
    with pytest.raises(UnsupportedTensorRTError, match="TensorRT 10 or newer"):
        plan_build(found["version"], "fp16")


BACKEND = """
from dinov2_ros.export.engine_build import build_engine
from dinov2_ros.runtime.backends.tensorrt.loader import EngineLoader
try:
    build_engine(EngineLoader({path!r}))
except Exception as error:
    print(type(error).__name__, error)
"""


@pytest.mark.parametrize(
    ("version", "top_k", "expected"),
    [
        ("8.6.1", 5, "UnsupportedTensorRTError TensorRT 8.6.1 is not supported"),
        ("10.16.0.72", 3840, "ValueError top_k 3840 is more than TensorRT 10.16.0.72's TopK takes (K <= 3839)"),
    ],
)
def test_backend_refuses_before_touching_cuda(exported, tmp_path, version, top_k, expected):
    """The real bindings (stub libraries, no cuda-python on the path): refused by version or top_k first."""
    import dataclasses

    import onnx

    from dinov2_ros.export.camera_graph import set_metadata
    from dinov2_ros.runtime.graph_file import SPEC_KEY

    reason = missing(version)
    if reason:
        pytest.skip(reason)
    spec = tiny_spec()
    _, path = exported(spec)
    model = onnx.load(path)
    set_metadata(model, {SPEC_KEY: dataclasses.replace(spec, top_k=top_k).to_json()})
    onnx.save(model, tmp_path / "graph.onnx")
    result = run_python(BACKEND.format(path=str(tmp_path / "graph.onnx")), version=version)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(expected), result.stdout


FORWARDING = """
import logging, tensorrt
from dinov2_ros.runtime.backends.tensorrt.trt_logger import tensorrt_logger
records = []
handler = logging.Handler()
handler.emit = lambda record: records.append((record.name, record.levelname, record.getMessage()))
logging.getLogger("dinov2_ros").addHandler(handler)
logging.getLogger("dinov2_ros").setLevel(logging.DEBUG)
logger = tensorrt_logger(tensorrt)
assert isinstance(logger, tensorrt.ILogger) and tensorrt_logger(tensorrt) is logger
for severity in ("ERROR", "WARNING", "INFO"):
    logger.log(getattr(tensorrt.ILogger.Severity, severity), "a " + severity.lower() + " line")
print(records)
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("version", SUPPORTED)
def test_tensorrt_messages_reach_python_logging_through_one_logger(version):
    """The real bindings' ILogger, subclassed: TensorRT's lines go to the package's logging (the node's
    log), its INFO at DEBUG, instead of a second trt.Logger printing to stderr."""
    reason = missing(version)
    if reason:
        pytest.skip(reason)
    result = run_python(FORWARDING, version=version)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    name = "dinov2_ros.runtime.backends.tensorrt.trt"
    assert result.stdout.strip() == str(
        [
            (name, "ERROR", "TensorRT: a error line"),
            (name, "WARNING", "TensorRT: a warning line"),
            (name, "DEBUG", "TensorRT: a info line"),
        ]
    )


class CountingCudart(HostOnlyCudart):
    """HostOnlyCudart that counts what is allocated and freed (CUDA cannot run here)."""

    freed: ClassVar[list[int]] = []

    def _free(self, pointer):
        CountingCudart.freed.append(pointer)
        return (0,)

    cudaFree = cudaFreeHost = _free


def test_a_runner_that_fails_part_way_frees_what_it_allocated(exported, monkeypatch, tmp_path):
    """TensorRT refuses the address of the last output: the constructor raises, and every pinned host
    and device buffer it had allocated is freed (a node that retries must not leak them)."""
    spec = tiny_spec()
    _, path = exported(spec)
    last = spec.output_specs()[-1].name
    values = {
        "nptype": lambda dtype: {t.name: t.dtype.type for t in (*spec.input_specs(), *spec.output_specs())}[
            dtype._args[0]
        ],
        "IExecutionContext.set_tensor_address": lambda name, pointer: name != last,
    }
    monkeypatch.setitem(sys.modules, "tensorrt", RecordingTensorRT(set(), "10.3.0", values))
    monkeypatch.setattr(loader_module, "import_cudart", HostOnlyCudart)
    monkeypatch.setattr(runner_module, "import_cudart", CountingCudart)
    CountingCudart.freed = []
    loader = EngineLoader(path, spec, max_batch=2, cache_dir=tmp_path)
    build_engine(loader)
    with pytest.raises(RuntimeError, match=f"TensorRT refused the device address of tensor '{last}'"):
        TensorRTRunner(loader)
    tensors = len(spec.input_specs()) + len(spec.output_specs())
    assert len(CountingCudart.freed) == 2 * tensors, "a host and a device buffer per tensor, all freed"


class OtherRuntimeCudart(HostOnlyCudart):
    """The same driver and GPU, another cuda-python (its own CUDA runtime 12.6 instead of 12.9)."""

    def cudaRuntimeGetVersion(self):
        return 0, 12060


@pytest.mark.parametrize("version", ["10.3.0", "10.16.0.72"])
def test_engines_of_two_tensorrt_versions_share_a_directory_and_cuda_python_does_not_rebuild(
    exported, monkeypatch, tmp_path, version
):
    """Each engine file is named by its key: a JetPack's TensorRT and a desktop's in one graph_dir keep
    their own engines; cuda-python's CUDA runtime is no part of the key; the profile is tuned for
    opt_batch; the timing cache is kept beside the engines."""
    spec = tiny_spec()
    _, path = exported(spec)
    monkeypatch.setattr(loader_module, "import_cudart", HostOnlyCudart)
    names = {}
    for other in ("10.0.1", version):
        monkeypatch.setitem(sys.modules, "tensorrt", RecordingTensorRT(set(), other))
        loader = EngineLoader(path, spec, max_batch=4, cache_dir=tmp_path, opt_batch=2)
        build_engine(loader)
        names[other] = loader.name
    assert names["10.0.1"] != names[version]
    assert sorted(p.name for p in tmp_path.glob("*.engine")) == sorted(f"{n}.engine" for n in names.values())
    assert len(list(tmp_path.glob("timing-*.cache"))) == 2, "one timing cache per TensorRT version"
    assert "images:1x60x80x3/2x60x80x3/4x60x80x3" in loader.key().shapes
    monkeypatch.setattr(loader_module, "import_cudart", OtherRuntimeCudart)
    again = EngineLoader(path, spec, max_batch=4, cache_dir=tmp_path, opt_batch=2)
    assert again.name == names[version]
    assert again.cache.load(again.name, again.key(), lambda data: data)[1] == "", "found, not rebuilt"
