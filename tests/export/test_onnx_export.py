"""The exported file: one checked ONNX graph with static H/W, dynamic batch, the GraphSpec in its metadata,
and refusal of foreign or stale files."""

from __future__ import annotations

import logging
import re

import onnx
import pytest
from tiny_graphs import frames, inputs_for, tiny_graph, tiny_spec

from dinov2_ros import __version__
from dinov2_ros.export.camera_graph import set_metadata
from dinov2_ros.export.core_export import export_graph
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dinov2_ros.runtime.graph_file import (
    PRECISION_KEY,
    SPEC_KEY,
    VERSION_KEY,
    ForeignGraphError,
    load_graph_spec,
    read_metadata,
)
from dinov2_ros.runtime.graph_spec import GraphSpec


def test_export_is_one_checked_graph_with_static_hw_and_dynamic_batch(exported):
    spec = tiny_spec()
    _, path = exported(spec)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")) >= 17
    ops = {node.op_type for node in model.graph.node}
    assert "LayerNormalization" in ops  # kept whole, so TensorRT can pin it to fp32
    for node in model.graph.node:
        if node.op_type == "Resize":
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attributes.get("antialias", 0) == 0
    inputs = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs["images"][1:] == [spec.camera_height, spec.camera_width, 3]
    assert isinstance(inputs["images"][0], str)  # symbolic batch
    assert [o.name for o in model.graph.output] == ["depth", "detections", "masks", "features"]
    with OnnxRuntimeBackend(path, spec) as backend:
        for batch in (1, 4):
            outputs = backend.infer(inputs_for(spec, frames("random", spec, batch)))
            assert {name: a.shape[0] for name, a in outputs.items()} == dict.fromkeys(outputs, batch)


def test_metadata_identifies_the_graph(exported):
    spec = tiny_spec()
    _, path = exported(spec)
    metadata = read_metadata(path)
    assert GraphSpec.from_json(metadata[SPEC_KEY]) == spec
    assert metadata[VERSION_KEY] == __version__
    assert metadata[PRECISION_KEY] == "fp32"
    assert load_graph_spec(path, expected=spec) == spec


def test_metadata_is_read_from_the_wire_format_as_onnx_reads_it(exported, tmp_path):
    _, path = exported(tiny_spec())
    model = onnx.load(path)
    set_metadata(model, {"unicode": "Tiefe in m \u00b1 1 %", "empty": ""})
    onnx.save(model, tmp_path / "more.onnx")
    assert read_metadata(tmp_path / "more.onnx") == {p.key: p.value for p in model.metadata_props}

    for name, content in [
        ("text.onnx", b"this is not a model\n"),
        ("empty.onnx", b""),
        ("cut.onnx", path.read_bytes()[:999]),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError):
            load_graph_spec(tmp_path / name)


def test_opset_below_17_is_refused(tmp_path):
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export_graph(tiny_graph(tiny_spec()), tmp_path / "old.onnx", opset=16)


def test_foreign_and_stale_files_are_refused(exported, tmp_path):
    spec = tiny_spec()
    _, path = exported(spec)
    model = onnx.load(path)

    foreign = tmp_path / "foreign.onnx"
    stripped = onnx.load(path)
    del stripped.metadata_props[:]
    onnx.save(stripped, foreign)
    with pytest.raises(ForeignGraphError, match="was not exported by dinov2_ros"):
        OnnxRuntimeBackend(foreign)

    stale = tmp_path / "stale.onnx"
    set_metadata(model, {VERSION_KEY: "0.0.1"})
    onnx.save(model, stale)
    with pytest.raises(ForeignGraphError, match=r"exported by dinov2_ros 0.0.1, this is .*re-export"):
        OnnxRuntimeBackend(stale)

    other_camera = tiny_spec(camera_width=96)
    message = f"holds graph {spec.key!r} but {other_camera.key!r} was expected"
    with pytest.raises(ForeignGraphError, match=re.escape(message)):
        OnnxRuntimeBackend(path, other_camera)

    with pytest.raises(FileNotFoundError, match="dinov2-ros export"):
        load_graph_spec(tmp_path / "missing.onnx")


@pytest.mark.export
def test_export_keeps_the_onnx_tool_chain_quiet(tmp_path, caplog):
    levels = {name: logging.getLogger(name).level for name in ("onnx_ir", "onnxscript")}
    with caplog.at_level(logging.INFO):
        export_graph(tiny_graph(tiny_spec()), tmp_path / "quiet.onnx", check=False)
    assert "export: the core core-tiny-" in caplog.text  # this package's own lines stay
    chatty = [r for r in caplog.records if r.levelno < logging.WARNING and not r.name.startswith("dinov2_ros")]
    assert not chatty, f"{len(chatty)} INFO lines from the tool chain, e.g. {chatty[0].name}: {chatty[0].getMessage()}"
    assert {name: logging.getLogger(name).level for name in levels} == levels  # restored afterwards


@pytest.mark.export
def test_export_logs_each_step_with_the_time_the_one_before_took(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dinov2_ros.export"):
        export_graph(tiny_graph(tiny_spec()), tmp_path / "steps.onnx")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("dinov2_ros.export.")]
    steps = [line for line in lines if line.startswith("export ")]
    # torch.onnx's four steps (tracing, decompositions, translation, optimisation) on the core, the
    # core written, then the camera's graph composed from it and checked
    assert [line[:10] for line in steps] == [f"export {i}/6" for i in range(1, 7)], lines
    assert steps[0].endswith("obtain model graph ..."), steps[0]
    previous = ["obtain model graph", "run decompositions", "translate the graph into onnx"]
    for line, before in zip(steps[1:4], previous, strict=True):
        assert re.search(rf" \.\.\.; {before} took \d+\.\d s$", line), line
    assert re.search(r"core written; optimize the onnx graph and writing took \d+\.\d s$", steps[4]), steps[4]
    assert re.search(r"composed and checked in \d+\.\d s\)$", steps[5]), steps[5]


@pytest.mark.export
def test_opset_the_exporter_cannot_write_is_refused_before_saving(tmp_path):
    """torch.onnx keeps opset 18 when asked for 17 (its down-conversion fails); export_graph says so."""
    path = tmp_path / "opset17.onnx"
    with pytest.raises(RuntimeError, match=r"torch\.onnx wrote opset 18 where opset 17 was asked for"):
        export_graph(tiny_graph(tiny_spec()), path, opset=17)
    assert not path.exists()


def test_uint8_images_feed_only_the_cast(exported):
    """TensorRT's rule for uint8 network inputs: the one consumer of `images` is a Cast."""
    _, path = exported(tiny_spec())
    model = onnx.load(path)
    consumers = [node.op_type for node in model.graph.node if "images" in node.input]
    assert consumers == ["Cast"]
    shapes = [node for node in model.graph.node if node.op_type == "Shape"]
    assert shapes, "the dynamic batch size is read by a Shape (the resize to the model input)"
    assert not [node.name for node in shapes if "images" in node.input], "a Shape of the uint8 input itself"
