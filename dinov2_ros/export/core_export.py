"""torch's half of the export: the camera-independent core (encoder and heads) to one ONNX file.

torch exports the core once per model and input size (`export_core`); a camera's graph is that core
with the camera's ONNX ends (`camera_graph.compose_camera_graph`, no torch). Static H and W, dynamic
batch, opset >= 17 (LayerNormalization stays one op, which TensorRT keeps in fp32). The export's
steps are logged with their times, so the half minute it takes shows progress.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from dinov2_ros import __version__
from dinov2_ros.export.camera_graph import (
    CORE_STEPS,
    EXPORT_STEPS,
    TORCH_ONNX_STEPS,
    Stopwatch,
    compose_camera_graph,
    example_inputs,
    graph_digest,
    graph_opset,
    quiet_onnx_tools,
    save_model_atomic,
    set_metadata,
)
from dinov2_ros.model.perception_graph import PerceptionGraph
from dinov2_ros.runtime.graph_file import (
    CLASS_NAMES_KEY,
    CORE_DIGEST_KEY,
    CORE_SPEC_KEY,
    PRECISION_KEY,
    PROVENANCE_KEY,
    VERSION_KEY,
)
from dinov2_ros.runtime.graph_spec import CORE_INPUT, GraphSpec

LOG = logging.getLogger(__name__)

MIN_OPSET = 17
DEFAULT_OPSET = 18
MAX_BATCH = 64


def export_graph(
    graph: PerceptionGraph,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    class_names: Sequence[str] | None = None,
    provenance: str | None = None,
) -> Path:
    """Export `graph` (a PerceptionGraph) to `path`, written atomically; returns the path.

    `export_core` then `compose_camera_graph`, with the core in a scratch folder (GraphBuilder keeps
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
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (LayerNormalization), got {opset}; use {DEFAULT_OPSET}")
    spec: GraphSpec = graph.spec.core()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = example_inputs(spec, batch=2, images=False)  # batch 1 would be specialised to a constant
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic_shapes = {CORE_INPUT: {0: batch}}
    if spec.exemplar:
        dynamic_shapes |= {"prototypes": {0: batch}, "prototype_classes": {0: batch}}
    LOG.info(
        "export: the core %s (encoder and heads, once per model and input size) to %s (opset %d) ...",
        spec.core_key,
        path,
        opset,
    )
    clock = Stopwatch()
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
        TORCH_ONNX_STEPS[-1].lower(),
        clock.lap(),
    )
    return path


class _ExporterSteps(io.TextIOBase):
    """torch.onnx's printed step lines ("[torch.onnx] Run decompositions...") as this module's log lines,
    numbered, with the time the step before took ("export 2/6: run decompositions ...; obtain model
    graph took 3.1 s"): an export takes 20-30 s, and these lines are its progress in the log. Other
    printed lines pass to `stream`."""

    def __init__(self, stream, clock: Stopwatch) -> None:
        super().__init__()
        self._stream, self._clock, self._pending = stream, clock, ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            message = line.removeprefix("[torch.onnx] ")
            step = next((i for i, name in enumerate(TORCH_ONNX_STEPS, 1) if message.startswith(name)), None)
            if step is None:
                self._stream.write(line + "\n")
            elif message.endswith("..."):  # a step starts; its end ("... ✅") is the next start
                name, since = TORCH_ONNX_STEPS[step - 1].lower(), self._clock.lap()
                before = f"; {TORCH_ONNX_STEPS[step - 2].lower()} took {since:.1f} s" if step > 1 else ""
                LOG.info("export %d/%d: %s ...%s", step, EXPORT_STEPS, name, before)
        return len(text)
