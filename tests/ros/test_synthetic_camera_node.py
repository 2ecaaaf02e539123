"""The demo camera publishes image, camera_info and aligned depth with one stamp per frame."""

from __future__ import annotations

import numpy as np
from node_harness import Harness, stamp_of
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.synthetic_scenes import SyntheticSceneGenerator
from dinov2_ros.ros.image_conversion import depth_image_to_metres, image_to_rgb
from dinov2_ros.ros.synthetic_camera_node import SyntheticCameraNode


def test_frames_arrive_as_matching_image_camera_info_and_depth(context):
    overrides = [Parameter("width", value=96), Parameter("height", value=64), Parameter("rate_hz", value=50.0)]
    camera = SyntheticCameraNode(context=context, namespace="synthetic", parameter_overrides=overrides)
    harness = Harness(context)
    harness.add_node(camera)
    images = harness.record(Image, "/synthetic/image")
    infos = harness.record(CameraInfo, "/synthetic/camera_info")
    depths = harness.record(Image, "/synthetic/depth")
    try:
        assert harness.spin_until(lambda: len(images) >= 3 and len(infos) >= 3 and len(depths) >= 3)
    finally:
        harness.close()
        camera.destroy_node()
    stamps = [stamp_of(m) for m in images]
    assert stamps == sorted(set(stamps)), "one new stamp per frame"
    assert {stamp_of(m) for m in images[:3]} <= {stamp_of(m) for m in infos} & {stamp_of(m) for m in depths}
    rgb, depth, info = image_to_rgb(images[0]), depth_image_to_metres(depths[0]), infos[0]
    assert rgb.shape == (64, 96, 3) and depth.shape == (64, 96)
    assert np.nanmin(depth) > 0.3 and images[0].header.frame_id == "camera_optical_frame"
    model = PinholeCameraModel.from_camera_info(info.k, info.d, info.p, info.width, info.height)
    assert model.fx > 0 and (model.width, model.height) == (96, 64)


def test_ground_truth_names_the_parts_of_the_published_scene(context):
    overrides = [Parameter("width", value=160), Parameter("height", value=120), Parameter("rate_hz", value=50.0)]
    camera = SyntheticCameraNode(context=context, namespace="synthetic_truth", parameter_overrides=overrides)
    harness = Harness(context)
    harness.add_node(camera)
    truths = harness.record(Detection2DArray, "/synthetic_truth/ground_truth")
    images = harness.record(Image, "/synthetic_truth/image")
    try:
        assert harness.spin_until(lambda: len(truths) >= 2 and len(images) >= 2)
    finally:
        harness.close()
        camera.destroy_node()
    scene = SyntheticSceneGenerator(0, 160, 120).render(0)  # the node's default seed, first scene
    truth = truths[0]
    assert stamp_of(truth) in {stamp_of(m) for m in images}
    assert [d.results[0].hypothesis.class_id for d in truth.detections] == [
        camera.generator.class_names[i] for i in scene.class_ids
    ]
    boxes = [
        (
            d.bbox.center.position.x - d.bbox.size_x / 2,
            d.bbox.center.position.y - d.bbox.size_y / 2,
            d.bbox.center.position.x + d.bbox.size_x / 2,
            d.bbox.center.position.y + d.bbox.size_y / 2,
        )
        for d in truth.detections
    ]
    np.testing.assert_allclose(boxes, scene.boxes, atol=1e-4)


def test_the_conveyor_moves_parts_with_their_identities_in_the_ground_truth(context):
    overrides = [
        Parameter("width", value=160),
        Parameter("height", value=120),
        Parameter("rate_hz", value=20.0),
        Parameter("scene", value="conveyor"),
    ]
    camera = SyntheticCameraNode(context=context, namespace="synthetic_conveyor", parameter_overrides=overrides)
    harness = Harness(context)
    harness.add_node(camera)
    truths = harness.record(Detection2DArray, "/synthetic_conveyor/ground_truth")
    depths = harness.record(Image, "/synthetic_conveyor/depth")
    try:
        assert harness.spin_until(lambda: len(truths) >= 10 and depths)
    finally:
        harness.close()
        camera.destroy_node()
    first, last = truths[0], truths[-1]
    positions = {d.id: d.bbox.center.position.x for d in first.detections}
    moved = [d.bbox.center.position.x - positions[d.id] for d in last.detections if d.id in positions]
    assert moved and all(dx > 0 for dx in moved), "the same parts (ids), further right"
    assert {d.results[0].hypothesis.class_id for d in last.detections} <= {"bar", "plate", "brick", "cube"}
    depth = depth_image_to_metres(depths[-1])
    assert 0.5 < np.nanmedian(depth) < 1.0, "the table, 0.8 m away along the optical axis"
