"""perception_node with what real camera drivers send, published by a separate rclpy node over DDS:
camera_info later than its image after a worker stall, binned and uncalibrated cameras, header
faults, several faults of one camera, and the output topics' image/camera_info pairs."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from node_harness import SceneCamera, export_tiny_center_graph, stamp_of
from node_harness import start_node as start_tiny_node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray

from dinov2_ros.ros.perception_node import PerceptionNode

SECOND = 1_000_000_000


def start_node(context, graph_dir, namespace: str, **overrides) -> PerceptionNode:
    return start_tiny_node(context, graph_dir, namespace, **({"diagnostics.period_s": 0.2} | overrides))


def stall_first_batch(node: PerceptionNode, seconds: float) -> None:
    """The worker's first batch takes `seconds` longer, as a first-frame TensorRT build or a swapped
    -out process does; the graph call itself runs unchanged."""
    process, calls = node.pipeline.process, []

    def stalled(frames):
        if not calls:
            calls.append(True)
            time.sleep(seconds)
        return process(frames)

    node.pipeline.process = stalled


def test_no_good_frame_is_lost_to_pairing_when_camera_info_comes_20_ms_late_after_a_2_s_stall(
    context, graph_dir, harness
):
    # the size configured: its graph is open before the first frame, so no frame waits for it
    overrides = {"pairing.timeout_s": 0.15, "camera.width": 160, "camera.height": 120}
    node = start_node(context, graph_dir, "late_info", reliable=True, **overrides)
    harness.add_node(node)
    stall_first_batch(node, 2.0)
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, "/late_info/image")
    info_pub = harness.publisher(CameraInfo, "/late_info/camera_info")
    outputs = harness.record(Detection2DArray, "/late_info/dinov2/objects_2d")
    statistics, slot = node.cameras["camera"].statistics, node.cameras["camera"].slot
    try:
        for index in range(40):  # 10 Hz; the camera_info of the same stamp 20 ms after its image
            image, info, _ = camera.messages((index + 1) * SECOND // 10)
            image_pub.publish(image)
            harness.spin_for(0.02)
            info_pub.publish(info)
            harness.spin_for(0.08)
        settled = harness.spin_until(lambda: statistics.published + slot.dropped >= statistics.received, 10.0)
        assert statistics.rejected["pairing"] == 0, statistics.last_rejection
        assert statistics.received == 40
        assert settled, "every image is published or replaced by a newer one, none given up"
        assert len({stamp_of(m) for m in outputs}) == statistics.published >= 15  # the frames after the stall
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    ("encoding", "bytes_per_pixel"), [("yuv422_yuy2", 2), ("yuv422", 2), ("bayer_rggb8", 1), ("mono16", 2)]
)
def test_driver_encodings_produce_objects(context, graph_dir, harness, encoding, bytes_per_pixel):
    """What usb_cam (YUYV), UYVY webcams, machine-vision Bayer cameras and 16-bit mono cameras send."""
    namespace = "driver_" + encoding
    node = start_node(context, graph_dir, namespace, reliable=True)
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, f"/{namespace}/image")
    info_pub = harness.publisher(CameraInfo, f"/{namespace}/camera_info")
    outputs = harness.record(Detection2DArray, f"/{namespace}/dinov2/objects_2d")
    pixels = np.random.default_rng(0).integers(0, 256, 120 * 160 * bytes_per_pixel, dtype=np.uint8)
    try:
        for index in range(1, 60):
            image, info, _ = camera.messages(index * SECOND)
            image.encoding, image.step, image.data = encoding, 160 * bytes_per_pixel, pixels.tobytes()
            info_pub.publish(info)
            image_pub.publish(image)
            if harness.spin_until(lambda: len(outputs) >= 2, timeout_s=0.2):
                break
        assert len(outputs) >= 2, node.cameras["camera"].statistics.last_rejection
        assert not node.cameras["camera"].statistics.rejected
    finally:
        node.destroy_node()


def _binned(info: CameraInfo, binning: int) -> CameraInfo:
    """The CameraInfo a driver binning `binning` x `binning` sends: calibration of the full sensor."""
    full = copy.deepcopy(info)
    full.width, full.height = info.width * binning, info.height * binning
    k, p = np.array(info.k).reshape(3, 3), np.array(info.p).reshape(3, 4)
    for matrix in (k, p):  # fx, cx and fy, cy (image_geometry's fromCameraInfo divides exactly these)
        matrix[0, [0, 2]] *= binning
        matrix[1, [1, 2]] *= binning
    full.k, full.p = [float(v) for v in k.reshape(-1)], [float(v) for v in p.reshape(-1)]
    full.binning_x = full.binning_y = binning
    return full


def _rectified_with_distortion(info: CameraInfo) -> CameraInfo:
    """An image_rect stream's CameraInfo: the raw camera's K and D, and P the rectified image's intrinsics."""
    raw = copy.deepcopy(info)
    raw.d = [-0.3, 0.1, 0.001, 0.002, 0.0]
    raw.k = [v * 1.1 if i in (0, 4) else v for i, v in enumerate(info.k)]  # P (unchanged) is the image's
    return raw


SAME_GEOMETRY = {  # the other camera's CameraInfo for the same pixels, and its parameters
    "binned_2x2": (lambda info: _binned(info, 2), {}),
    "rectified_with_d": (_rectified_with_distortion, {"other.rectified": True}),
}


@pytest.mark.parametrize("case", list(SAME_GEOMETRY))
def test_a_camera_described_otherwise_places_objects_where_the_plain_camera_does(
    context, graph_dir, harness, tmp_path, case
):
    """One scene through two cameras: one publishes a plain CameraInfo at the image's resolution, the
    other the full 320x240 sensor calibration with binning 2 (REP 104), or the CameraInfo of a
    rectified image that still carries the raw camera's K and D (with `rectified`); the 3D centres
    must agree. (Without `rectified`, the second case's centres differ: checked when written.)"""
    describe, other_parameters = SAME_GEOMETRY[case]
    namespace = "same_" + case
    parameters = export_tiny_center_graph(graph_dir, tmp_path / "parts.pt", ("bolt", "nut"), (120, 160))
    node = start_node(
        context,
        graph_dir,
        namespace,
        **parameters,
        **{"cameras": ["plain", "other"], "plain.use_depth": True, "other.use_depth": True},
        **{"detection.score_threshold": 0.0},
        reliable=True,
        **other_parameters,
    )
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    streams = ((Image, "image"), (CameraInfo, "camera_info"), (Image, "depth/image"))
    publishers = {
        name: [harness.publisher(kind, f"/{namespace}/{name}/{topic}") for kind, topic in streams]
        for name in ("plain", "other")
    }
    objects = {name: harness.record(Detection3DArray, f"/{namespace}/{name}/dinov2/objects") for name in publishers}

    def both_placed() -> set[int]:
        stamps = [{stamp_of(m) for m in objects[name] if m.detections} for name in publishers]
        return stamps[0] & stamps[1]

    try:
        for index in range(1, 100):
            image, info, depth = camera.messages(index * SECOND)
            for name, sent_info in (("plain", info), ("other", describe(info))):
                image_pub, info_pub, depth_pub = publishers[name]
                info_pub.publish(sent_info)
                depth_pub.publish(depth)
                image_pub.publish(image)
            if harness.spin_until(lambda: both_placed(), timeout_s=0.2):
                break
        stamp = max(both_placed())
        plain, other = (next(m for m in objects[name] if stamp_of(m) == stamp) for name in ("plain", "other"))
        rejected = node.cameras["other"].statistics.rejected
        assert not rejected, node.cameras["other"].statistics.last_rejection

        def centres(array: Detection3DArray) -> dict[str, tuple[float, float, float]]:
            return {
                d.id: (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z)
                for d in array.detections
            }

        assert centres(plain).keys() == centres(other).keys()
        for key, centre in centres(plain).items():
            np.testing.assert_allclose(centres(other)[key], centre, atol=1e-6)
        assert any(abs(x) > 0.01 for x, _, _ in centres(plain).values()), "a centre off the axis checks fx and cx"
    finally:
        node.destroy_node()


def test_an_uncalibrated_camera_keeps_its_2d_objects_and_depth_and_says_so_once(context, graph_dir, harness, capfd):
    node = start_node(context, graph_dir, "uncal", reliable=True, **{"warnings.throttle_s": 0.0})
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, "/uncal/image")
    info_pub = harness.publisher(CameraInfo, "/uncal/camera_info")
    objects_2d = harness.record(Detection2DArray, "/uncal/dinov2/objects_2d")
    objects = harness.record(Detection3DArray, "/uncal/dinov2/objects")
    depth = harness.record(Image, "/uncal/dinov2/depth/image")
    try:
        for index in range(1, 60):
            image, info, _ = camera.messages(index * SECOND)
            info.k, info.p = [0.0] * 9, [0.0] * 12  # camera_info_manager without a calibration file
            info_pub.publish(info)
            image_pub.publish(image)
            if harness.spin_until(lambda: len(objects_2d) >= 3 and len(depth) >= 3, timeout_s=0.2):
                break
        harness.spin_for(0.3)
        assert len(objects_2d) >= 3 and len(depth) >= 3
        assert objects == [], "no 3D objects without intrinsics (and no empty array claiming none are there)"
        assert not node.cameras["camera"].statistics.rejected
        status = node.cameras["camera"].status(node.get_name())
        assert status.level == DiagnosticStatus.WARN and "uncalibrated" in status.message
    finally:
        node.destroy_node()
    logged = capfd.readouterr().err
    assert logged.count("is all zeros, the convention for an uncalibrated camera") == 1


def _publish_until_rejected(harness, node, image_pub, info_pub, image, info, count: int) -> None:
    statistics = node.cameras["camera"].statistics
    for _ in range(50):
        info_pub.publish(info)
        image_pub.publish(image)
        if harness.spin_until(lambda: sum(statistics.rejected.values()) >= count, timeout_s=0.1):
            return
    raise AssertionError(f"the node did not reject frame {count}")


def test_different_problems_of_one_camera_are_each_warned_and_repeats_are_throttled(context, graph_dir, harness, capfd):
    node = start_node(context, graph_dir, "faults", reliable=True, **{"warnings.throttle_s": 5.0})
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, "/faults/image")
    info_pub = harness.publisher(CameraInfo, "/faults/camera_info")

    def faulty(index: int, **changes):
        image, info, _ = camera.messages(index * SECOND)
        for key, value in changes.items():
            setattr(image, key, value)
        return image, info

    faults = [
        faulty(1, encoding="nv12"),
        faulty(2, step=100),
        faulty(3, data=bytes(1000)),
        faulty(4, data=bytes(2000)),  # truncated again, other numbers: throttled
        faulty(5, encoding="nv21"),  # another unknown encoding: its own problem
    ]
    try:
        for count, (image, info) in enumerate(faults, start=1):
            _publish_until_rejected(harness, node, image_pub, info_pub, image, info, count)
            harness.spin_for(0.5)
    finally:
        node.destroy_node()
    logged = [line for line in capfd.readouterr().err.splitlines() if "frame skipped (image)" in line]
    assert len(logged) == 4, "\n".join(logged)
    for expected in ("'nv12'", "wrong step", "truncated image data: 1000 bytes", "'nv21'"):
        assert sum(expected in line for line in logged) == 1, expected


def test_an_incompatible_qos_is_reported_for_each_topic(context, graph_dir, harness, capfd):
    node = start_node(context, graph_dir, "qos_each", reliable=True)
    harness.add_node(node)
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    harness.publisher(Image, "/qos_each/image", best_effort)
    harness.publisher(CameraInfo, "/qos_each/camera_info", best_effort)
    logged = ""

    def both() -> bool:
        nonlocal logged
        logged += capfd.readouterr().err
        return "of /qos_each/image offers" in logged and "of /qos_each/camera_info offers" in logged

    try:
        assert harness.spin_until(both, timeout_s=15.0), logged
    finally:
        node.destroy_node()


def test_zero_stamps_and_empty_frame_ids_are_warned_processed_and_kept_out_of_latency(
    context, graph_dir, harness, capfd
):
    node = start_node(context, graph_dir, "headers", reliable=True)  # warnings.throttle_s: 5 s
    harness.add_node(node)
    camera = SceneCamera(160, 120, frame_id="")
    image_pub = harness.publisher(Image, "/headers/image")
    info_pub = harness.publisher(CameraInfo, "/headers/camera_info")
    outputs = harness.record(Detection2DArray, "/headers/dinov2/objects_2d")
    try:
        for _ in range(60):
            image, info, _ = camera.messages(0)
            info_pub.publish(info)
            image_pub.publish(image)
            if harness.spin_until(lambda: len(outputs) >= 3, timeout_s=0.2):
                break
        assert len(outputs) >= 3 and all(stamp_of(m) == 0 for m in outputs)
        status = {v.key: v.value for v in node.cameras["camera"].status(node.get_name()).values}
        assert status["latency median (ms)"] == status["image age at receipt median (ms)"] == "n/a"
        assert int(status["frames published"]) >= 3
    finally:
        node.destroy_node()
    logged = capfd.readouterr().err
    assert logged.count("image header stamp is 0") == 1, "warned, throttled"
    assert logged.count("image header frame_id is empty") == 1


@pytest.mark.parametrize("cameras", [["camera"], ["front", "rear"]])
def test_every_output_image_has_its_camera_info_beside_it(context, graph_dir, cameras):
    """image_transport's rule, which image_pipeline and RViz follow: `<ns>/image` <-> `<ns>/camera_info`."""
    # A namespace of its own per case: the ROS graph is eventually consistent, and the participant of
    # the case before may still be known with the same node, so the lookup polls until it is complete.
    node = start_node(context, graph_dir, f"siblings{len(cameras)}", cameras=cameras)
    try:
        deadline = time.monotonic() + 10.0
        while True:
            published = dict(node.get_publisher_names_and_types_by_node(node.get_name(), node.get_namespace()))
            images = [topic for topic, types in published.items() if "sensor_msgs/msg/Image" in types]
            if len(images) >= 3 * len(cameras) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        node.destroy_node()
    assert len(images) == 3 * len(cameras)  # depth, debug and instances per camera
    for topic in images:
        namespace, _, leaf = topic.rpartition("/")
        assert leaf == "image", f"{topic}: an image topic is named <ns>/image"
        assert "sensor_msgs/msg/CameraInfo" in published.get(f"{namespace}/camera_info", []), topic


def _stream(harness, namespace: str, stamps, outputs, depth: bool = False) -> None:
    """Publish one SceneCamera frame per stamp (ns), with a depth image without one valid pixel when
    `depth` (16UC1 zeros: no return anywhere), and wait for its objects_2d."""
    camera = SceneCamera(160, 120)
    info_pub = harness.publisher(CameraInfo, f"/{namespace}/camera_info")
    depth_pub = harness.publisher(Image, f"/{namespace}/depth/image") if depth else None
    image_pub = harness.publisher(Image, f"/{namespace}/image")
    for stamp in stamps:
        image, info, _ = camera.messages(stamp)
        info_pub.publish(info)
        if depth_pub is not None:
            blind = Image(header=image.header, height=120, width=160, encoding="16UC1", step=320)
            blind.data = bytes(160 * 120 * 2)
            depth_pub.publish(blind)
        image_pub.publish(image)
        done = len(outputs) + 1
        harness.spin_until(lambda done=done: len(outputs) >= done, timeout_s=1.0)


def test_stamps_in_the_future_or_going_backwards_are_warned_and_kept_out_of_the_latency(
    context, graph_dir, harness, capfd
):
    """A stamp a day ahead read as a latency of minus one day, looped stamps as 16 s, both with status OK."""
    ahead = start_node(context, graph_dir, "stamps_ahead", reliable=True)
    looped = start_node(context, graph_dir, "stamps_looped", reliable=True)
    for node in (ahead, looped):
        harness.add_node(node)
    ahead_out = harness.record(Detection2DArray, "/stamps_ahead/dinov2/objects_2d")
    looped_out = harness.record(Detection2DArray, "/stamps_looped/dinov2/objects_2d")
    try:
        now = time.time_ns()
        _stream(harness, "stamps_ahead", [now + 86_400 * SECOND + i * SECOND // 30 for i in range(8)], ahead_out)
        ahead_then = {kv.key: kv.value for kv in ahead.cameras["camera"].status(ahead.get_name()).values}
        # stamps right again: latency counts again at once (the future stamps were not the newest)
        _stream(
            harness, "stamps_ahead", [time.time_ns() - SECOND // 2 + i * SECOND // 100 for i in range(4)], ahead_out
        )
        live = [time.time_ns() + i * SECOND // 30 for i in range(5)]
        _stream(
            harness, "stamps_looped", live + [live[0] - 16 * SECOND + i * SECOND // 30 for i in range(8)], looped_out
        )
        harness.spin_for(0.3)
        statuses = {
            name: node.cameras["camera"].status(node.get_name())
            for name, node in (("ahead", ahead), ("looped", looped))
        }
    finally:
        ahead.destroy_node()
        looped.destroy_node()
    values = {name: {kv.key: kv.value for kv in status.values} for name, status in statuses.items()}
    assert len(ahead_out) >= 6 and len(looped_out) >= 10, "such frames are processed"
    assert ahead_then["latency median (ms)"] == "n/a" and int(ahead_then["stamps left out of latency"]) >= 6
    assert statuses["ahead"].level == DiagnosticStatus.WARN and "left out of the latency" in statuses["ahead"].message
    assert 0 <= float(values["ahead"]["latency median (ms)"]) < 5000, "right stamps after wrong ones count"
    assert values["ahead"]["stamps left out of latency"] == ahead_then["stamps left out of latency"]
    assert values["looped"]["last stamp problem"] == "stamp went backwards"
    assert 0 <= float(values["looped"]["latency max (ms)"]) < 5000, "the looped frames are not in the latency"
    logged = capfd.readouterr().err
    assert logged.count("ahead of this node's clock") == 1, "warned, throttled"
    assert logged.count("behind an earlier image's") == 1


def test_a_depth_image_without_a_valid_pixel_publishes_no_3d_objects_and_says_so(context, graph_dir, harness, capfd):
    """An empty Detection3DArray tells a planner the view is empty; a blind depth camera must not."""
    node = start_node(context, graph_dir, "blind", reliable=True, **{"camera.use_depth": True})
    harness.add_node(node)
    objects_2d = harness.record(Detection2DArray, "/blind/dinov2/objects_2d")
    objects = harness.record(Detection3DArray, "/blind/dinov2/objects")
    try:
        _stream(harness, "blind", [(index + 1) * SECOND for index in range(6)], objects_2d, depth=True)
        harness.spin_for(0.3)
        status = node.cameras["camera"].status(node.get_name())
    finally:
        node.destroy_node()
    values = {kv.key: kv.value for kv in status.values}
    assert len(objects_2d) >= 4 and objects == []
    assert int(values["frames without 3D objects: no valid depth"]) >= 4
    assert status.level == DiagnosticStatus.WARN and "no 3D objects in the newest frame" in status.message
    logged = capfd.readouterr().err
    assert logged.count("depth image on /blind/depth/image has no valid pixel") == 1, "warned, throttled"


@pytest.mark.parametrize(
    ("remaps", "expected"),
    [
        ([], "/ns/image/compressed"),
        (["image:=/camera/color/image_raw"], "/camera/color/image_raw/compressed"),
        (["image:=/camera/color/image_raw", "image/compressed:=/jpeg"], "/jpeg"),
    ],
    ids=["no remap", "the image remapped", "the compressed stream remapped itself"],
)
def test_the_compressed_stream_follows_the_image_remap_as_image_transport_does(context, remaps, expected):
    """image_transport subscribes `<remapped image topic>/compressed`: `-r image:=X` is all a user of
    `ros2 run` gives, as for a raw camera (a real rclpy node with those remapping arguments)."""
    from rclpy.node import Node

    from dinov2_ros.ros.camera_streams import CameraStreams
    from dinov2_ros.ros.node_parameters import CameraSettings

    arguments = ["--ros-args", *(part for remap in remaps for part in ("-r", remap))]
    node = Node("remapped", namespace="ns", context=context, cli_args=arguments)
    try:
        camera = CameraStreams(node, CameraSettings("camera", "compressed", False, False), "", lambda: None, print)
        camera.subscribe()
        assert camera.image_topic == expected
        camera.unsubscribe()
    finally:
        node.destroy_node()
