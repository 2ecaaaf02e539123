"""The message contract, across processes: perception_node runs as its own process, started with
config/perception.yaml exactly as launch/perception.launch.py passes it, and this process plays the
camera and the consumers (objects, depth, markers, debug image, a late LabelInfo subscriber)."""

from __future__ import annotations

import ast
import importlib.util
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from node_harness import (
    REPO,
    Harness,
    SceneCamera,
    model_parameters,
    pixels,
    stamp_of,
    start_node_process,
    stop_node_process,
    write_parameters,
)
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import Marker, MarkerArray

SECOND = 1_000_000_000
NAMESPACE = "contract"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def launch_config_path() -> str:
    """The parameter file perception.launch.py gives the node by default, relative to the package."""
    tree = ast.parse((REPO / "launch" / "perception.launch.py").read_text())
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument"):
            continue
        if call.args[0].value != "config":
            continue
        default = next(k.value for k in call.keywords if k.arg == "default_value")
        parts = [e.value for e in default.args[0].elts if isinstance(e, ast.Constant)]
        return "/".join(parts)
    raise AssertionError("perception.launch.py declares no 'config' argument")


def test_the_launch_file_passes_the_packaged_config():
    assert launch_config_path() == "config/perception.yaml"
    assert (REPO / launch_config_path()).is_file()


def refused_start(arguments: list[str], log) -> str:
    """Start the node process with `arguments`; its log, after asserting it stopped with exit code 1."""
    process = start_node_process(arguments, log)
    try:
        code = process.wait(timeout=60)
    finally:
        stop_node_process(process)
    text = log.read_text()
    assert code == 1, text
    return text


@pytest.mark.subprocess
def test_config_alone_starts_the_node_and_it_refuses_to_guess_weights(tmp_path):
    """config/perception.yaml as shipped declares every parameter validly; without weights the node
    stops with a message saying which parameter to set, rather than running random weights."""
    text = refused_start(["--params-file", launch_config_path()], tmp_path / "node.log")
    assert "model.weights is empty" in text and "'random'" in text


@pytest.mark.subprocess
def test_a_parameter_of_the_wrong_type_stops_the_node_with_one_line_not_a_traceback(tmp_path):
    wrong_type = ["-p", "model.weights:=random", "-p", "tracking.lost_timeout_s:=2"]
    text = refused_start(["--params-file", launch_config_path(), *wrong_type], tmp_path / "node.log")
    assert "tracking.lost_timeout_s" in text and "Traceback" not in text, text


@pytest.fixture
def node_process(graph_dir, tmp_path):
    overrides = model_parameters(graph_dir) | {"diagnostics.period_s": 0.5}
    params = write_parameters(tmp_path / "overrides.yaml", overrides)
    log = tmp_path / "node.log"
    process = start_node_process(
        ["--params-file", launch_config_path(), "--params-file", str(params), "-r", f"__ns:=/{NAMESPACE}"], log
    )
    yield process
    code = stop_node_process(process)
    assert code == 0, log.read_text()


def teach(harness: Harness, box) -> None:
    client = harness.node.create_client(SetParameters, f"/{NAMESPACE}/dinov2/add_class")
    assert client.wait_for_service(timeout_sec=30.0)
    fields = {"class_name": "part", "box": [float(v) for v in box]}
    request = SetParameters.Request(
        parameters=[ParameterMsg(name=k, value=Parameter(k, value=v).get_parameter_value()) for k, v in fields.items()]
    )
    future = client.call_async(request)
    assert harness.spin_until(future.done, timeout_s=10.0)
    assert future.result().results[0].successful, future.result().results[0].reason


def test_message_contract_across_processes(node_process, context):
    harness = Harness(context)
    camera = SceneCamera(160, 120, frame_id="camera_color_optical_frame")
    image_pub = harness.publisher(Image, f"/{NAMESPACE}/image")
    info_pub = harness.publisher(CameraInfo, f"/{NAMESPACE}/camera_info")
    topic = f"/{NAMESPACE}/dinov2/"
    objects = harness.record(Detection3DArray, topic + "objects")
    objects_2d = harness.record(Detection2DArray, topic + "objects_2d")
    depth = harness.record(Image, topic + "depth/image")
    depth_info = harness.record(CameraInfo, topic + "depth/camera_info")
    markers = harness.record(MarkerArray, topic + "markers")
    debug = harness.record(Image, topic + "debug/image")
    instances = harness.record(Image, topic + "instances/image")
    instances_info = harness.record(CameraInfo, topic + "instances/camera_info")
    object_points = harness.record(PointCloud2, topic + "objects/points")
    sent: dict[int, tuple] = {}
    stamp = [0]

    def frames_until(done, timeout_s: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stamp[0] += 1
            image, info, _ = camera.messages(stamp[0] * SECOND + 12345)
            sent[stamp_of(image)] = (image, info)
            info_pub.publish(info)
            image_pub.publish(image)
            if harness.spin_until(done, timeout_s=0.1):
                return True
        return False

    try:
        assert frames_until(lambda: len(objects_2d) >= 1), "no output from the node process"
        teach(harness, camera.scene.boxes[0])
        shown = len(objects)
        assert frames_until(
            lambda: any(len(m.detections) for m in objects[shown:]) and debug and markers and instances_info
        )
        harness.spin_for(0.5)  # the other outputs of the same frame

        # headers: the input image's stamp and optical frame on every per-frame output
        for msg in [*objects, *objects_2d, *depth, *depth_info, *markers[-1].markers, *debug, *instances]:
            assert msg.header.frame_id == camera.frame_id
            assert stamp_of(msg) in sent
        latest = next(m for m in reversed(objects) if m.detections)
        _, info_sent = sent[stamp_of(latest)]

        # depth: 32FC1 metres at the camera resolution, NaN where invalid, little endian, dense rows
        d = depth[-1]
        assert (d.encoding, d.width, d.height, d.step, d.is_bigendian) == ("32FC1", 160, 120, 640, 0)
        values = pixels(d)
        finite = values[np.isfinite(values)]
        assert finite.size and np.all((finite >= 0.001) & (finite <= 10.0))
        assert list(depth_info[-1].k) == list(info_sent.k) and (depth_info[-1].width, depth_info[-1].height) == (
            160,
            120,
        )

        # objects: 3D in metres in the optical frame, ids named by LabelInfo, scores in (0, 1]
        for detection in latest.detections:
            assert detection.header.frame_id == camera.frame_id
            hypothesis = detection.results[0].hypothesis
            assert hypothesis.class_id == "0" and 0.5 <= hypothesis.score <= 1.0
            p, s = detection.bbox.center.position, detection.bbox.size
            assert all(math.isfinite(v) for v in (p.x, p.y, p.z, s.x, s.y, s.z)) and p.z > 0
            q = detection.bbox.center.orientation
            assert s.x > 0 and s.y > 0 and s.z >= 0 and math.isclose(math.hypot(q.x, q.y, q.z, q.w), 1.0)
        match_2d = next(m for m in objects_2d if stamp_of(m) == stamp_of(latest))
        for detection in match_2d.detections:
            box = detection.bbox
            assert box.center.position.x - box.size_x / 2 >= 0 and box.center.position.x + box.size_x / 2 <= 160
            assert box.center.position.y - box.size_y / 2 >= 0 and box.center.position.y + box.size_y / 2 <= 120
            assert detection.results[0].hypothesis.class_id == "0"

        # instances: 32SC1 labels at camera resolution, each the id of a detection of that frame whose
        # box holds the pixel, 0 elsewhere; its CameraInfo beside it
        frame_2d = {stamp_of(m): m for m in objects_2d}
        labelled = next(m for m in reversed(instances) if stamp_of(m) in frame_2d and frame_2d[stamp_of(m)].detections)
        assert (labelled.encoding, labelled.width, labelled.height) == ("32SC1", 160, 120)
        label_map = np.frombuffer(labelled.data, np.int32).reshape(120, 160)
        boxes = {int(d.id): d.bbox for d in frame_2d[stamp_of(labelled)].detections}
        assert set(np.unique(label_map)) - {0} <= set(boxes) and (label_map > 0).any()
        for label, box in boxes.items():
            rows, cols = np.nonzero(label_map == label)
            assert np.all(np.abs(cols + 0.5 - box.center.position.x) <= box.size_x / 2 + 0.5)
            assert np.all(np.abs(rows + 0.5 - box.center.position.y) <= box.size_y / 2 + 0.5)
        assert (instances_info[-1].width, instances_info[-1].height) == (160, 120)

        # track ids: the same parts in frame after frame keep their ids, in 2D and in 3D
        assert frames_until(lambda: sum(bool(m.detections) for m in objects_2d) >= 3)
        tracked = [sorted(d.id for d in m.detections) for m in objects_2d if m.detections][-3:]
        assert tracked[0] == tracked[1] == tracked[2] and all(i.isdigit() and int(i) > 0 for i in tracked[0])
        ids_3d = next(sorted(d.id for d in m.detections) for m in reversed(objects) if m.detections)
        assert set(ids_3d) <= set(tracked[-1])

        # each object's points, labelled with its id (published only while subscribed)
        cloud = next(c for c in reversed(object_points) if c.width)
        posed = next(m for m in objects if m.header.stamp == cloud.header.stamp)
        assert cloud.header == posed.header and [f.name for f in cloud.fields] == ["x", "y", "z", "rgb", "label"]
        labels = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, 20)[:, 16:20].copy().view(np.uint32)
        assert cloud.width > 0 and {str(v) for v in labels.ravel()} <= {d.id for d in posed.detections}

        # markers and debug image (published only while subscribed)
        kinds = [m.type for m in markers[-1].markers]
        assert markers[-1].markers[0].action == Marker.DELETEALL
        assert Marker.CUBE in kinds and Marker.TEXT_VIEW_FACING in kinds
        assert (debug[-1].encoding, debug[-1].width, debug[-1].height) == ("rgb8", 160, 120)

        # LabelInfo is latched: a subscriber that joins now still gets the current classes
        labels = harness.record(LabelInfo, topic + "label_info", LATCHED)
        assert harness.spin_until(lambda: labels, timeout_s=10.0)
        assert [(c.class_id, c.class_name) for c in labels[-1].class_map] == [(0, "part")]
        assert labels[-1].threshold == pytest.approx(0.5)
    finally:
        harness.close()


def run_refused_node(tmp_path, parameters: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """(exit code, log) of perception_node started as `ros2 run` does, with the launch file's parameters,
    `parameters` (`name:=value`) and a store of its own, expected to stop on its own within a minute."""
    arguments = ["--params-file", launch_config_path(), "-p", f"model.graph_dir:={tmp_path / 'graphs'}"]
    arguments += [part for parameter in parameters for part in ("-p", parameter)]
    process = start_node_process(arguments, tmp_path / "node.log", env=env)
    try:
        code = process.wait(timeout=60)
    finally:
        stop_node_process(process)
    return code, (tmp_path / "node.log").read_text()


@pytest.mark.subprocess
def test_offline_pretrained_weights_refuse_configure_in_one_line(tmp_path):
    """A robot without network and without Meta's file: one line naming the file, the cache folder and
    what to do, exit 1, no traceback, no lock file left; not an active node that never publishes.
    The download goes to a closed local port instead of the internet (DINOV2_ROS_WEIGHTS_MIRROR)."""
    cache = tmp_path / "cache"
    offline = {"DINOV2_ROS_CACHE": str(cache), "DINOV2_ROS_WEIGHTS_MIRROR": "http://127.0.0.1:9"}
    code, text = run_refused_node(tmp_path, ["model.weights:=pretrained", "model.depth_weights:=pretrained"], offline)
    assert code == 1 and "Traceback" not in text, text
    (error,) = [line for line in text.splitlines() if "could not download" in line]
    assert "[ERROR]" in error and "configure failed: WeightsError" in error, error
    assert f"place the file at {cache / 'dinov2_vits14_pretrain.pth'}" in error, error
    depth_file = cache / "dinov2_vits14_nyu_linear4_head.pth"
    assert f"model.depth_weights: could not download {depth_file.name}" in error, "both files, in one line"
    assert "active" not in text, "the node must not go active as if it worked"
    assert [path.name for path in cache.iterdir()] == [], "no lock or partial file left"


@pytest.mark.subprocess
def test_the_tensorrt_backend_without_tensorrt_refuses_configure_before_any_camera_size_is_known(tmp_path):
    """backend.kind tensorrt on a machine without the `tensorrt` package (this one): configure fails in
    one line at start, as it does with a camera size set, instead of an active node that skips every
    frame."""
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: the fault cannot be made")
    code, text = run_refused_node(tmp_path, ["model.weights:=random", "backend.kind:=tensorrt"])
    assert code == 1 and "Traceback" not in text, text
    (error,) = [line for line in text.splitlines() if "[ERROR]" in line or "[FATAL]" in line]
    assert "the TensorRT backend needs the `tensorrt` Python package" in error, error
    assert "active" not in text


@pytest.mark.subprocess
def test_offline_export_of_pretrained_weights_fails_in_one_line(tmp_path):
    environment = {"DINOV2_ROS_CACHE": str(tmp_path / "cache"), "DINOV2_ROS_WEIGHTS_MIRROR": "http://127.0.0.1:9"}
    command = [sys.executable, "-m", "dinov2_ros.cli", "export", "--weights", "pretrained"]
    command += ["--graph-dir", str(tmp_path / "graphs"), "--camera", "160x120"]
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, **environment}
    )
    assert result.returncode == 2, result.stdout + result.stderr
    output = (result.stdout + result.stderr).strip().splitlines()
    assert "Traceback" not in result.stderr and len(output) <= 3, output
    assert any("could not download dinov2_vits14_pretrain.pth" in line for line in output), output
