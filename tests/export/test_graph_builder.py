"""GraphBuilder, BackendOpener and the artifact store: the graph for the settings is found by content,
other files are skipped with their reason, a later camera size is composed from the stored core
without torch, and a trained head's classes come from its graph once exported."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny_graphs import TINY_DIM, tiny_graph, tiny_settings

from dinov2_ros.export.camera_graph import DamagedCoreError, compose_camera_graph, graph_digest, set_metadata
from dinov2_ros.export.camera_graph import example_inputs as _example_inputs
from dinov2_ros.export.core_export import export_core, export_graph
from dinov2_ros.export.graph_builder import GraphBuilder
from dinov2_ros.export.quantize import quantize_graph
from dinov2_ros.model.heads.center import CenterHead, CenterHeadInfo, save_center_head
from dinov2_ros.runtime.artifact_store import ArtifactStore
from dinov2_ros.runtime.backend_opener import BackendOpener
from dinov2_ros.runtime.graph_file import (
    CORE_DIGEST_KEY,
    CORE_SPEC_KEY,
    PRECISION_KEY,
    VERSION_KEY,
    ForeignGraphError,
    load_graph_metadata,
    load_graph_spec,
)
from dinov2_ros.runtime.model_settings import MODEL_SETTINGS, ModelSettings
from dinov2_ros.runtime.provenance import provenance_of

CAMERA = (60, 80)


def settings(graph_dir, **values) -> ModelSettings:
    return tiny_settings(graph_dir, **{"model.depth_weights": "random", "model.depth_kind": "linear"} | values)


def store(model: ModelSettings, size=CAMERA):
    """Export the tiny graph of `model` into its store as `dinov2-ros export` would; returns the path."""
    provenance = provenance_of(model)
    spec = model.spec_for(*size, TINY_DIM)
    graph = tiny_graph(spec)
    if spec.detection == "center":
        graph.core.detection_head.load_state_dict(torch.load(model.detector_weights, weights_only=True)["state_dict"])
    path = ArtifactStore(model.graph_dir).graph_path(spec, provenance)
    names = ("a", "b", "c") if spec.detection == "center" else None
    return export_graph(graph, path, check=False, class_names=names, provenance=provenance.to_json())


def head_checkpoint(path, seed: int):
    torch.manual_seed(seed)
    head = CenterHead(TINY_DIM, num_classes=3, hidden_dim=16, top_k=5)
    return save_center_head(
        path, head, CenterHeadInfo("tiny:random", (56, 56), "stretch", ("a", "b", "c"), TINY_DIM, 16)
    )


@pytest.mark.export
def test_the_graph_of_the_settings_is_found_and_other_files_are_skipped_with_their_reason(tmp_path, caplog):
    model = settings(tmp_path)
    wanted = store(model)
    other_size = store(model, (48, 64))
    other_classes = store(settings(tmp_path, **{"model.max_classes": 2}))
    (tmp_path / "notes.onnx").write_text("not a graph")
    with caplog.at_level(logging.INFO, logger="dinov2_ros"):
        builder = GraphBuilder(model)
        assert builder.graph_file(*CAMERA) == wanted
        assert builder.graph_file(*CAMERA) == wanted  # a second lookup tells nothing new
    assert len({wanted, other_size, other_classes}) == 3, "max_classes is part of the key"
    assert caplog.text.count("skipping graph notes.onnx") == 1, "each skipped file is logged once"
    assert f"skipping graph {other_size.name}" in caplog.text and "camera_height 48 -> 60" in caplog.text
    assert f"skipping graph {other_classes.name}" in caplog.text and "max_classes 2 -> 3" in caplog.text
    assert "skipping graph notes.onnx: not a whole ONNX file" in caplog.text
    assert f"graph for 80x60 frames: {wanted}" in caplog.text


@pytest.mark.export
def test_two_detector_checkpoints_with_one_file_name_give_two_graphs(tmp_path):
    first = head_checkpoint(tmp_path / "a" / "best.pt", seed=1)
    second = head_checkpoint(tmp_path / "b" / "best.pt", seed=2)
    first_settings = settings(tmp_path / "graphs", **{"model.detector": "center", "model.detector_weights": str(first)})
    second_settings = first_settings.replace(detector_weights=str(second))
    exported = store(first_settings)
    assert GraphBuilder(first_settings).graph_file(*CAMERA) == exported
    source = BackendOpener(second_settings)
    path, skipped = source.store.find(source.spec_for(*CAMERA), source.provenance)
    assert path is None, "a retrained head with the same file name must not run the old graph"
    assert [reason for _, reason in skipped if "detector 'sha256:" in reason], skipped
    assert ArtifactStore(tmp_path).graph_path(source.spec_for(*CAMERA), source.provenance) != exported


@pytest.mark.export
def test_class_names_come_with_the_exported_graph_not_from_the_checkpoint(tmp_path, caplog):
    checkpoint = head_checkpoint(tmp_path / "bins.pt", seed=0)
    model = settings(tmp_path / "graphs", **{"model.detector": "center", "model.detector_weights": str(checkpoint)})
    assert BackendOpener(model).class_names() is None, "the robot reads no checkpoint: the export writes the names"
    exported = store(model)
    checkpoint.unlink()  # a robot with exported graphs needs neither the checkpoint nor torch
    with caplog.at_level(logging.WARNING, logger="dinov2_ros"):
        source = GraphBuilder(model)
    assert "detector weights" in caplog.text and "without checking its content" in caplog.text
    assert source.opener.class_names() == ("a", "b", "c")
    assert source.graph_file(*CAMERA) == exported


def test_random_weights_and_a_checkpoint_are_told_apart(tmp_path):
    checkpoint = tmp_path / "encoder.pt"
    checkpoint.write_bytes(b"weights")
    random, real = (
        provenance_of(settings(tmp_path)),
        provenance_of(settings(tmp_path, **{"model.weights": str(checkpoint)})),
    )
    assert random.backbone != real.backbone
    assert random.differences(real) and not random.differences(provenance_of(settings(tmp_path)))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model.weights": ""}, "model.weights is empty"),
        ({"backend.kind": "onnxruntime", "backend.precision": "fp16"}, "not available with backend.kind"),
        ({"model.input_height": 50}, "multiple of 14"),
        ({"model.top_k": 0}, r"model.top_k must be in \[1, 1000\]"),
        ({"model.varaint": "vits14"}, "unknown model settings"),
        (
            {"backend.max_batch": 2, "backend.opt_batch": 3},
            r"backend.opt_batch must be in \[1, backend.max_batch = 2\]",
        ),
    ],
)
def test_settings_refuse_bad_values_with_the_parameter_name(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        settings(tmp_path, **values)


def test_the_tensorrt_profile_is_tuned_for_one_frame_per_camera_unless_set(tmp_path):
    assert settings(tmp_path).opt_batch == 1, "no cameras given: the node's default, one camera"
    assert settings(tmp_path, cameras=["left", "right", "top"]).opt_batch == 3
    assert settings(tmp_path, cameras=list("abcdef")).opt_batch == 4, "at most backend.max_batch"
    assert settings(tmp_path, cameras=["left", "right"], **{"backend.opt_batch": 1}).opt_batch == 1


def test_pretrained_weights_are_named_by_their_release_file_even_where_it_is_not_downloaded(tmp_path, monkeypatch):
    """A robot that runs stored graphs of Meta's weights never needs the files to find its graph."""
    monkeypatch.setenv("DINOV2_ROS_CACHE", str(tmp_path / "empty_cache"))
    model = settings(tmp_path, **{"model.variant": "vits14", "model.weights": "pretrained"})
    provenance = provenance_of(model.replace(depth_weights="pretrained", depth_kind="linear4"))
    assert provenance.backbone == "pretrained:dinov2_vits14_pretrain.pth"
    assert provenance.depth == "nyu/linear4/pretrained:dinov2_vits14_nyu_linear4_head.pth"
    assert provenance.unverified == []


def store_core(model: ModelSettings):
    """Export the tiny core of `model` into its store, as the first export for any camera size does."""
    provenance = provenance_of(model)
    spec = model.spec_for(*CAMERA, TINY_DIM)
    path = ArtifactStore(model.graph_dir).core_path(spec.core(), provenance)
    return export_core(tiny_graph(spec), path, provenance=provenance.to_json())


COMPOSE_WITHOUT_TORCH = """
import json, logging, sys
sys.modules["torch"] = None  # a robot without torch: importing it raises ImportError
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
from dinov2_ros.export.graph_builder import GraphBuilder
from dinov2_ros.runtime.model_settings import ModelSettings
builder = GraphBuilder(ModelSettings.from_values(json.loads(sys.argv[1])))
print("GRAPH", builder.graph_file(int(sys.argv[2]), int(sys.argv[3])))
"""


@pytest.mark.export
@pytest.mark.subprocess
def test_a_new_camera_size_is_composed_from_the_stored_core_without_torch(tmp_path):
    """The core (encoder and heads) is exported once; a camera size after that costs its ONNX ends
    only, so a robot holding the store composes it without torch, and it computes what the model does."""
    model = settings(tmp_path, **{"model.resize": "letterbox"})
    values = {name: getattr(model, setting.field) for name, setting in MODEL_SETTINGS.items()}
    values["model.graph_dir"] = str(model.graph_dir)
    height, width = 48, 96  # another aspect ratio than the core's 56x56 input

    def compose_without_torch() -> subprocess.CompletedProcess:
        command = [sys.executable, "-c", COMPOSE_WITHOUT_TORCH, json.dumps(values), str(height), str(width)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    store(model)  # a graph for another size, but no core (a store copied without its cores/)
    run = compose_without_torch()  # it says what to do instead of a bare ImportError
    assert run.returncode != 0 and "exporting one needs torch, which is not installed here" in run.stderr
    # the command to run elsewhere carries the settings in use, not the defaults
    command = f"--resize letterbox --top-k 5 --max-prototypes 4 --max-classes 3 --graph-dir {tmp_path}"
    assert command in run.stderr and "--camera 96x48`" in run.stderr, run.stderr
    core = store_core(model)
    run = compose_without_torch()
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"the stored core {core.name}" in run.stdout and "no torch needed" in run.stdout
    graph_path = Path(run.stdout.split("GRAPH ")[-1].strip())
    spec = model.spec_for(height, width, TINY_DIM)
    assert graph_path == ArtifactStore(tmp_path).graph_path(spec, provenance_of(model))
    # the composed graph computes what the torch module for this camera computes
    inputs = _example_inputs(spec, batch=2)
    outputs = ort.InferenceSession(str(graph_path), providers=["CPUExecutionProvider"]).run(None, inputs)
    with torch.no_grad():
        expected = tiny_graph(spec)(*(torch.from_numpy(array) for array in inputs.values()))
    for output, reference in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(output, reference.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.export
def test_a_stale_or_foreign_core_is_skipped_with_its_reason(tmp_path):
    model = settings(tmp_path)
    core = store_core(model)
    source = BackendOpener(model)
    wanted = source.spec_for(*CAMERA).core()
    assert source.store.find_core(wanted, source.provenance) == (core, [])
    other_weights = BackendOpener(settings(tmp_path, **{"model.depth_weights": str(tmp_path / "elsewhere.pth")}))
    path, skipped = other_weights.store.find_core(wanted, other_weights.provenance)
    assert path is None and "it was made for other settings: depth" in skipped[0][1], skipped
    stale = onnx.load(core)
    set_metadata(stale, {VERSION_KEY: "0.0.1"})
    onnx.save(stale, core)
    path, skipped = source.store.find_core(wanted, source.provenance)
    assert path is None and "exported by dinov2_ros 0.0.1" in skipped[0][1], skipped
    assert "re-export" not in skipped[0][1], "the lookup exports what is missing: its skip line gives no advice"
    with pytest.raises(ForeignGraphError, match="the camera-independent core that graphs are composed from"):
        load_graph_spec(core)


@pytest.mark.export
def test_int8_graphs_are_composed_from_one_int8_core(tmp_path, caplog):
    """The core is quantised once; each camera's int8 graph is it joined to the camera's ends, the
    same graph as quantising that camera's fp32 graph (the ends hold no MatMul), and no fp32 graph
    of the camera is written for it."""
    model = settings(tmp_path, **{"backend.precision": "int8"})
    store_core(model)
    source = GraphBuilder(model)
    assert source.opener.missing(*CAMERA)
    with caplog.at_level(logging.INFO, logger="dinov2_ros"):
        (int8,) = source.make(*CAMERA)
        (other_int8,) = source.make(48, 64)
    assert caplog.text.count("quantising the MatMuls") == 1, caplog.text
    assert len(list(source.store.core_dir.glob("*.int8.onnx"))) == 1
    assert load_graph_metadata(other_int8)[1][PRECISION_KEY] == "int8"
    spec = source.spec_for(*CAMERA)
    assert not source.opener.missing(*CAMERA)
    assert source.store.find(spec, source.provenance, "fp32")[0] is None, "an int8 node needs no fp32 graph"
    fp32 = source.graph_file(*CAMERA)
    direct = quantize_graph(fp32, tmp_path / "direct.int8.onnx")
    inputs = _example_inputs(spec, batch=2)
    composed_outputs, direct_outputs = (
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, inputs) for path in (int8, direct)
    )
    for composed, alone in zip(composed_outputs, direct_outputs, strict=True):
        np.testing.assert_allclose(composed, alone, atol=1e-6, rtol=0)
    # a damaged int8 core is quantised again from the fp32 core, with a warning
    (int8_core,) = source.store.core_dir.glob("*.int8.onnx")
    damaged = onnx.load(int8_core)
    weights = max(damaged.graph.initializer, key=lambda tensor: len(tensor.raw_data))
    weights.raw_data = bytes(len(weights.raw_data))
    onnx.save(damaged, int8_core)
    with caplog.at_level(logging.WARNING, logger="dinov2_ros"):
        source.make(72, 96)
    assert "is damaged" in caplog.text and "quantising it again" in caplog.text


@pytest.mark.export
def test_a_damaged_core_is_refused_and_a_graph_with_non_finite_outputs_is_not_stored(tmp_path):
    """A core whose weights changed on disk (the digest it was written with no longer matches) is
    refused, also for quantising; a graph giving NaN on the test frame is refused before it is stored."""
    model = settings(tmp_path)
    core = store_core(model)
    spec = model.spec_for(*CAMERA, TINY_DIM)
    damaged = onnx.load(core)
    weights = max(damaged.graph.initializer, key=lambda tensor: len(tensor.raw_data))
    weights.raw_data = bytes(len(weights.raw_data))  # the same length: the file stays a valid model
    onnx.save(damaged, core)
    target = tmp_path / "graph.onnx"
    with pytest.raises(DamagedCoreError, match="does not match the digest it was written with"):
        compose_camera_graph(spec, core, target)
    with pytest.raises(DamagedCoreError):
        quantize_graph(core, tmp_path / "core.int8.onnx", key=CORE_SPEC_KEY)
    # NaN weights written as such (the digest matches them): the composed graph's test run refuses it
    weights.raw_data = np.full(len(weights.raw_data) // 4, np.nan, np.float32).tobytes()
    set_metadata(damaged, {CORE_DIGEST_KEY: graph_digest(damaged)})
    onnx.save(damaged, core)
    with pytest.raises(RuntimeError, match=r"non-finite values .* so it was not stored"):
        compose_camera_graph(spec, core, target)
    assert not target.exists() and not list(tmp_path.glob(".graph.onnx.*")), "nothing half-written is left"


@pytest.mark.export
def test_tensorrt_int8_builds_from_a_calibrated_qdq_graph_kept_per_calibration(tmp_path, caplog):
    """backend tensorrt at int8: `make` (without the engine, which needs a GPU) writes the Q/DQ graph,
    calibrated on the frames given, from the fp32 graph; the next lookup finds it without calibrating
    again; frames from another backend.calibration make another. The engine loader takes the Q/DQ
    graph for int8 and refuses the fp32 one (and the Q/DQ one for fp16)."""
    from dinov2_ros.runtime.backends.tensorrt.loader import EngineLoader
    from dinov2_ros.runtime.graph_file import CALIBRATION_KEY, QDQ_PRECISION

    model = settings(tmp_path, **{"backend.kind": "tensorrt", "backend.precision": "int8"})
    store(model)
    calls = []

    def frames() -> list[np.ndarray]:
        calls.append(1)
        rng = np.random.default_rng(len(calls))
        return [rng.integers(0, 256, (60 + 10 * k, 80, 3), dtype=np.uint8) for k in range(4)]  # sizes differ

    builder = GraphBuilder(model, frames)
    assert builder.opener.missing(*CAMERA) == f"the {QDQ_PRECISION} graph '{builder.spec_for(*CAMERA).key}'"
    with caplog.at_level(logging.INFO, logger="dinov2_ros"):
        (qdq,) = builder.make(*CAMERA, engine=False)
    metadata = load_graph_metadata(qdq)[1]
    assert (metadata[PRECISION_KEY], metadata[CALIBRATION_KEY]) == (QDQ_PRECISION, "synthetic tabletop scenes")
    assert "made the int8 Q/DQ graph" in caplog.text and "from 4 calibration frames" in caplog.text
    spec = builder.spec_for(*CAMERA)
    found, skipped = builder.store.find(
        spec, builder.provenance, QDQ_PRECISION, {CALIBRATION_KEY: builder.opener.calibration}
    )
    assert found == qdq and skipped == [], "the fp32 graph it is made from is a sibling, not a skipped file"
    assert builder.make(*CAMERA, engine=False) == [qdq] and len(calls) == 1, "found, not calibrated again"
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(qdq).graph.node)

    folder = tmp_path / "cell_frames"
    folder.mkdir()
    other = GraphBuilder(model.replace(calibration=str(folder)), frames)
    (recalibrated,) = other.make(*CAMERA, engine=False)
    assert recalibrated != qdq and len(calls) == 2
    assert load_graph_metadata(recalibrated)[1][CALIBRATION_KEY] == str(folder.resolve())

    fp32 = builder.graph_file(*CAMERA)
    EngineLoader(qdq, spec, "int8", cache_dir=tmp_path / "engines")
    with pytest.raises(ValueError, match=r"a TensorRT int8 engine is built from the int8-qdq graph"):
        EngineLoader(fp32, spec, "int8", cache_dir=tmp_path / "engines")
    with pytest.raises(ValueError, match=r"a TensorRT fp16 engine is built from the fp32 graph"):
        EngineLoader(qdq, spec, "fp16", cache_dir=tmp_path / "engines")
