"""GraphSource and the artifact store: the graph for the settings is found by content, other files are
skipped with their reason, and a trained head's classes come from its graph once exported."""

from __future__ import annotations

import logging

import pytest
import torch
from tiny_graphs import TINY_DIM, tiny_graph

from dinov2_ros.model.center_head import CenterHead, CenterHeadInfo, save_center_head
from dinov2_ros.runtime.artifact_store import ArtifactStore
from dinov2_ros.runtime.graph_source import GraphSource, provenance_of
from dinov2_ros.runtime.model_settings import ModelSettings
from dinov2_ros.runtime.onnx_export import export_graph

CAMERA = (60, 80)


def settings(graph_dir, **values) -> ModelSettings:
    return ModelSettings.from_values(
        {
            "model.variant": "tiny",
            "model.weights": "random",
            "model.depth_weights": "random",
            "model.depth_kind": "linear",
            "model.input_height": 56,
            "model.input_width": 56,
            "model.top_k": 5,
            "model.max_prototypes": 4,
            "model.max_classes": 3,
            "model.graph_dir": str(graph_dir),
        }
        | values
    )


def store(model: ModelSettings, size=CAMERA):
    """Export the tiny graph of `model` into its store as `dinov2-ros export` would; returns the path."""
    provenance = provenance_of(model)
    spec = model.spec_for(*size, TINY_DIM)
    graph = tiny_graph(spec)
    if spec.detection == "center":
        graph.detection_head.load_state_dict(torch.load(model.detector_weights, weights_only=True)["state_dict"])
    path = ArtifactStore(model.graph_dir).graph_path(spec, provenance)
    names = ("a", "b", "c") if spec.detection == "center" else None
    return export_graph(graph, path, check=False, class_names=names, provenance=provenance.to_json())


def head_checkpoint(path, seed: int):
    torch.manual_seed(seed)
    head = CenterHead(TINY_DIM, num_classes=3, hidden_dim=16, top_k=5)
    return save_center_head(
        path, head, CenterHeadInfo("tiny:random", (56, 56), "stretch", ("a", "b", "c"), TINY_DIM, 16)
    )


def test_the_graph_of_the_settings_is_found_and_other_files_are_skipped_with_their_reason(tmp_path, caplog):
    model = settings(tmp_path)
    wanted = store(model)
    other_size = store(model, (48, 64))
    other_classes = store(settings(tmp_path, **{"model.max_classes": 2}))
    (tmp_path / "notes.onnx").write_text("not a graph")
    with caplog.at_level(logging.INFO, logger="dinov2_ros"):
        source = GraphSource(model)
        assert source.graph(*CAMERA) == wanted
        assert source.graph(*CAMERA) == wanted  # a second lookup tells nothing new
    assert len({wanted, other_size, other_classes}) == 3, "max_classes is part of the key"
    assert caplog.text.count("skipping notes.onnx") == 1, "each skipped file is logged once"
    assert f"skipping {other_size.name}" in caplog.text and "camera_height 48 -> 60" in caplog.text
    assert f"skipping {other_classes.name}" in caplog.text and "max_classes 2 -> 3" in caplog.text
    assert "skipping notes.onnx: not an ONNX file" in caplog.text
    assert f"graph for 80x60 frames: {wanted}" in caplog.text


def test_two_detector_checkpoints_with_one_file_name_give_two_graphs(tmp_path):
    first = head_checkpoint(tmp_path / "a" / "best.pt", seed=1)
    second = head_checkpoint(tmp_path / "b" / "best.pt", seed=2)
    first_settings = settings(tmp_path / "graphs", **{"model.detector": "center", "model.detector_weights": str(first)})
    second_settings = first_settings.replace(detector_weights=str(second))
    exported = store(first_settings)
    assert GraphSource(first_settings).graph(*CAMERA) == exported
    source = GraphSource(second_settings)
    path, skipped = source.store.find(source.spec_for(*CAMERA), source.provenance)
    assert path is None, "a retrained head with the same file name must not run the old graph"
    assert [reason for _, reason in skipped if "detector 'sha256:" in reason], skipped
    assert ArtifactStore(tmp_path).graph_path(source.spec_for(*CAMERA), source.provenance) != exported


def test_class_names_come_from_the_checkpoint_until_a_graph_is_exported(tmp_path, caplog):
    checkpoint = head_checkpoint(tmp_path / "bins.pt", seed=0)
    model = settings(tmp_path / "graphs", **{"model.detector": "center", "model.detector_weights": str(checkpoint)})
    assert GraphSource(model).class_names() == ("a", "b", "c")
    exported = store(model)
    checkpoint.unlink()  # a robot with exported graphs needs neither the checkpoint nor torch
    with caplog.at_level(logging.WARNING, logger="dinov2_ros"):
        source = GraphSource(model)
    assert "detector weights" in caplog.text and "without checking its content" in caplog.text
    assert source.class_names() == ("a", "b", "c")
    assert source.graph(*CAMERA) == exported


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
    ],
)
def test_settings_refuse_bad_values_with_the_parameter_name(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        settings(tmp_path, **values)


def test_pretrained_weights_are_named_by_their_release_file_even_where_it_is_not_downloaded(tmp_path, monkeypatch):
    """A robot that runs stored graphs of Meta's weights never needs the files to find its graph."""
    monkeypatch.setenv("DINOV2_ROS_CACHE", str(tmp_path / "empty_cache"))
    model = settings(tmp_path, **{"model.variant": "vits14", "model.weights": "pretrained"})
    provenance = provenance_of(model.replace(depth_weights="pretrained", depth_kind="linear4"))
    assert provenance.backbone == "pretrained:dinov2_vits14_pretrain.pth"
    assert provenance.depth == "nyu/linear4/pretrained:dinov2_vits14_nyu_linear4_head.pth"
    assert provenance.unverified == []
