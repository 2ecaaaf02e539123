"""GraphSource names a trained head's classes from an exported graph, else from its checkpoint, and
keeps graphs of different heads apart."""

from __future__ import annotations

from node_harness import export_tiny_center_graph, model_parameters, settings_for

from dinov2_ros.model.center_head import CenterHead, CenterHeadInfo, save_center_head
from dinov2_ros.ros.graph_source import GraphSource


def test_class_names_come_from_the_checkpoint_until_a_graph_is_exported(tmp_path):
    checkpoint = save_center_head(
        tmp_path / "bins.pt",
        CenterHead(32, 3, 8),
        CenterHeadInfo("tiny:random", (112, 112), "stretch", ("a", "b", "c"), 32, 8),
    )
    parameters = model_parameters(tmp_path / "graphs") | {
        "model.detector": "center",
        "model.detector_weights": str(checkpoint),
    }
    assert GraphSource(settings_for(parameters)).class_names() == ("a", "b", "c")

    exported = export_tiny_center_graph(tmp_path / "graphs", tmp_path / "bins.pt", ("x", "y"), (120, 160))
    checkpoint.unlink()  # a robot with exported graphs needs neither the checkpoint nor torch
    assert GraphSource(settings_for(exported)).class_names() == ("x", "y")


def test_graphs_of_different_heads_live_in_different_folders(tmp_path):
    base = model_parameters(tmp_path)
    tags = {
        settings_for(base).weights_tag,
        settings_for(base | {"model.detector": "center", "model.detector_weights": "/heads/bins.pt"}).weights_tag,
        settings_for(base | {"model.detector": "center", "model.detector_weights": "/heads/parts.pt"}).weights_tag,
    }
    assert len(tags) == 3
