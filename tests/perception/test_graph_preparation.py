"""GraphPreparation without ROS: the real BackendOpener and ONNX Runtime on the tiny stored graphs."""

from __future__ import annotations

import logging

from node_harness import model_parameters, settings_for

from dinov2_ros.perception.graph_preparation import GraphPreparation
from dinov2_ros.perception.rejection import WAITING_FOR_GRAPH
from dinov2_ros.runtime.backend_opener import BackendOpener
from dinov2_ros.runtime.export_process import ChildExporter

LOG = logging.getLogger("test_graph_preparation")


def test_two_cameras_learning_one_size_open_its_graph_once_and_keep_it(graph_dir):
    source = BackendOpener(settings_for(model_parameters(graph_dir)))
    opened, exports = [], []

    def opener(height: int, width: int):
        opened.append((height, width))
        return source.open(height, width)

    def export(height: int, width: int) -> bool:
        exports.append((height, width))
        return ChildExporter(source)(height, width)

    preparation = GraphPreparation(opener, 4, export, background=True, log=LOG.info, warn=LOG.warning)
    try:
        preparation.configure({"side": (96, 128)})
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
        preparation.close()


def test_a_size_that_cannot_be_opened_is_remembered_once_and_the_camera_learns_again():
    attempts = []

    def failing(height: int, width: int):
        attempts.append((height, width))
        raise FileNotFoundError("no ONNX file at /nowhere.onnx; create it with `dinov2-ros export`")

    preparation = GraphPreparation(failing)
    first = preparation.admit("cam", (120, 160))
    assert first.category == "graph failed" and "could not be opened: FileNotFoundError: no ONNX file" in first.detail
    assert preparation.admit("cam", (120, 160)).detail == first.detail
    assert attempts == [(120, 160)], "never retried frame after frame"
    preparation.admit("cam", (96, 128))  # one odd first frame does not decide the camera's size
    assert attempts == [(120, 160), (96, 128)]
