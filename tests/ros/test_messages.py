"""FrameResult -> messages, and per-camera diagnostics, on hand-made results with known values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.frame import CameraFrame, Detection, FrameResult
from dinov2_ros.ros.messages.detections import to_detection2d_array, to_detection3d_array, to_label_info
from dinov2_ros.ros.messages.images import draw_debug_image, to_depth_messages, to_instances_messages
from dinov2_ros.ros.messages.markers import class_colour, to_markers, to_pick_markers
from dinov2_ros.ros.messages.points import depth_points, to_point_cloud

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
    array = to_detection3d_array(result(), HEADER)
    assert array.header == HEADER and len(array.detections) == 1
    detection = array.detections[0]
    assert detection.header == HEADER and detection.id == "1"
    assert (detection.results[0].hypothesis.class_id, detection.results[0].hypothesis.score) == ("3", 0.9)
    assert detection.bbox.center.position.z == 2.0 and detection.bbox.center.orientation.w == 1.0
    assert (detection.bbox.size.x, detection.bbox.size.y, detection.bbox.size.z) == pytest.approx((0.4, 0.2, 0.05))
    assert detection.results[0].pose.pose == detection.bbox.center


def test_objects_2d_hold_every_detection_as_centre_and_size_in_pixels():
    array = to_detection2d_array(result(), HEADER)
    assert [d.results[0].hypothesis.class_id for d in array.detections] == ["3", "5"]
    assert [d.id for d in array.detections] == ["1", "2"], "ids are the instances image's labels"
    box = array.detections[1].bbox
    assert (box.center.position.x, box.center.position.y, box.size_x, box.size_y) == (45.0, 10.0, 10.0, 10.0)


def test_instances_image_labels_each_pixel_with_its_detection_id_and_the_higher_score_wins():
    frame_result = result()
    overlapping = Detection(7, "washer", 0.95, np.array([25, 12, 45, 18], np.float32), None)
    frame_result.detections.append(overlapping)
    image, info = to_instances_messages(frame_result, HEADER, CameraInfo(width=60, height=40))
    assert (image.encoding, image.width, image.height, image.header) == ("32SC1", 60, 40, HEADER)
    assert (info.header, info.width, info.height) == (HEADER, 60, 40)
    labels = np.frombuffer(image.data, np.int32).reshape(40, 60)
    assert labels[15, 15] == 1, "the bolt's mask"
    assert labels[10, 45] == 2, "the nut has no mask: its box"
    assert labels[15, 28] == 3, "where the bolt (0.9) and the washer (0.95) overlap, the washer"
    assert labels[30, 5] == 0 and labels[15, 5] == 0, "background"
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def test_label_info_names_the_ids():
    info = to_label_info({5: "nut", 3: "bolt"}, 0.4, HEADER)
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(3, "bolt"), (5, "nut")]
    assert info.threshold == pytest.approx(0.4)


def test_depth_messages_keep_nan_and_the_camera_info():
    camera_info = CameraInfo(width=60, height=40, k=[50.0, 0, 30, 0, 50.0, 20, 0, 0, 1], distortion_model="plumb_bob")
    image, info = to_depth_messages(result().depth, HEADER, camera_info)
    values = np.frombuffer(image.data, np.float32).reshape(40, 60)
    assert image.encoding == "32FC1" and np.isnan(values[0, 0]) and values[1, 1] == 2.0
    assert info.header == HEADER and list(info.k) == list(camera_info.k)


def test_point_cloud_back_projects_valid_depth():
    points = depth_points(result(), stride=10)
    assert points.shape == (4 * 6 - 1, 3)  # the NaN pixel at (0, 0) is left out
    np.testing.assert_allclose(points[:, 2], 2.0)
    cloud = to_point_cloud(points, HEADER)
    assert (cloud.width, cloud.point_step, [f.name for f in cloud.fields]) == (23, 12, ["x", "y", "z"])
    np.testing.assert_allclose(np.frombuffer(cloud.data, np.float32).reshape(-1, 3), points, rtol=1e-6)


def test_markers_clear_then_draw_a_box_and_a_label_per_3d_object():
    array = to_markers(result(), HEADER, {3: "bolt"})
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
    assert [d.id for d in to_detection2d_array(tracked, HEADER).detections] == ["70000", "4"]
    assert [d.id for d in to_detection3d_array(tracked, HEADER).detections] == ["70000"]
    image, _ = to_instances_messages(tracked, HEADER, CameraInfo(width=60, height=40))
    labels = np.frombuffer(image.data, np.int32).reshape(40, 60)
    assert (labels[15, 15], labels[10, 45]) == (70000, 4), "a label is the track id, past 16 bits too"
    markers = to_markers(tracked, HEADER, {3: "bolt"}).markers[1:]
    assert [m.id for m in markers] == [70000, 70000] and markers[1].text == "bolt #70000 0.90"


def test_debug_image_draws_on_a_copy():
    frame_result = result()
    picture = draw_debug_image(frame_result, {3: "bolt"}, max_depth_m=5.0)
    assert picture.shape == (40, 60, 3) and picture.any()
    assert not frame_result.frame.image_rgb.any(), "the camera image must stay untouched"


def test_debug_image_without_depth_tints_masks_and_nothing_else():
    with_depth = result()
    frame_result = FrameResult(with_depth.frame, None, with_depth.detections, 0.01)
    picture = draw_debug_image(frame_result, {3: "bolt"}, max_depth_m=5.0)
    colour = np.array([int(c * 255) for c in class_colour(3)])
    np.testing.assert_array_equal(picture[15, 20], colour // 2)  # inside the mask, off the outline
    assert not picture[25:].any(), "below every box and caption the black image stays black"


def test_object_point_cloud_is_pcl_point_xyzrgbl_by_field_name():
    """x, y, z float32 metres, rgb packed as PCL packs it (0x00RRGGBB in a float32's bytes), label the
    object's id: what pcl::fromROSMsg reads into PointXYZRGBL and RViz colours by."""
    from dinov2_ros.perception.object_points import ObjectPoints
    from dinov2_ros.ros.messages.points import to_object_point_cloud

    points = np.array([[0.1, -0.2, 0.8], [0.0, 0.0, 1.5]], np.float32)
    rgb = np.array([[255, 128, 1], [0, 0, 0]], np.uint8)
    cloud = to_object_point_cloud(ObjectPoints(points, rgb, np.array([7, 42], np.uint32)), HEADER)
    assert cloud.header == HEADER and (cloud.height, cloud.width, cloud.point_step) == (1, 2, 20)
    fields = {f.name: (f.offset, f.datatype, f.count) for f in cloud.fields}
    assert fields == {"x": (0, 7, 1), "y": (4, 7, 1), "z": (8, 7, 1), "rgb": (12, 7, 1), "label": (16, 6, 1)}
    raw = np.frombuffer(bytes(cloud.data), np.uint8).reshape(2, 20)
    np.testing.assert_array_equal(raw[:, :12].copy().view(np.float32), points)
    assert raw[0, 12:16].copy().view(np.uint32)[0] == 0xFF8001
    assert raw[:, 16:20].copy().view(np.uint32).ravel().tolist() == [7, 42]
    assert not cloud.is_bigendian and cloud.is_dense


def test_pick_candidates_keep_the_pick_order_and_the_objects_ids_and_their_markers_rank_them():
    base = result()
    posed = base.detections[0]
    second = Detection(4, "washer", 0.7, posed.box, posed.mask, posed.centre + 0.1, posed.size)
    frame = FrameResult(base.frame, base.depth, [posed, base.detections[1], second], 0.01)
    array = to_detection3d_array(frame, HEADER, order=[2, 0])
    assert [d.id for d in array.detections] == ["3", "1"], "in the order given, with the ids of dinov2/objects"
    markers = to_pick_markers(frame, HEADER, [2, 0]).markers
    assert markers[0].action == Marker.DELETEALL
    assert [(m.id, m.text) for m in markers[1:]] == [(1, "pick 1 (#3)"), (2, "pick 2 (#1)")]
