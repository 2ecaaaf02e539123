"""Export a PerceptionGraph to one ONNX file, and refuse ONNX files that were not made for the caller.

torch exports the camera-independent core once (`export_core`); a camera's graph is that core with
the camera's ONNX ends (`compose_camera_graph`, no torch). The file carries its GraphSpec and the
package version in `metadata_props`, so a backend can tell a stale or foreign file from the one it
expects before running it. Static H and W, dynamic batch, opset >= 17 (LayerNormalization stays one
op, which TensorRT keeps in fp32).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import mmap
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dinov2_ros import __version__
from dinov2_ros.atomic_file import atomic_write
from dinov2_ros.runtime.graph_spec import CORE_INPUT, GraphSpec

if TYPE_CHECKING:
    from dinov2_ros.runtime.perception_graph import PerceptionGraph

LOG = logging.getLogger(__name__)

SPEC_KEY = "dinov2_ros.graph_spec"
CORE_SPEC_KEY = "dinov2_ros.core_spec"  # a stored core's GraphSpec (`GraphSpec.core()`), instead of SPEC_KEY
CORE_DIGEST_KEY = "dinov2_ros.core_digest"  # sha256 of a core's graph as written (`graph_digest`)
VERSION_KEY = "dinov2_ros.version"
PRECISION_KEY = "dinov2_ros.precision"
CLASS_NAMES_KEY = "dinov2_ros.class_names"  # JSON list: a trained detection head's class names by id
PROVENANCE_KEY = "dinov2_ros.provenance"  # JSON: what the weights were, by content (artifact_store.Provenance)
MIN_OPSET = 17
DEFAULT_OPSET = 18
MAX_BATCH = 64
# the steps torch.onnx.export prints, in order; this module's check of the file is the last step
_TORCH_ONNX_STEPS = (
    "Obtain model graph",
    "Run decompositions",
    "Translate the graph into ONNX",
    "Optimize the ONNX graph",
)
CORE_STEPS = len(_TORCH_ONNX_STEPS) + 1  # the core is written as the step after torch.onnx's
EXPORT_STEPS = CORE_STEPS + 1  # the last: the camera's graph composed from the core, and checked
# libraries that log one INFO line per initializer or constant while torch.onnx optimises the graph
_CHATTY_LOGGERS = ("onnx_ir", "onnxscript")
# warnings every export prints that concern nothing the graph uses: torchvision's ops (never used
# here, never installed) and a deprecation inside torch.export's own pytree code
_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"
_IRRELEVANT_WARNING = "torchvision is not installed"
_IRRELEVANT_FUTURE_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
# onnxruntime.quantization's advice before every quantize_dynamic: its pre-processing (shape inference,
# graph optimisation) is for static quantisation of models without shapes; exported graphs have them
_PRE_PROCESSING_HINT = "Please consider to run pre-processing before quantization"


class ForeignGraphError(ValueError):
    """An ONNX file that is not the graph the caller expects (no metadata, other spec or version).

    `fact` is the message without its advice, for a store lookup that goes on to export what is
    missing anyway (its skip line must not tell the user to do it)."""

    def __init__(self, message: str, fact: str | None = None) -> None:
        super().__init__(message)
        self.fact = fact or message


class DamagedCoreError(ForeignGraphError):
    """A stored core whose graph no longer matches the digest it was written with."""


def export_graph(
    graph: PerceptionGraph,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    class_names: Sequence[str] | None = None,
    provenance: str | None = None,
) -> Path:
    """Export `graph` (a PerceptionGraph) to `path`, written atomically; returns the path.

    `export_core` then `compose_camera_graph`, with the core in a scratch folder (GraphSource keeps
    it in the artifact store instead, for the next camera size). See those for the checks.
    """
    with tempfile.TemporaryDirectory(prefix="dinov2_ros_core_") as scratch:
        core = export_core(graph, Path(scratch) / "core.onnx", opset, class_names, provenance)
        return compose_camera_graph(graph.spec, core, path, check)


def export_core(
    graph: PerceptionGraph,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    class_names: Sequence[str] | None = None,
    provenance: str | None = None,
) -> Path:
    """Export `graph.core` (PerceptionCore: encoder and heads, the same for every camera size) to
    `path`, written atomically, with `graph.spec.core()` in its metadata; returns the path.

    RuntimeError, before anything is saved, when torch.onnx wrote another opset than `opset` (it keeps
    18 when asked for 17). `class_names` (a trained head's, by class id) and `provenance`
    (artifact_store.Provenance JSON, what the weights were) go into the file and on into every
    graph composed from it, so a node names its classes without the head's checkpoint or torch.
    """
    import torch

    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (LayerNormalization), got {opset}; use {DEFAULT_OPSET}")
    spec: GraphSpec = graph.spec.core()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = _example_inputs(spec, batch=2, images=False)  # batch 1 would be specialised to a constant
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic_shapes = {CORE_INPUT: {0: batch}}
    if spec.exemplar:
        dynamic_shapes |= {"prototypes": None, "prototype_classes": None}
    LOG.info(
        "export: the core %s (encoder and heads, once per model and input size) to %s (opset %d) ...",
        spec.core_key,
        path,
        opset,
    )
    clock = _Stopwatch()
    with torch.no_grad(), quiet_onnx_tools(), contextlib.redirect_stdout(_ExporterSteps(sys.stdout, clock)):
        program = torch.onnx.export(
            graph.core.eval(),
            tuple(torch.from_numpy(array) for array in example.values()),
            input_names=list(example),
            output_names=list(graph.core.output_names),
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            verbose=True,  # prints its steps, which _ExporterSteps logs
        )
    model = program.model_proto
    written = graph_opset(model)
    if written != opset:
        raise RuntimeError(
            f"torch.onnx wrote opset {written} where opset {opset} was asked for (its version conversion "
            f"failed); nothing was saved. Export with --opset {written}: TensorRT >= 10 parses it (JetPack 6.1+, "
            "TensorRT 10.3); TensorRT 8.6 (JetPack 6.0) needs opset 17 and is not supported"
        )
    metadata = {
        CORE_SPEC_KEY: spec.to_json(),
        VERSION_KEY: __version__,
        PRECISION_KEY: "fp32",
        CORE_DIGEST_KEY: graph_digest(model),
    }
    if class_names is not None:
        metadata[CLASS_NAMES_KEY] = json.dumps(list(class_names))
    if provenance is not None:
        metadata[PROVENANCE_KEY] = provenance
    set_metadata(model, metadata)
    save_model_atomic(model, path)
    LOG.info(
        "export %d/%d: core written; %s and writing took %.1f s",
        CORE_STEPS,
        EXPORT_STEPS,
        _TORCH_ONNX_STEPS[-1].lower(),
        clock.lap(),
    )
    return path


def compose_camera_graph(
    spec: GraphSpec, core_path: str | os.PathLike, path: str | os.PathLike, check: bool = True
) -> Path:
    """The graph for `spec`'s camera from a stored core (`export_core` of the same model and input
    size) and the camera's ONNX ends (`runtime.graph_ends`), written atomically to `path`. No torch.

    The graph keeps the core's metadata with `spec` as its GraphSpec. Checked with onnx.checker and,
    when `check`, run once in ONNX Runtime on batch 3 (the batch axis is dynamic, every value is
    finite) before it is stored. ForeignGraphError when `core_path` is not a core of `spec.core()`
    from this dinov2_ros version; DamagedCoreError when its graph is not what was written.
    """
    import onnx

    from dinov2_ros.runtime.graph_ends import compose_graph

    path = Path(path)
    clock = _Stopwatch()
    core, metadata = load_core(core_path, spec.core())
    model = compose_graph(spec, core)
    for core_only in (CORE_SPEC_KEY, CORE_DIGEST_KEY):  # the graph keeps the rest of the core's metadata
        del metadata[core_only]
    set_metadata(model, {SPEC_KEY: spec.to_json(), **metadata})
    onnx.checker.check_model(model, full_check=True)
    with atomic_write(path) as temporary:
        onnx.save_model(model, temporary)
        if check:
            _run_once(temporary, spec)
    LOG.info(
        "export %d/%d: %s from the core and the camera's ends (%.1f MB; composed and checked in %.1f s)",
        EXPORT_STEPS,
        EXPORT_STEPS,
        path,
        path.stat().st_size / 1e6,
        clock.lap(),
    )
    return path


def load_core(path: str | os.PathLike, expected: GraphSpec | None = None):
    """(ModelProto, metadata) of a stored core, its graph checked against the digest it was written
    with. ForeignGraphError as `load_graph_metadata`; DamagedCoreError when the graph differs."""
    import onnx

    _, metadata = load_graph_metadata(path, expected, key=CORE_SPEC_KEY)
    core = onnx.load(str(path))
    if metadata.get(CORE_DIGEST_KEY) != graph_digest(core):
        raise DamagedCoreError(
            f"the core {path} is damaged: its graph does not match the digest it was written with (a disk "
            "error or an interrupted copy)"
        )
    return core, metadata


class _Stopwatch:
    def __init__(self) -> None:
        self._last = time.monotonic()

    def lap(self) -> float:
        """Seconds since the previous lap (or the start)."""
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        return elapsed


class _ExporterSteps(io.TextIOBase):
    """torch.onnx's printed step lines ("[torch.onnx] Run decompositions...") as this module's log lines,
    numbered, with the time the step before took ("export 2/6: run decompositions ...; obtain model
    graph took 3.1 s"): an export takes 20-30 s, and these lines are its progress in the log. Other
    printed lines pass to `stream`."""

    def __init__(self, stream, clock: _Stopwatch) -> None:
        super().__init__()
        self._stream, self._clock, self._pending = stream, clock, ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            message = line.removeprefix("[torch.onnx] ")
            step = next((i for i, name in enumerate(_TORCH_ONNX_STEPS, 1) if message.startswith(name)), None)
            if step is None:
                self._stream.write(line + "\n")
            elif message.endswith("..."):  # a step starts; its end ("... ✅") is the next start
                name, since = _TORCH_ONNX_STEPS[step - 1].lower(), self._clock.lap()
                before = f"; {_TORCH_ONNX_STEPS[step - 2].lower()} took {since:.1f} s" if step > 1 else ""
                LOG.info("export %d/%d: %s ...%s", step, EXPORT_STEPS, name, before)
        return len(text)


@contextlib.contextmanager
def quiet_onnx_tools() -> Iterator[None]:
    """Hold the ONNX tool chain's INFO lines back while it runs; warnings and this package's lines pass,
    except three that every export prints about things the graph does not use.

    Under the CLI's INFO logging, torch.onnx's optimiser (onnx_ir, onnxscript) logs about a thousand
    lines per vits14 export, and onnxruntime.quantization one per tensor it leaves alone (and a
    warning advising pre-processing), through `logging.info` on the root logger. A filter on the
    root logger sees only such direct calls, not records propagated from named loggers. With DEBUG
    logging (`-v`) everything is shown.
    """
    if LOG.isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    root = logging.getLogger()

    def warnings_only(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and not record.getMessage().startswith(_PRE_PROCESSING_HINT)

    def relevant(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_IRRELEVANT_WARNING)

    registration = logging.getLogger(_REGISTRATION_LOGGER)
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    root.addFilter(warnings_only)
    registration.addFilter(relevant)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_IRRELEVANT_FUTURE_WARNING, category=FutureWarning)
            yield
    finally:
        registration.removeFilter(relevant)
        root.removeFilter(warnings_only)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def graph_opset(model) -> int:
    """The default-domain (ai.onnx) opset a model imports; ValueError when it imports none."""
    versions = [entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")]
    if not versions:
        raise ValueError("the ONNX model imports no ai.onnx opset")
    return max(versions)


def save_model_atomic(model, path: Path) -> None:
    """Write an ONNX model so that readers never see half a file."""
    import onnx

    with atomic_write(path) as temporary:
        onnx.save_model(model, temporary)


# ModelProto.metadata_props and StringStringEntryProto's key and value (onnx.proto field numbers)
_METADATA_FIELD, _KEY_FIELD, _VALUE_FIELD = 14, 1, 2


_NOT_WHOLE_ONNX = "not a whole ONNX file (truncated, damaged, or another kind of file)"


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata_props of an ONNX file, read from the protobuf wire format without parsing the graph.

    The graph (weights included) is skipped by its length, so reading the spec of a large exported
    graph costs a few small reads instead of parsing hundreds of MB. ValueError if it is not a whole ONNX file.
    """
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        metadata = {}
        for field, value in _protobuf_fields(data, 0, len(data)):
            if field == _METADATA_FIELD:
                entry = dict(_protobuf_fields(data, *value))
                key, text = entry.get(_KEY_FIELD, (0, 0)), entry.get(_VALUE_FIELD, (0, 0))
                metadata[bytes(data[slice(*key)]).decode()] = bytes(data[slice(*text)]).decode()
        return metadata


def _protobuf_fields(data, start: int, end: int) -> Iterator[tuple[int, tuple[int, int]]]:
    """(field number, (start, end) of its bytes) of each length-delimited field in data[start:end]."""
    position = start
    while position < end:
        tag, position = _varint(data, position)
        wire_type = tag & 7
        if wire_type == 0:
            _, position = _varint(data, position)
            continue
        if wire_type == 2:
            length, position = _varint(data, position)
            if position + length > end:
                raise ValueError(f"{_NOT_WHOLE_ONNX}: a protobuf field runs past its end")
            yield tag >> 3, (position, position + length)
            position += length
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"{_NOT_WHOLE_ONNX}: protobuf wire type {wire_type} at byte {position}")


def _varint(data, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError(f"{_NOT_WHOLE_ONNX}: a protobuf varint runs past its end")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def load_graph_spec(path: str | os.PathLike, expected: GraphSpec | None = None) -> GraphSpec:
    """Read the GraphSpec of an exported file, refusing foreign or stale files with ForeignGraphError."""
    return load_graph_metadata(path, expected)[0]


def load_graph_metadata(
    path: str | os.PathLike, expected: GraphSpec | None = None, key: str = SPEC_KEY
) -> tuple[GraphSpec, dict[str, str]]:
    """`load_graph_spec` and the file's whole metadata_props, from one read of the file.

    `key=CORE_SPEC_KEY` reads a stored core (`export_core`) instead of a camera's graph.
    """
    path = Path(path)
    what = "graph" if key == SPEC_KEY else "core"
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}; create it with `dinov2-ros export`")
    metadata = read_metadata(path)
    if key not in metadata:
        advice = ""
        if CORE_SPEC_KEY in metadata:
            found = "it is the camera-independent core that graphs are composed from (the store keeps cores in cores/)"
        elif SPEC_KEY in metadata:
            found = "it is a camera's graph, not the core that graphs are composed from"
        else:
            found, advice = "it was not exported by dinov2_ros", "; create the graphs with `dinov2-ros export`"
        fact = f"no '{key}' metadata: {found}"
        raise ForeignGraphError(f"{path} has {fact}{advice}", fact)
    version = metadata.get(VERSION_KEY)
    if version != __version__:
        stale = f"exported by dinov2_ros {version}, this is {__version__}"
        raise ForeignGraphError(f"{path} was {stale}; re-export it with `dinov2-ros export`", f"it was {stale}")
    spec = GraphSpec.from_json(metadata[key])
    if expected is not None and spec != expected:
        found, wanted = (spec.key, expected.key) if key == SPEC_KEY else (spec.core_key, expected.core_key)
        raise ForeignGraphError(
            f"{path} holds {what} '{found}' but '{wanted}' was expected; "
            "export the graph for this camera and model with `dinov2-ros export`"
        )
    return spec, metadata


def graph_class_names(path: str | os.PathLike) -> tuple[str, ...] | None:
    """The class names exported with a trained detection head, by class id; None when the file has none."""
    names = read_metadata(path).get(CLASS_NAMES_KEY)
    return None if names is None else tuple(json.loads(names))


def _example_inputs(spec: GraphSpec, batch: int, images: bool = True) -> dict[str, np.ndarray]:
    """Inputs of the graph for `spec` (camera `images`), or of its core (a normalised `model_input`)."""
    rng = np.random.default_rng(0)
    if images:
        inputs = {"images": rng.integers(0, 256, (batch, spec.camera_height, spec.camera_width, 3), dtype=np.uint8)}
    else:
        inputs = {CORE_INPUT: rng.standard_normal((batch, 3, spec.input_height, spec.input_width)).astype(np.float32)}
    if spec.exemplar:
        prototypes = rng.standard_normal((spec.max_prototypes, spec.embed_dim)).astype(np.float32)
        inputs["prototypes"] = prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True)
        inputs["prototype_classes"] = np.arange(spec.max_prototypes, dtype=np.int32)
    return inputs


def set_metadata(model, values: dict[str, str]) -> None:
    kept = [prop for prop in model.metadata_props if prop.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def _run_once(path: Path, spec: GraphSpec) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, _example_inputs(spec, batch=3))
    for output, expected in zip(outputs, spec.output_specs(), strict=True):
        if output.shape != (3, *expected.shape[1:]) or output.dtype != expected.dtype:
            raise RuntimeError(
                f"exported graph output '{expected.name}' has {output.dtype}{list(output.shape)}, expected "
                f"{expected.dtype}{[3, *expected.shape[1:]]}: the export is broken, please report it"
            )
        if not np.isfinite(output).all():
            raise RuntimeError(
                f"exported graph output '{expected.name}' has {np.count_nonzero(~np.isfinite(output))} non-finite "
                f"values of {output.size} on a test frame, so it was not stored: the weights hold NaN or inf, "
                "or the core is damaged; check the checkpoint, delete the core and export again"
            )


def graph_digest(model) -> str:
    """sha256 of a model's graph (weights included) as serialised: a core's integrity check."""
    import hashlib

    return "sha256:" + hashlib.sha256(model.graph.SerializeToString()).hexdigest()
