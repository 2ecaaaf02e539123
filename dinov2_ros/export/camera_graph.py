"""The ONNX half of the export, without torch: a camera's graph from a stored core and the camera's ends,
checked before it is stored, and the helpers every ONNX file the exporter writes goes through.

A camera's graph is the core (`core_export.export_core`, once per model and input size) joined to the
camera's input and output ends (`graph_ends`), with the core's metadata and the camera's GraphSpec.
A robot without torch composes the sizes it meets from the stored core here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from dinov2_ros.atomic_file import atomic_write_folder
from dinov2_ros.export.graph_ends import compose_graph
from dinov2_ros.runtime.graph_file import (
    CORE_DIGEST_KEY,
    CORE_SPEC_KEY,
    SPEC_KEY,
    ForeignGraphError,
    external_data_path,
    load_graph_metadata,
)
from dinov2_ros.runtime.graph_spec import CORE_INPUT, GraphSpec

LOG = logging.getLogger(__name__)

# the steps torch.onnx.export prints, in order (core_export logs them); then the core is written, and
# last the camera's graph is composed from it and checked
TORCH_ONNX_STEPS = (
    "Obtain model graph",
    "Run decompositions",
    "Translate the graph into ONNX",
    "Optimize the ONNX graph",
)
CORE_STEPS = len(TORCH_ONNX_STEPS) + 1
EXPORT_STEPS = CORE_STEPS + 1
# libraries that log one INFO line per initializer or constant while torch.onnx optimises the graph
_CHATTY_LOGGERS = ("onnx_ir", "onnxscript")
# warnings every export prints that concern nothing the graph uses: torchvision's ops (never used
# here, never installed) and a deprecation inside torch.export's own pytree code
_REGISTRATION_LOGGER = "torch.onnx._internal.exporter._registration"
_IRRELEVANT_WARNING = "torchvision is not installed"
_IRRELEVANT_FUTURE_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
# weights above which a graph is written with external data (`save_model`): below protobuf's 2 GiB with
# room for the graph itself; of the released models only vitg14 passes it (vitl14 fp32: 1.2 GB)
EXTERNAL_DATA_ABOVE = 3 << 29
# onnxruntime.quantization's advice before every quantize_dynamic and quantize_static: its
# pre-processing (shape inference, graph optimisation) is for models without shapes; exported graphs have them
_PRE_PROCESSING_HINT = (
    "Please consider to run pre-processing before quantization",
    "Please consider pre-processing before",
)


class DamagedCoreError(ForeignGraphError):
    """A stored core whose graph no longer matches the digest it was written with."""


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
    path = Path(path)
    clock = Stopwatch()
    core, metadata = load_core(core_path, spec.core())
    model = compose_graph(spec, core)
    onnx.load_external_data_for_model(model, str(Path(core_path).parent))  # the core's weights, into the graph
    for core_only in (CORE_SPEC_KEY, CORE_DIGEST_KEY):  # the graph keeps the rest of the core's metadata
        del metadata[core_only]
    set_metadata(model, {SPEC_KEY: spec.to_json(), **metadata})

    def checked(written: Path) -> None:
        onnx.checker.check_model(str(written), full_check=True)  # from the file: graphs over 2 GiB too
        if check:
            _run_once(written, spec)

    save_model_atomic(model, path, checked)
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
    with; weights kept in a data file stay there (`onnx.load_external_data_for_model` reads them in).
    ForeignGraphError as `load_graph_metadata`; DamagedCoreError when the graph differs or its data
    file is missing."""
    _, metadata = load_graph_metadata(path, expected, key=CORE_SPEC_KEY)
    core = onnx.load(str(path), load_external_data=False)
    try:
        digest = graph_digest(core, Path(path).parent)
    except (OSError, onnx.checker.ValidationError) as error:  # onnx's word for a missing data file
        raise DamagedCoreError(
            f"the core {path} is damaged: its weights file cannot be read ({error}); copy "
            f"{external_data_path(path).name} with it"
        ) from error
    if metadata.get(CORE_DIGEST_KEY) != digest:
        raise DamagedCoreError(
            f"the core {path} is damaged: its graph does not match the digest it was written with (a disk "
            "error or an interrupted copy)"
        )
    return core, metadata


class Stopwatch:
    def __init__(self) -> None:
        self._last = time.monotonic()

    def lap(self) -> float:
        """Seconds since the previous lap (or the start)."""
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        return elapsed


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


def save_model(model, path: Path) -> None:
    """Write an ONNX model to `path`, its weights to `graph_file.external_data_path(path)` when they
    pass EXTERNAL_DATA_ABOVE (protobuf cannot serialise a message over 2 GiB: vitg14's 4.5 GB fp32 and
    2.3 GB fp16 graphs). Then the model in memory has given its weights to that file (onnx.save_model
    moves them); load it again to use them."""
    external = sum(tensor.ByteSize() for tensor in model.graph.initializer) > EXTERNAL_DATA_ABOVE
    location = external_data_path(path).name
    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True, location=location)


def save_model_atomic(model, path: Path, check: Callable[[Path], None] | None = None) -> None:
    """`save_model` so that readers never see half a graph: written in a scratch folder beside `path`,
    checked there by `check(written path)` where given, then moved into place (its data file first).
    A data file left from an earlier graph of that name that had one is removed."""
    with atomic_write_folder(path) as folder:
        save_model(model, folder / path.name)
        if check is not None:
            check(folder / path.name)
        external = (folder / external_data_path(path).name).is_file()
    if not external:
        external_data_path(path).unlink(missing_ok=True)


def example_inputs(spec: GraphSpec, batch: int, images: bool = True) -> dict[str, np.ndarray]:
    """Inputs of the graph for `spec` (camera `images`), or of its core (a normalised `model_input`)."""
    rng = np.random.default_rng(0)
    if images:
        inputs = {"images": rng.integers(0, 256, (batch, spec.camera_height, spec.camera_width, 3), dtype=np.uint8)}
    else:
        inputs = {CORE_INPUT: rng.standard_normal((batch, 3, spec.input_height, spec.input_width)).astype(np.float32)}
    if spec.exemplar:
        prototypes = rng.standard_normal((batch, spec.max_prototypes, spec.embed_dim)).astype(np.float32)
        inputs["prototypes"] = prototypes / np.linalg.norm(prototypes, axis=2, keepdims=True)
        inputs["prototype_classes"] = np.tile(np.arange(spec.max_prototypes, dtype=np.int32), (batch, 1))
    return inputs


def set_metadata(model, values: dict[str, str]) -> None:
    kept = [prop for prop in model.metadata_props if prop.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def _run_once(path: Path, spec: GraphSpec) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, example_inputs(spec, batch=3))
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


def graph_digest(model, base_dir: str | os.PathLike | None = None) -> str:
    """sha256 of a model's graph, weights included, as serialised field by field (each node, initializer,
    input, ...: one message of 2 GiB and more cannot be serialised whole): a core's integrity check.

    The same however the model is stored: weights still in a data file (`onnx.load(...,
    load_external_data=False)`) are read from `base_dir`, the file's folder, one tensor at a time, so
    a graph of any size is hashed without holding its weights; `data_location: DEFAULT`, which
    onnx.load sets on each tensor it read from a data file, is cleared first (absent, it means the same).
    OSError or onnx.checker.ValidationError when a data file cannot be read."""
    for tensor in _tensors(model.graph):
        if tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.DEFAULT:
            tensor.ClearField("data_location")
    digest = hashlib.sha256()
    for field, value in model.graph.ListFields():
        digest.update(field.name.encode())
        if isinstance(value, str):  # name, doc_string
            digest.update(value.encode())
        else:  # each other field of a GraphProto is a list of messages
            for item in value:
                digest.update(_with_weights(item, base_dir).SerializeToString())
    return "sha256:" + digest.hexdigest()


def _with_weights(message, base_dir):
    """`message` (a graph's node, initializer, input, ...) with the weights of its tensors that lie in a
    data file read in (a copy), or `message` itself when it has none."""
    if not any(uses_external_data(tensor) for tensor in _own_tensors(message)):
        return message
    copy = type(message)()
    copy.CopyFrom(message)
    for tensor in _own_tensors(copy):
        if uses_external_data(tensor):
            load_external_data_for_tensor(tensor, str(base_dir or "."))
            tensor.ClearField("data_location")
            del tensor.external_data[:]
    return copy


def _tensors(graph) -> Iterator:
    """The graph's initializers and the tensors of its nodes' attributes (Constants): what external data holds."""
    yield from graph.initializer
    for node in graph.node:
        yield from _own_tensors(node)


def _own_tensors(message) -> Iterator:
    """A tensor itself; a node's attribute tensors; nothing for other messages."""
    if isinstance(message, onnx.TensorProto):
        yield message
    elif isinstance(message, onnx.NodeProto):
        for attribute in message.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
