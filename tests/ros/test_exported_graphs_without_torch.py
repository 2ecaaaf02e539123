"""The deployment chain as a robot runs it: `dinov2-ros export` with the node's parameter file on a
workstation, then perception_node with the same file and torch unimportable takes the stored graph,
says which, and publishes objects. vits14 with random weights (asked for) at a small input size."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from node_harness import REPO, Harness, SceneCamera, start_node_process, stop_node_process, write_parameters
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from dinov2_ros.runtime.graph_file import load_graph_spec

CAMERA = (120, 160)  # height, width


@pytest.mark.slow
def test_a_graph_exported_with_the_node_parameters_runs_in_the_node_without_torch(tmp_path, context):
    config = REPO / "config" / "perception.yaml"
    overrides = write_parameters(
        tmp_path / "robot.yaml",
        {
            "model.weights": "random",
            "model.depth_weights": "random",
            "model.input_height": 56,
            "model.input_width": 70,
            "model.graph_dir": str(tmp_path / "graphs"),
            "backend.threads": 1,
        },
    )
    params = ["--params-file", str(config), "--params-file", str(overrides)]
    export = subprocess.run(
        [sys.executable, "-m", "dinov2_ros.cli", "export", *params, "--camera", f"{CAMERA[1]}x{CAMERA[0]}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert export.returncode == 0, export.stdout + export.stderr
    (exported,) = (tmp_path / "graphs").glob("*.onnx")
    assert export.stdout.split() == [str(exported)]
    spec = load_graph_spec(exported)
    assert (spec.variant, spec.camera_height, spec.camera_width, spec.heads, spec.top_k) == (
        "vits14",
        *CAMERA,
        ("depth", "exemplar"),
        20,
    ), "the export follows config/perception.yaml, not defaults of its own"

    blocker = tmp_path / "no_torch"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text('raise ImportError("torch is not installed on this robot")\n')
    log = tmp_path / "node.log"
    process = start_node_process(["--params-file", str(config), "--params-file", str(overrides)], log, (blocker,))
    harness = Harness(context)
    try:
        camera = SceneCamera(CAMERA[1], CAMERA[0])
        image_pub, info_pub = harness.publisher(Image, "image"), harness.publisher(CameraInfo, "camera_info")
        received = harness.record(Detection2DArray, "dinov2/objects_2d")
        deadline = time.monotonic() + 120
        while not received and time.monotonic() < deadline and process.poll() is None:
            image, info, _ = camera.messages(time.time_ns())
            image_pub.publish(image)
            info_pub.publish(info)
            harness.spin_for(0.2)
    finally:
        harness.close()
        code = stop_node_process(process)
    text = log.read_text()
    assert received, text
    assert code == 0, text
    assert f"graph for {CAMERA[1]}x{CAMERA[0]} frames: {exported}" in text
    assert "exporting" not in text, "the node must take the stored graph, not export again"
