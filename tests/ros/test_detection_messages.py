"""FrameResult -> messages, and per-camera diagnostics, on hand-made results with known values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.frame_pipeline import CameraFrame, Detection, FrameResult
from dinov2_ros.ros import detection_messages as messages
from dinov2_ros.ros.diagnostics import STALE_INPUT_S, CameraStatistics
from dinov2_ros.ros.perception_node import depth_points

HEADER = Header(frame_id="optical")
HEADER.stamp.sec, HEADER.stamp.nanosec = 12, 345


def result() -> FrameResult:
    image = np.zeros((40, 60, 3), np.uint8)
    model = PinholeCameraModel(np.array([[50.0, 0, 30], [0, 50.0, 20], [0, 0, 1]]), np.zeros(5), 60, 40)
    depth = np.full((40, 60), 2.0, np.float32)
    depth[0, 0] = np.nan
    mask = np.zeros((40, 60), bool)
    mask[10:20, 10:30] = True
    with_pose = Detection(
        3,
        "bolt",
        0.9,
        np.array([10, 10, 30, 20], np.float32),
        mask,
        np.array([0.1, -0.2, 2.0]),
        np.array([0.4, 0.2, 0.05]),
    )
    without_pose = Detection(5, "nut", 0.6, np.array([40, 5, 50, 15], np.float32), None, no_pose_reason="no depth")
    return FrameResult(CameraFrame("cam", image, None, model), depth, [with_pose, without_pose], 0.01)


def test_objects_3d_hold_only_measured_poses_with_the_input_header():
    array = messages.to_detection3d_array(result(), HEADER)
    assert array.header == HEADER and len(array.detections) == 1
    detection = array.detections[0]
    assert detection.header == HEADER and detection.id == "1"
    assert (detection.results[0].hypothesis.class_id, detection.results[0].hypothesis.score) == ("3", 0.9)
    assert detection.bbox.center.position.z == 2.0 and detection.bbox.center.orientation.w == 1.0
    assert (detection.bbox.size.x, detection.bbox.size.y, detection.bbox.size.z) == pytest.approx((0.4, 0.2, 0.05))
    assert detection.results[0].pose.pose == detection.bbox.center


def test_objects_2d_hold_every_detection_as_centre_and_size_in_pixels():
    array = messages.to_detection2d_array(result(), HEADER)
    assert [d.results[0].hypothesis.class_id for d in array.detections] == ["3", "5"]
    assert [d.id for d in array.detections] == ["1", "2"], "ids are the instances image's labels"
    box = array.detections[1].bbox
    assert (box.center.position.x, box.center.position.y, box.size_x, box.size_y) == (45.0, 10.0, 10.0, 10.0)


def test_instances_image_labels_each_pixel_with_its_detection_id_and_the_higher_score_wins():
    frame_result = result()
    overlapping = Detection(7, "washer", 0.95, np.array([25, 12, 45, 18], np.float32), None)
    frame_result.detections.append(overlapping)
    image, info = messages.to_instances_messages(frame_result, HEADER, CameraInfo(width=60, height=40))
    assert (image.encoding, image.width, image.height, image.header) == ("32SC1", 60, 40, HEADER)
    assert (info.header, info.width, info.height) == (HEADER, 60, 40)
    labels = np.frombuffer(image.data, np.int32).reshape(40, 60)
    assert labels[15, 15] == 1, "the bolt's mask"
    assert labels[10, 45] == 2, "the nut has no mask: its box"
    assert labels[15, 28] == 3, "where the bolt (0.9) and the washer (0.95) overlap, the washer"
    assert labels[30, 5] == 0 and labels[15, 5] == 0, "background"
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def test_label_info_names_the_ids():
    info = messages.to_label_info({5: "nut", 3: "bolt"}, 0.4, HEADER)
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(3, "bolt"), (5, "nut")]
    assert info.threshold == pytest.approx(0.4)


def test_depth_messages_keep_nan_and_the_camera_info():
    camera_info = CameraInfo(width=60, height=40, k=[50.0, 0, 30, 0, 50.0, 20, 0, 0, 1], distortion_model="plumb_bob")
    image, info = messages.to_depth_messages(result(), HEADER, camera_info)
    values = np.frombuffer(image.data, np.float32).reshape(40, 60)
    assert image.encoding == "32FC1" and np.isnan(values[0, 0]) and values[1, 1] == 2.0
    assert info.header == HEADER and list(info.k) == list(camera_info.k)


def test_point_cloud_back_projects_valid_depth():
    points = depth_points(result(), stride=10)
    assert points.shape == (4 * 6 - 1, 3)  # the NaN pixel at (0, 0) is left out
    np.testing.assert_allclose(points[:, 2], 2.0)
    cloud = messages.to_point_cloud(points, HEADER)
    assert (cloud.width, cloud.point_step, [f.name for f in cloud.fields]) == (23, 12, ["x", "y", "z"])
    np.testing.assert_allclose(np.frombuffer(cloud.data, np.float32).reshape(-1, 3), points, rtol=1e-6)


def test_markers_clear_then_draw_a_box_and_a_label_per_3d_object():
    array = messages.to_markers(result(), HEADER, {3: "bolt"})
    assert [m.type for m in array.markers[1:]] == [Marker.CUBE, Marker.TEXT_VIEW_FACING]
    assert array.markers[0].action == Marker.DELETEALL
    assert array.markers[2].text == "bolt #1 0.90" and array.markers[1].header == HEADER


def test_track_ids_are_the_ids_of_the_objects_the_instance_labels_and_the_marker_ids():
    tracked = result()
    tracked = FrameResult(
        tracked.frame,
        tracked.depth,
        [dataclasses.replace(d, track_id=t) for d, t in zip(tracked.detections, (70000, 4), strict=True)],
    )
    assert [d.id for d in messages.to_detection2d_array(tracked, HEADER).detections] == ["70000", "4"]
    assert [d.id for d in messages.to_detection3d_array(tracked, HEADER).detections] == ["70000"]
    image, _ = messages.to_instances_messages(tracked, HEADER, CameraInfo(width=60, height=40))
    labels = np.frombuffer(image.data, np.int32).reshape(40, 60)
    assert (labels[15, 15], labels[10, 45]) == (70000, 4), "a label is the track id, past 16 bits too"
    markers = messages.to_markers(tracked, HEADER, {3: "bolt"}).markers[1:]
    assert [m.id for m in markers] == [70000, 70000] and markers[1].text == "bolt #70000 0.90"


def test_debug_image_draws_on_a_copy():
    frame_result = result()
    picture = messages.draw_debug_image(frame_result, {3: "bolt"}, max_depth_m=5.0)
    assert picture.shape == (40, 60, 3) and picture.any()
    assert not frame_result.frame.image_rgb.any(), "the camera image must stay untouched"


def test_debug_image_without_depth_tints_masks_and_nothing_else():
    with_depth = result()
    frame_result = FrameResult(with_depth.frame, None, with_depth.detections, 0.01)
    picture = messages.draw_debug_image(frame_result, {3: "bolt"}, max_depth_m=5.0)
    colour = np.array([int(c * 255) for c in messages.class_colour(3)])
    np.testing.assert_array_equal(picture[15, 20], colour // 2)  # inside the mask, off the outline
    assert not picture[25:].any(), "below every box and caption the black image stays black"


def test_camera_statistics_report_rates_latency_and_reasons():
    stats = CameraStatistics("front", window_s=5.0)
    assert stats.to_status(0.0, "node", dropped=0).level == DiagnosticStatus.WARN
    for i in range(10):
        stats.image_received(i * 0.1, age_s=0.003)
        stats.result_published(i * 0.1, latency_s=0.05, inference_s=0.02, in_node_s=0.001 * i)
    stats.frame_rejected(0.75, "image", "truncated image data")
    status = stats.to_status(1.0, "node", dropped=4)
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.OK and status.hardware_id == "front"
    assert values["input rate (Hz)"] == "2.00" and values["latency median (ms)"] == "50.0"
    assert values["image age at receipt median (ms)"] == "3.0"
    assert values["inference median (ms)"] == "20.0" and values["in node besides inference median (ms)"] == "4.5"
    assert values["frames dropped"] == "4" and values["rejected: image"] == "1"
    assert values["last rejection"] == "image: truncated image data" and values["last rejection age (s)"] == "0.2"
    silent = stats.to_status(1.0 + STALE_INPUT_S + 1.0, "node", dropped=4)
    assert silent.level == DiagnosticStatus.WARN and silent.message.startswith("no image for")


def test_a_camera_waiting_for_its_graph_is_told_apart_from_rejected_frames():
    stats = CameraStatistics("front", window_s=1.0)
    stats.image_received(0.0, age_s=0.003)
    stats.frame_waited_for_graph()
    waiting = stats.to_status(0.5, "node", dropped=0)
    assert waiting.level == DiagnosticStatus.WARN and "graph for their size is being prepared" in waiting.message
    assert "last rejection" not in {kv.key for kv in waiting.values}
    stats.frame_rejected(0.5, "image", "truncated image data")
    assert "see 'last rejection'" in stats.to_status(0.5, "node", dropped=0).message


def test_a_camera_that_stopped_sending_is_not_blamed_on_the_transport():
    """Frames too large for the sender's shared memory never arrive at all; a stream that delivered and
    then stopped is the camera's doing, so the WARN says that instead of the transport's limit."""
    stats = CameraStatistics("front", window_s=1.0)
    stats.subscribed(0.0)
    never = stats.to_status(STALE_INPUT_S + 1.0, "node", dropped=0, image_topic=("/front/image", 1))
    assert "shared-memory segment" in never.message
    for i in range(5):
        stats.image_received(10.0 + i * 0.1, age_s=0.003)
    stopped = stats.to_status(10.4 + STALE_INPUT_S + 1.0, "node", dropped=0, image_topic=("/front/image", 1))
    assert stopped.level == DiagnosticStatus.WARN
    assert "after 5 received" in stopped.message and "the camera stopped sending" in stopped.message
    assert "shared-memory segment" not in stopped.message
    gone = stats.to_status(10.4 + STALE_INPUT_S + 2.0, "node", dropped=0, image_topic=("/front/image", 0))
    assert "after 5 received: /front/image has no publisher any more" in gone.message and "remap" not in gone.message
    # a driver restarted without the large-image profile: its frames never arrive, and that is the cause named
    restarted = stats.to_status(10.4 + STALE_INPUT_S + 3.0, "node", dropped=0, image_topic=("/front/image", 1))
    assert "shared-memory segment" in restarted.message


def test_track_ids_issued_are_reported_once_parts_are_tracked():
    stats = CameraStatistics("front", window_s=1.0)
    stats.objects_published([dataclasses.replace(d, track_id=0) for d in result().detections])
    assert "track ids issued" not in {kv.key for kv in stats.to_status(0.0, "node", dropped=0).values}
    stats.objects_published([dataclasses.replace(d, track_id=7) for d in result().detections])
    stats.objects_published([dataclasses.replace(d, track_id=3) for d in result().detections])
    values = {kv.key: kv.value for kv in stats.to_status(0.0, "node", dropped=0).values}
    assert values["track ids issued"] == "7"
