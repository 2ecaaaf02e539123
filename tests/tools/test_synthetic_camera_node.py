"""The demo camera publishes image, camera_info and aligned depth with one stamp per frame."""

from __future__ import annotations

import numpy as np
from node_harness import Harness, stamp_of
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.ros.image_conversion import depth_image_to_metres, image_to_rgb
from dinov2_ros.tools.demo.synthetic_camera_node import SyntheticCameraNode
from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator


def filmed(context, namespace: str, parameters: dict, topics: dict, enough) -> tuple[SyntheticCameraNode, dict]:
    """Run a SyntheticCameraNode with `parameters` in `namespace` until `enough(recorded)` holds; the
    node and the messages it published, per topic name of `topics` (name -> message type)."""
    overrides = [Parameter(name, value=value) for name, value in parameters.items()]
    camera = SyntheticCameraNode(context=context, namespace=namespace, parameter_overrides=overrides)
    harness = Harness(context)
    harness.add_node(camera)
    recorded = {name: harness.record(kind, f"/{namespace}/{name}") for name, kind in topics.items()}
    try:
        assert harness.spin_until(lambda: enough(recorded))
    finally:
        harness.close()
        camera.destroy_node()
    return camera, recorded


def test_frames_arrive_as_matching_image_camera_info_and_depth(context):
    _, recorded = filmed(
        context,
        "synthetic",
        {"width": 96, "height": 64, "rate_hz": 50.0},
        {"image": Image, "camera_info": CameraInfo, "depth/image": Image},
        lambda recorded: all(len(messages) >= 3 for messages in recorded.values()),
    )
    images, infos, depths = recorded["image"], recorded["camera_info"], recorded["depth/image"]
    stamps = [stamp_of(m) for m in images]
    assert stamps == sorted(set(stamps)), "one new stamp per frame"
    assert {stamp_of(m) for m in images[:3]} <= {stamp_of(m) for m in infos} & {stamp_of(m) for m in depths}
    rgb, depth, info = image_to_rgb(images[0]), depth_image_to_metres(depths[0]), infos[0]
    assert rgb.shape == (64, 96, 3) and depth.shape == (64, 96)
    assert np.nanmin(depth) > 0.3 and images[0].header.frame_id == "camera_optical_frame"
    model = PinholeCameraModel.from_camera_info(info.k, info.d, info.p, info.width, info.height)
    assert model.fx > 0 and (model.width, model.height) == (96, 64)


def test_ground_truth_names_the_parts_of_the_published_scene(context):
    camera, recorded = filmed(
        context,
        "synthetic_truth",
        {"width": 160, "height": 120, "rate_hz": 50.0},
        {"ground_truth": Detection2DArray, "image": Image},
        lambda recorded: all(len(messages) >= 2 for messages in recorded.values()),
    )
    truths, images = recorded["ground_truth"], recorded["image"]
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
    _, recorded = filmed(
        context,
        "synthetic_conveyor",
        {"width": 160, "height": 120, "rate_hz": 20.0, "scene": "conveyor"},
        {"ground_truth": Detection2DArray, "depth/image": Image},
        lambda recorded: len(recorded["ground_truth"]) >= 10 and recorded["depth/image"],
    )
    truths, depths = recorded["ground_truth"], recorded["depth/image"]
    first, last = truths[0], truths[-1]
    positions = {d.id: d.bbox.center.position.x for d in first.detections}
    moved = [d.bbox.center.position.x - positions[d.id] for d in last.detections if d.id in positions]
    assert moved and all(dx > 0 for dx in moved), "the same parts (ids), further right"
    assert {d.results[0].hypothesis.class_id for d in last.detections} <= {"bar", "plate", "brick", "cube"}
    depth = depth_image_to_metres(depths[-1])
    assert 0.5 < np.nanmedian(depth) < 1.0, "the table, 0.8 m away along the optical axis"


def test_the_stacked_scene_films_parts_lying_on_others_with_shiny_holes_in_its_depth(context):
    _, recorded = filmed(
        context,
        "synthetic_stacked",
        {"width": 320, "height": 240, "rate_hz": 20.0, "scene": "stacked", "shiny_fraction": 0.5},
        {"ground_truth": Detection2DArray, "depth/image": Image},
        lambda recorded: len(recorded["ground_truth"]) >= 2 and recorded["depth/image"],
    )
    truth = recorded["ground_truth"][-1]
    assert len(truth.detections) >= 8, "ten parts placed, four lying on others; most of them visible"
    assert {d.results[0].hypothesis.class_id for d in truth.detections} <= {"bar", "plate", "brick", "cube"}
    depth = depth_image_to_metres(recorded["depth/image"][-1])
    holes = np.isnan(depth).mean()
    assert 0.01 < holes < 0.5, f"the shiny parts' pixels have no depth ({holes:.1%} of the image)"
