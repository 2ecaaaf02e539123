"""perception_node in this process with real rclpy and DDS: several cameras, the bad-input matrix,
the class services and run-time parameters. The graphs are tiny random-weight encoders (see
node_harness); the cross-process contract and the soak are in their own files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from node_harness import SceneCamera, export_tiny_center_graph, stamp_of
from node_harness import start_node as start_tiny_node
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import ListParameters, SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo

from dinov2_ros.ros.image_conversion import array_to_image
from dinov2_ros.ros.perception_node import PerceptionNode

SECOND = 1_000_000_000


def start_node(context, graph_dir, namespace: str, **overrides) -> PerceptionNode:
    return start_tiny_node(
        context, graph_dir, namespace, **({"warnings.throttle_s": 0.0, "diagnostics.period_s": 0.2} | overrides)
    )


def test_two_cameras_of_different_resolutions_in_one_node(context, graph_dir, harness):
    node = start_node(context, graph_dir, "two", cameras=["front", "side"])
    harness.add_node(node)
    cameras = {"front": SceneCamera(160, 120, "front_optical"), "side": SceneCamera(128, 96, "side_optical")}
    publishers = {
        name: (
            harness.publisher(Image, f"/two/{name}/image"),
            harness.publisher(type(cam.messages(0)[1]), f"/two/{name}/camera_info"),
        )
        for name, cam in cameras.items()
    }
    depth = {name: harness.record(Image, f"/two/{name}/dinov2/depth/image") for name in cameras}
    try:
        for index in range(1, 100):
            for name, camera in cameras.items():
                image, info, _ = camera.messages(index * SECOND)
                publishers[name][1].publish(info)
                publishers[name][0].publish(image)
            if harness.spin_until(lambda: all(len(d) >= 3 for d in depth.values()), timeout_s=0.1):
                break
        for name, camera in cameras.items():
            latest = depth[name][-1]
            assert (latest.width, latest.height, latest.encoding) == (camera.width, camera.height, "32FC1")
            assert latest.header.frame_id == camera.frame_id
        assert set(node.pipeline.graphs) == {(120, 160), (96, 128)}
    finally:
        node.destroy_node()


def test_a_depth_camera_with_holes_gets_its_completed_depth_and_the_fit_on_diagnostics(context, graph_dir, harness):
    """The plumbing with the graph's real output (random weights: its depth does not match the scene's,
    so the fit is refused and the holes stay NaN; tests/perception/test_depth_completion.py holds the
    filling itself): the completed depth is the sensor's where it has a return, under the input's
    header, beside its camera_info, and /diagnostics reports the fit; the pick candidates (whatever
    random weights detect) arrive under the input's header too."""
    node = start_node(context, graph_dir, "holes", **{"camera.use_depth": True})
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    image_pub, info_pub, depth_pub = (
        harness.publisher(kind, f"/holes/{topic}")
        for kind, topic in ((Image, "image"), (type(camera.messages(0)[1]), "camera_info"), (Image, "depth/image"))
    )
    completed = harness.record(Image, "/holes/dinov2/depth/completed/image")
    completed_info = harness.record(type(camera.messages(0)[1]), "/holes/dinov2/depth/completed/camera_info")
    diagnostics = harness.record(DiagnosticArray, "/diagnostics")
    candidates = harness.record(Detection3DArray, "/holes/dinov2/pick_candidates")
    sensor = camera.scene.depth.copy()
    sensor[20:60, 30:90] = np.nan  # a shiny part's hole

    def fit_reported() -> bool:
        statuses = [s for d in diagnostics for s in d.status if s.hardware_id == "camera"]
        return any("depth fit inliers (%)" in {v.key for v in s.values} for s in statuses)

    try:
        for index in range(1, 100):
            image, info, _ = camera.messages(index * SECOND)
            depth = array_to_image(sensor, "32FC1", image.header)
            for publisher, message in ((info_pub, info), (depth_pub, depth), (image_pub, image)):
                publisher.publish(message)
            if harness.spin_until(lambda: completed and completed_info and candidates and fit_reported(), 0.1):
                break
        latest = completed[-1]
        assert (latest.encoding, latest.header.frame_id) == ("32FC1", camera.frame_id)
        assert stamp_of(latest) in {stamp_of(m) for m in completed_info}
        assert candidates[-1].header.frame_id == camera.frame_id and stamp_of(candidates[-1]) % SECOND == 0
        values = np.frombuffer(latest.data, np.float32).reshape(camera.height, camera.width)
        valid = np.isfinite(sensor)
        np.testing.assert_array_equal(values[valid], sensor[valid])
        assert fit_reported()
    finally:
        node.destroy_node()


def _jpeg(camera: SceneCamera, stamp_ns: int) -> CompressedImage:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(camera.scene.image_rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return CompressedImage(header=camera.header(stamp_ns), format="jpeg", data=data.tobytes())


def _unknown_encoding(image, info, depth):
    image.encoding = "nv12"
    return image, info, depth


def _wrong_step(image, info, depth):
    image.step -= 3
    return image, info, depth


def _truncated(image, info, depth):
    image.data = image.data[: len(image.data) // 2]
    return image, info, depth


def _corrupt_jpeg(image, info, depth):
    return CompressedImage(header=image.header, format="jpeg", data=b"\xff\xd8\xff\xe0 not a jpeg"), info, depth


def _negative_focal_length(image, info, depth):
    info.k = [-100.0, *info.k[1:]]
    return image, info, depth


def _compressed_depth(image, info, depth):
    return CompressedImage(header=image.header, format="16UC1; compressedDepth png", data=b"\x89PNG"), info, depth


def _no_camera_info(image, info, depth):
    return image, None, depth


def _three_plumb_bob_coefficients(image, info, depth):
    info.distortion_model, info.d = "plumb_bob", [-0.1, 0.02, 0.001]  # OpenCV asserts on this count
    return image, info, depth


def _camera_info_of_another_size(image, info, depth):
    info.width, info.height = 320, 240  # no binning: the calibration of another resolution
    return image, info, depth


def _depth_of_another_size(image, info, depth):
    small = Image(header=depth.header, height=60, width=80, encoding="32FC1", step=320)
    small.data = np.ones((60, 80), np.float32).tobytes()
    return image, info, small


BAD_INPUTS = {
    "unknown encoding": (_unknown_encoding, {}, "image", "unsupported image encoding 'nv12'"),
    "wrong step": (_wrong_step, {}, "image", "wrong step for rgb8"),
    "truncated data": (_truncated, {}, "image", "truncated image data"),
    "corrupt jpeg": (_corrupt_jpeg, {"camera.transport": "compressed"}, "image", "corrupt compressed image"),
    "compressed depth on the image topic": (
        _compressed_depth,
        {"camera.transport": "compressed"},
        "image",
        "compressed depth ('16UC1; compressedDepth png') is not a camera image",
    ),
    "negative focal length": (_negative_focal_length, {}, "camera_info", "focal lengths must be positive"),
    "plumb_bob with 3 coefficients": (
        _three_plumb_bob_coefficients,
        {},
        "camera_info",
        "the plumb_bob model takes 4, 5, 8, 12, 14 coefficients in D",
    ),
    "camera_info never arrives": (_no_camera_info, {}, "pairing", "no camera_info with the image stamp"),
    "camera_info of another size": (
        _camera_info_of_another_size,
        {},
        "size",
        "CameraInfo describes a 320x240 image (sensor 320x240, binning 0x0, no roi; REP 104) but the image is 160x120",
    ),
    "depth of another size": (
        _depth_of_another_size,
        {"camera.use_depth": True},
        "depth",
        "depth image on /bad_depth_of_another_size/depth/image is 80x60 but the camera image on "
        "/bad_depth_of_another_size/image is 160x120",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_skipped_counted_and_warned_while_good_frames_around_it_produce_output(
    case, context, graph_dir, harness, capfd
):
    corrupt, overrides, category, message = BAD_INPUTS[case]
    namespace = "bad_" + case.replace(" ", "_").replace("-", "_")
    node = start_node(context, graph_dir, namespace, **{"pairing.timeout_s": 0.3} | overrides)
    harness.add_node(node)
    compressed = overrides.get("camera.transport") == "compressed"
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(
        CompressedImage if compressed else Image, f"/{namespace}/image" + ("/compressed" if compressed else "")
    )
    info_pub = harness.publisher(type(camera.messages(0)[1]), f"/{namespace}/camera_info")
    depth_pub = harness.publisher(Image, f"/{namespace}/depth/image")
    outputs = harness.record(Detection2DArray, f"/{namespace}/dinov2/objects_2d")
    diagnostics = harness.record(DiagnosticArray, "/diagnostics")
    statistics = node.cameras["camera"].statistics

    def publish(stamp_ns: int, bad: bool = False) -> None:
        image, info, depth = camera.messages(stamp_ns)
        if compressed:
            image = _jpeg(camera, stamp_ns)
        if bad:
            image, info, depth = corrupt(image, info, depth)
        for publisher, msg in ((info_pub, info), (depth_pub, depth), (image_pub, image)):
            if msg is not None:
                publisher.publish(msg)

    def published_until(stamp_ns: int, done, attempts: int = 50) -> bool:
        for _ in range(attempts):  # best effort: repeat until the node has taken the frame
            publish(stamp_ns, bad=stamp_ns == 2 * SECOND)
            if harness.spin_until(done, timeout_s=0.2):
                return True
        return False

    try:
        assert published_until(1 * SECOND, lambda: any(stamp_of(m) == 1 * SECOND for m in outputs))
        assert published_until(2 * SECOND, lambda: statistics.rejected[category] >= 1)
        assert published_until(3 * SECOND, lambda: any(stamp_of(m) == 3 * SECOND for m in outputs))
        assert 2 * SECOND not in {stamp_of(m) for m in outputs}
        assert message in statistics.last_rejection
        assert "camera 'camera'" not in statistics.last_rejection, "the warning names the camera once, not twice"

        def reported() -> bool:
            statuses = [s for d in diagnostics for s in d.status if s.hardware_id == "camera"]
            return any({v.key: v.value for v in s.values}.get(f"rejected: {category}", "0") != "0" for s in statuses)

        assert harness.spin_until(reported, timeout_s=3.0), "/diagnostics must count the rejected frame"
    finally:
        node.destroy_node()
    logged = capfd.readouterr().err
    assert f"camera 'camera': frame skipped ({category})" in logged and message in logged


def test_an_image_stream_that_stops_and_restarts_keeps_producing_output(context, graph_dir, harness):
    node = start_node(context, graph_dir, "restart")
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, "/restart/image")
    info_pub = harness.publisher(type(camera.messages(0)[1]), "/restart/camera_info")
    outputs = harness.record(Detection2DArray, "/restart/dinov2/objects_2d")
    diagnostics = harness.record(DiagnosticArray, "/diagnostics")

    def stream(first_stamp_s: int, frames: int) -> None:
        for index in range(frames):
            image, info, _ = camera.messages((first_stamp_s + index) * SECOND)
            info_pub.publish(info)
            image_pub.publish(image)
            harness.spin_for(0.05)

    try:
        stream(100, 10)
        assert harness.spin_until(lambda: len(outputs) >= 3)
        before = len(outputs)
        diagnostics.clear()
        harness.spin_for(2.6)  # the camera is silent

        def camera_status() -> list[DiagnosticStatus]:
            return [s for d in diagnostics for s in d.status if s.hardware_id == "camera"]

        assert any(s.level == DiagnosticStatus.WARN and "no image for" in s.message for s in camera_status())
        stream(5, 10)  # restarted: stamps start again from a lower value
        assert harness.spin_until(lambda: len(outputs) >= before + 3)
        assert {stamp_of(m) // SECOND for m in outputs[before:]} <= set(range(5, 15))
    finally:
        node.destroy_node()


def _request(**fields) -> SetParameters.Request:
    return SetParameters.Request(
        parameters=[ParameterMsg(name=k, value=Parameter(k, value=v).get_parameter_value()) for k, v in fields.items()]
    )


def test_add_class_service_round_trip_changes_the_objects_published(context, graph_dir, harness, tmp_path):
    classes_file = tmp_path / "classes.npz"
    node = start_node(context, graph_dir, "teach", **{"prototypes.file": str(classes_file)})
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, "/teach/image")
    info_pub = harness.publisher(type(camera.messages(0)[1]), "/teach/camera_info")
    objects = harness.record(Detection2DArray, "/teach/dinov2/objects_2d")
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    labels = harness.record(LabelInfo, "/teach/dinov2/label_info", latched)
    add = harness.node.create_client(SetParameters, "/teach/dinov2/add_class")
    remove = harness.node.create_client(SetParameters, "/teach/dinov2/remove_class")
    listing = harness.node.create_client(ListParameters, "/teach/dinov2/list_classes")
    stamp = [0]

    def frames_until(done) -> bool:
        for _ in range(100):
            stamp[0] += 1
            image, info, _ = camera.messages(stamp[0] * SECOND)
            info_pub.publish(info)
            image_pub.publish(image)
            if harness.spin_until(done, timeout_s=0.05):
                return True
        return False

    call = harness.call

    try:
        assert frames_until(lambda: len(objects) >= 2)
        assert objects[-1].detections == []  # no class taught yet
        box = [float(v) for v in camera.scene.boxes[0]]
        result = call(add, _request(class_name="part", box=box)).results[0]
        assert result.successful, result.reason
        assert "class 'part' has id 0" in result.reason
        seen = len(objects)
        assert frames_until(lambda: len(objects) > seen + 1 and objects[-1].detections)
        hypotheses = {d.results[0].hypothesis.class_id for d in objects[-1].detections}
        assert hypotheses == {"0"}
        assert harness.spin_until(lambda: labels and [c.class_name for c in labels[-1].class_map] == ["part"])
        assert list(call(listing, ListParameters.Request()).result.names) == ["part"]
        restarted = start_node(context, graph_dir, "teach_again", **{"prototypes.file": str(classes_file)})
        assert restarted.pipeline.labels() == {0: "part"}, "taught classes must survive a restart"
        restarted.destroy_node()

        refused = call(add, _request(class_name="part", box=box, camera="nope")).results[0]
        assert not refused.successful and "must name one of the node's cameras ['camera']" in refused.reason
        refused = call(add, _request(box=box)).results[0]
        assert not refused.successful and "class_name" in refused.reason

        assert call(remove, _request(class_name="part")).results[0].successful
        seen = len(objects)
        assert frames_until(lambda: len(objects) > seen + 1)
        assert objects[-1].detections == []
        assert harness.spin_until(lambda: labels[-1].class_map == [])
    finally:
        node.destroy_node()


def test_thresholds_change_at_run_time_and_read_only_parameters_do_not(context, graph_dir, harness):
    node = start_node(context, graph_dir, "params")
    try:
        results = node.set_parameters([Parameter("detection.score_threshold", value=0.8)])
        assert results[0].successful and node.pipeline.score_threshold == 0.8
        results = node.set_parameters([Parameter("detection.score_threshold", value=1.5)])
        assert not results[0].successful and node.pipeline.score_threshold == 0.8
        results = node.set_parameters([Parameter("model.weights", value="other.pth")])
        assert not results[0].successful and "read-only" in results[0].reason
        results = node.set_parameters([Parameter("pairing.timeout_s", value=0.5)])
        assert results[0].successful and node.cameras["camera"].slot.timeout_ns == 500_000_000
        descriptor = node.describe_parameter("detection.score_threshold")
        assert descriptor.floating_point_range[0].to_value == 1.0 and descriptor.description
    finally:
        node.destroy_node()


def test_a_trained_center_head_runs_with_the_class_names_it_was_trained_on(context, graph_dir, harness, tmp_path):
    parameters = export_tiny_center_graph(graph_dir, tmp_path / "parts.pt", ("bolt", "nut"), (120, 160))
    node = start_node(context, graph_dir, "trained", **parameters, **{"detection.score_threshold": 0.0})
    harness.add_node(node)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    labels = harness.record(LabelInfo, "/trained/dinov2/label_info", latched)
    objects = harness.record(Detection2DArray, "/trained/dinov2/objects_2d")
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, "/trained/image")
    info_pub = harness.publisher(type(camera.messages(0)[1]), "/trained/camera_info")
    for index in range(1, 60):
        image, info, _ = camera.messages(index * SECOND)
        info_pub.publish(info)
        image_pub.publish(image)
        if harness.spin_until(lambda: labels and objects, timeout_s=0.2):
            break
    assert [(c.class_id, c.class_name) for c in labels[-1].class_map] == [(0, "bolt"), (1, "nut")]
    detections = objects[-1].detections
    assert detections, "a random head with threshold 0 reports its top-k peaks"
    assert {d.results[0].hypothesis.class_id for d in detections} <= {"0", "1"}
    services = {name for name, _ in node.get_service_names_and_types()}
    assert "/trained/dinov2/add_class" not in services, "a trained head's classes are fixed"


def test_a_trained_head_for_another_encoder_is_refused_with_the_reason(context, graph_dir, tmp_path):
    from dinov2_ros.model.heads.center import CenterHead, CenterHeadInfo, save_center_head

    checkpoint = save_center_head(
        tmp_path / "other.pt",
        CenterHead(32, 2, 8),
        CenterHeadInfo("vits14:pretrained", (112, 112), "stretch", ("a", "b"), 32, 8),
    )
    # the camera's size configured: its graph is made at configure, where the exporter reads the head
    # (the robot process never loads a checkpoint) and refuses it in one line
    overrides = {"model.detector": "center", "model.detector_weights": str(checkpoint)}
    overrides |= {"camera.width": 160, "camera.height": 120}
    with pytest.raises(ValueError, match="trained on encoder 'vits14:pretrained' features, not 'tiny:random'"):
        start_node(context, graph_dir, "refused", **overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.weights": ""}, "model.weights is empty"),
        ({"cameras": ["front", "front"]}, "distinct names"),
        ({"model.input_height": 100}, "must be a multiple of 14"),
        ({"model.variant": "unknown_net"}, "not a released DINOv2 variant"),
        ({"model.detector": "center"}, "model.detector_weights is empty"),
    ],
)
def test_a_configuration_the_node_cannot_run_says_what_to_change(context, graph_dir, overrides, message):
    with pytest.raises(ValueError, match=message):
        start_node(context, graph_dir, "config", **overrides)


def test_an_incompatible_camera_qos_is_logged_with_the_parameter_that_fixes_it(context, graph_dir, harness, capfd):
    node = start_node(context, graph_dir, "qos", reliable=True)
    harness.add_node(node)
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    harness.publisher(Image, "/qos/image", best_effort)
    try:
        logged = ""

        def complained() -> bool:
            nonlocal logged
            logged += capfd.readouterr().err
            return "qos_overrides./qos/image.subscription.reliability:=best_effort" in logged

        assert harness.spin_until(complained, timeout_s=10.0)
    finally:
        node.destroy_node()
    fix = "qos_overrides./qos/image.subscription.reliability:=best_effort"
    assert "/qos/image" in logged and "RELIABILITY" in logged and fix in logged


def test_a_qos_override_changes_its_own_topic_only(context, graph_dir):
    """rclpy's overrides change the profile they are given: each subscription has its own, so making the
    image reliable leaves camera_info and depth best effort (a best-effort driver still pairs)."""
    override = {"qos_overrides./qos_one/image.subscription.reliability": "reliable", "camera.use_depth": True}
    node = start_node(context, graph_dir, "qos_one", **override)
    try:
        reliability = {
            topic: node.get_subscriptions_info_by_topic(f"/qos_one/{topic}")[0].qos_profile.reliability
            for topic in ("image", "camera_info", "depth/image")
        }
    finally:
        node.destroy_node()
    assert reliability == {
        "image": ReliabilityPolicy.RELIABLE,
        "camera_info": ReliabilityPolicy.BEST_EFFORT,
        "depth/image": ReliabilityPolicy.BEST_EFFORT,
    }


def test_points_are_advertised_only_while_the_output_is_on(context, graph_dir):
    node = start_node(context, graph_dir, "points_on")
    try:
        assert node.count_publishers("/points_on/dinov2/points") == 0
        assert node.set_parameters([Parameter("output.points", value=True)])[0].successful
        assert node.count_publishers("/points_on/dinov2/points") == 1
        assert node.set_parameters([Parameter("output.points", value=False)])[0].successful
        assert node.count_publishers("/points_on/dinov2/points") == 0
    finally:
        node.destroy_node()


def test_diagnostics_keep_coming_under_sim_time_with_no_clock(context, graph_dir, harness):
    """A bag-replay setup whose /clock has not started yet still reports (the timer is on the steady clock)."""
    diagnostics = harness.record(DiagnosticArray, "/diagnostics")
    node = start_node(context, graph_dir, "sim_time", use_sim_time=True)
    harness.add_node(node)
    try:
        # stamped with sim time 0: this node's, from before any /clock
        assert harness.spin_until(
            lambda: any(
                msg.header.stamp.sec == 0 and msg.status[0].name == "sim_time/dinov2: model" for msg in diagnostics
            ),
            timeout_s=5.0,
        ), "no /diagnostics from a node on sim time before /clock"
    finally:
        node.destroy_node()


def test_a_renamed_node_serves_its_class_services_under_its_own_name(context, graph_dir):
    from node_harness import model_parameters

    from dinov2_ros.ros.node_main import bring_up

    parameters = [Parameter(name, value=value) for name, value in model_parameters(graph_dir, "tiny").items()]
    node = PerceptionNode(
        context=context,
        namespace="renamed",
        parameter_overrides=parameters,
        cli_args=["--ros-args", "-r", "__node:=perc"],
    )
    try:
        bring_up(node)
        services = {name for name, _ in node.get_service_names_and_types_by_node("perc", "/renamed")}
    finally:
        node.destroy_node()
    assert {"/renamed/perc/add_class", "/renamed/perc/remove_class"} <= services


def test_frames_given_up_for_a_depth_topic_without_publisher_say_so(context, graph_dir, harness):
    """use_depth with no depth driver running (or not remapped): the skip says the depth topic has no
    publisher, the actual cause, not only 'check the stamps'."""
    node = start_node(context, graph_dir, "no_depth_driver", **{"camera.use_depth": True, "pairing.timeout_s": 0.2})
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, "/no_depth_driver/image")
    info_pub = harness.publisher(type(camera.messages(0)[1]), "/no_depth_driver/camera_info")
    statistics = node.cameras["camera"].statistics
    try:
        for stamp in range(1, 40):
            image, info, _ = camera.messages(stamp * SECOND // 10)
            info_pub.publish(info)
            image_pub.publish(image)
            if harness.spin_until(lambda: statistics.rejected["pairing"] >= 1, timeout_s=0.1):
                break
        assert statistics.rejected["pairing"] >= 1
        assert "no depth image with the image stamp" in statistics.last_rejection
        assert "/no_depth_driver/depth/image has no publisher" in statistics.last_rejection
    finally:
        node.destroy_node()
