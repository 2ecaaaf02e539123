"""Per-object point clouds against the tabletop scenes' exact geometry: each object's points are its own
(inside its true cuboid), the table around it is left out, every object with a pose has points, and the
stride thins them as it says."""

from __future__ import annotations

import numpy as np
import pytest

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.frame import CameraFrame, Detection, FrameResult
from dinov2_ros.perception.object_lifting import ObjectLifter
from dinov2_ros.perception.object_points import object_points
from dinov2_ros.perception.oriented_box import OrientedBox, fit_from_depths
from dinov2_ros.tools.scenes.tabletop_scenes import render_tabletop, visible_boxes

# ten parts on a table tilted by 15 degrees (benchmarks/bench_node.py's scene)
TEN_PARTS = [
    ("bar", -0.2, -0.08, 10), ("plate", -0.05, -0.08, 40), ("brick", 0.1, -0.08, -30), ("cube", 0.22, -0.08, 0),
    ("bar", -0.2, 0.05, 80), ("plate", -0.05, 0.05, -60), ("brick", 0.1, 0.05, 20), ("cube", 0.22, 0.05, 45),
    ("bar", -0.12, 0.14, -20), ("plate", 0.12, 0.14, 70),
]  # fmt: skip


def posed_result(oriented: bool) -> tuple[FrameResult, np.ndarray, object]:
    """The scene's visible parts as detections with their true masks and measured poses (oriented
    boxes, or the lifter's axis-aligned boxes); (result, indices of the parts, scene)."""
    scene = render_tabletop(TEN_PARTS, tilt_deg=15.0, depth_noise_m=0.001, seed=2)
    camera = PinholeCameraModel(scene.K, np.zeros(5), 640, 480)
    visible, boxes = visible_boxes(scene)
    masks = [scene.masks[i] for i in visible]
    detections = []
    if oriented:
        for box, mask, fit in zip(boxes, masks, fit_from_depths(scene.depth, camera, masks, boxes), strict=True):
            assert isinstance(fit, OrientedBox), fit
            detections.append(Detection(0, "part", 0.9, box, mask, fit.center, fit.size, fit.quaternion_xyzw))
    else:
        lifted = ObjectLifter().lift(scene.depth, camera, boxes, masks)
        for box, mask, pose in zip(boxes, masks, lifted, strict=True):
            detections.append(
                Detection(0, "part", 0.9, box, mask, pose.center, pose.size, axis_aligned_reason="a test")
            )
    frame = CameraFrame("camera", scene.image_rgb, scene.depth, camera)
    return FrameResult(frame, None, detections), visible, scene


def inside_true_part(points: np.ndarray, part, margin: float) -> np.ndarray:
    local = (points - part.center) @ part.rotation
    return np.all(np.abs(local) <= part.size / 2 + margin, axis=1)


@pytest.mark.parametrize("oriented", [True, False], ids=["oriented boxes", "axis-aligned boxes"])
def test_each_objects_points_are_its_own_and_labelled_with_its_id(oriented):
    result, visible, scene = posed_result(oriented)
    ids = [10 + k for k in range(len(result.detections))]
    cloud = object_points(result, ids, stride=2)
    assert cloud.points.dtype == np.float32 and cloud.rgb.dtype == np.uint8 and cloud.ids.dtype == np.uint32
    assert set(cloud.ids.tolist()) == set(ids), "every posed object has points"
    for k, object_id in enumerate(ids):
        mine = cloud.points[cloud.ids == object_id]
        own = inside_true_part(mine, scene.parts[visible[k]], margin=0.004)
        assert own.mean() >= (0.97 if oriented else 0.9), (object_id, own.mean())
    heights = (cloud.points - scene.parts[0].center) @ scene.table_normal  # a table point is at -size/2
    table = np.abs(heights + scene.parts[0].size[2] / 2) < 0.002
    if oriented:
        assert table.mean() < 0.02, "points on the support plane are the plane's, not the part's"


def test_the_stride_thins_the_cloud_and_points_carry_the_image_colour():
    result, _, scene = posed_result(True)
    ids = list(range(1, len(result.detections) + 1))
    dense, sparse = object_points(result, ids, stride=1), object_points(result, ids, stride=4)
    assert 12 <= len(dense.ids) / len(sparse.ids) <= 20, "about stride squared"
    assert len(object_points(result, ids, stride=2).ids) > 1000, "a usable cloud at the default stride"
    colours = {tuple(c) for c in dense.rgb[:200]}
    assert colours <= {tuple(c) for c in scene.image_rgb.reshape(-1, 3)}
    with pytest.raises(ValueError, match="stride must be >= 1"):
        object_points(result, ids, stride=0)


def test_objects_without_a_pose_and_frames_without_depth_give_no_points():
    result, _, _ = posed_result(True)
    unposed = [Detection(0, "part", 0.9, d.box, d.mask, no_pose_reason="a test") for d in result.detections]
    empty = object_points(FrameResult(result.frame, None, unposed), list(range(len(unposed))))
    assert empty.points.shape == (0, 3) and empty.ids.shape == (0,)
    no_depth = CameraFrame("camera", result.frame.image_rgb, None, result.frame.camera_model)
    ids = list(range(len(result.detections)))
    assert len(object_points(FrameResult(no_depth, None, result.detections), ids).ids) == 0
