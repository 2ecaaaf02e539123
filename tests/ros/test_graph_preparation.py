"""GraphPreparation without ROS: the real GraphSource and ONNX Runtime on the tiny stored graphs."""

from __future__ import annotations

import logging

from node_harness import ENCODERS, model_parameters, settings_for

from dinov2_ros.perception.frame_pipeline import FramePipeline
from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.ros.graph_export import export_in_subprocess
from dinov2_ros.ros.graph_preparation import WAITING_FOR_GRAPH, GraphPreparation
from dinov2_ros.ros.node_parameters import CameraSettings
from dinov2_ros.runtime.graph_source import GraphSource


def test_two_cameras_learning_one_size_open_its_graph_once_and_keep_it(graph_dir):
    source = GraphSource(settings_for(model_parameters(graph_dir)))
    opened = []

    def opener(height: int, width: int):
        opened.append((height, width))
        return source(height, width)

    config = ENCODERS["tiny"]
    pipeline = FramePipeline(opener, PrototypeStore("tiny:random", config["input"], config["embed_dim"]))
    exports = []

    def export(height: int, width: int) -> bool:
        exports.append((height, width))
        return export_in_subprocess(source, height, width)

    preparation = GraphPreparation(pipeline, 4, logging.getLogger("test_graph_preparation"), export)
    try:
        preparation.prepare_configured([CameraSettings("side", "raw", False, False, width=128, height=96)])
        assert opened == [(96, 128)], "the configured size is opened at configure"
        assert preparation.admit("front", (120, 160)).category == WAITING_FOR_GRAPH
        second = preparation.admit("rear", (120, 160))
        assert second is None or second.category == WAITING_FOR_GRAPH
        preparation.wait()
        assert preparation.admit("front", (120, 160)) is None and preparation.admit("rear", (120, 160)) is None
        assert opened == [(96, 128), (120, 160)], "one opening for the two cameras"
        assert exports == [(96, 128), (120, 160)], "one export check (and child process) per size"
        refusal = preparation.admit("front", (96, 128))
        assert (
            refusal.category == "size" and "the frame is 128x96 but this camera's frames are 160x120" in refusal.detail
        )
        assert preparation.admit("side", (96, 128)) is None
    finally:
        pipeline.close()
