"""Stopping perception_node as users do: a terminal's Ctrl-C reaches the whole process group, and
`ros2 launch` then forwards another SIGINT (later SIGTERM) to the node. The node stops with exit 0,
no traceback and no process left, also while it exports a graph: the export child ends first and
leaves no partial file. The node process runs from the tests' tiny graphs, or a real vits14 export
for the export cases (random weights, asked for)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from node_harness import (
    SceneCamera,
    model_parameters,
    process_group,
    start_node_process,
    write_parameters,
)
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

pytestmark = [pytest.mark.subprocess, pytest.mark.dds]
SECOND = 1_000_000_000


def _stopped(process, log: Path, signals: list[tuple[int, bool, float]], timeout_s: float = 30.0) -> tuple[int, str]:
    """Send `signals` ((signal, to the whole group, seconds to wait before it)), then wait for the node."""
    for number, group, wait_s in signals:
        time.sleep(wait_s)
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if group else os.kill)(process.pid, number)
    try:
        code = process.wait(timeout=timeout_s)
    except Exception:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return code, log.read_text()


def _wait_for(log: Path, text: str, process, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


# a terminal's Ctrl-C (the group), launch's forwarded SIGINT soon after or late, launch's SIGTERM
STOPS = {
    "terminal then launch at once": [(signal.SIGINT, True, 0.0), (signal.SIGINT, False, 0.01)],
    "terminal then launch later": [(signal.SIGINT, True, 0.0), (signal.SIGINT, False, 0.3)],
    "interrupt then terminate": [(signal.SIGINT, True, 0.0), (signal.SIGTERM, False, 0.05)],
    # whatever instruction of the stop a late signal lands on, it is ignored
    "a burst of signals": [(signal.SIGINT, True, 0.0)] + [(signal.SIGINT, False, 0.0005)] * 400,
}


@pytest.mark.parametrize("stop", list(STOPS))
def test_ctrl_c_while_frames_are_processed_stops_cleanly(stop, graph_dir, harness, tmp_path):
    parameters = write_parameters(tmp_path / "node.yaml", model_parameters(graph_dir))
    namespace = "stop_" + stop.replace(" ", "_")
    log = tmp_path / "node.log"
    process = start_node_process(["--params-file", str(parameters), "-r", f"__ns:=/{namespace}"], log)
    camera = SceneCamera(160, 120)
    image_pub, info_pub = (
        harness.publisher(Image, f"/{namespace}/image"),
        harness.publisher(CameraInfo, f"/{namespace}/camera_info"),
    )
    outputs = harness.record(Detection2DArray, f"/{namespace}/dinov2/objects_2d")
    try:
        deadline, index = time.monotonic() + 60, 0
        while len(outputs) < 3 and time.monotonic() < deadline and process.poll() is None:
            index += 1
            image, info, _ = camera.messages(index * SECOND)
            info_pub.publish(info)
            image_pub.publish(image)
            harness.spin_for(0.1)
        assert len(outputs) >= 3, log.read_text()[-3000:]
        for _ in range(3):  # frames in flight while the signals land
            image, info, _ = camera.messages((index := index + 1) * SECOND)
            info_pub.publish(info)
            image_pub.publish(image)
        code, text = _stopped(process, log, STOPS[stop])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert code == 0, text[-3000:]
    assert "Traceback" not in text and "terminate called" not in text, text[-3000:]
    assert "Failed to publish log message" not in text, text[-3000:]
    assert process_group(process) == []


def _export_parameters(tmp_path: Path, settings) -> Path:
    """The node's parameters for the small real vits14 with a configured camera size: its graph is
    made (a half-minute export) at configure, into an empty store."""
    values = {
        "model.weights": "random",
        "model.depth_weights": "random",
        "model.input_height": settings.input_height,
        "model.input_width": settings.input_width,
        "model.top_k": settings.top_k,
        "model.max_prototypes": settings.max_prototypes,
        "model.graph_dir": str(tmp_path / "store"),
        "backend.threads": 1,
        "camera.width": 160,
        "camera.height": 120,
    }
    return write_parameters(tmp_path / "export.yaml", values)


@pytest.mark.export
@pytest.mark.parametrize("how", ["ctrl-c", "node killed"])
def test_a_stop_during_the_first_export_ends_the_child_and_leaves_no_partial_file(how, small_vits14_settings, tmp_path):
    log = tmp_path / "node.log"
    process = start_node_process(["--params-file", str(_export_parameters(tmp_path, small_vits14_settings))], log)
    try:
        _wait_for(log, "export 1/6", process, timeout_s=120)
        children = [pid for pid in process_group(process) if pid != process.pid]
        assert children, "the export runs in a child process"
        stops = STOPS["terminal then launch at once"] if how == "ctrl-c" else [(signal.SIGKILL, False, 0.5)]
        start = time.monotonic()
        code, text = _stopped(process, log, stops)
        stopped_s = time.monotonic() - start
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 15  # the killed node's child gets SIGTERM from the kernel and cleans up
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "the export child outlived the node"
    if how == "ctrl-c":
        assert code == 0 and stopped_s < 15, text[-3000:]
        assert "Traceback" not in text and "could not be opened" not in text, text[-3000:]
        assert "Failed to publish log message" not in text, "nothing is logged after rclpy shut down"
    left = [path for path in (tmp_path / "store").rglob("*") if path.is_file()]
    assert left == [], "a stopped export leaves no partial file"
