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
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from dinov2_ros.atomic_file import atomic_write
from dinov2_ros.export.graph_ends import compose_graph
from dinov2_ros.runtime.graph_file import (
    CORE_DIGEST_KEY,
    CORE_SPEC_KEY,
    SPEC_KEY,
    ForeignGraphError,
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
# onnxruntime.quantization's advice before every quantize_dynamic: its pre-processing (shape inference,
# graph optimisation) is for static quantisation of models without shapes; exported graphs have them
# onnxruntime.quantization's advice (quantize_dynamic's and quantize_static's wording)
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
    _, metadata = load_graph_metadata(path, expected, key=CORE_SPEC_KEY)
    core = onnx.load(str(path))
    if metadata.get(CORE_DIGEST_KEY) != graph_digest(core):
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


def save_model_atomic(model, path: Path) -> None:
    """Write an ONNX model so that readers never see half a file."""
    with atomic_write(path) as temporary:
        onnx.save_model(model, temporary)


def example_inputs(spec: GraphSpec, batch: int, images: bool = True) -> dict[str, np.ndarray]:
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


def graph_digest(model) -> str:
    """sha256 of a model's graph (weights included) as serialised: a core's integrity check."""
    return "sha256:" + hashlib.sha256(model.graph.SerializeToString()).hexdigest()
