"""The pick order against stacked tabletop scenes whose occlusion order is known by construction
(tabletop_scenes.stacked_parts and parts_above): the first candidate is free, "free" is rarely
claimed for a part with something on it, and a part under another names it as the reason.

Detections are the parts' exact masks and the lifter's poses on 1 mm-noise depth, so these figures
are the pick order's, not the detector's. benchmarks/eval_pick_order.py gives them over more scenes.
"""

from __future__ import annotations

import numpy as np
import pytest

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.frame import CameraFrame, Detection, FrameResult
from dinov2_ros.perception.object_lifting import ObjectLifter
from dinov2_ros.perception.pick_order import pick_order
from dinov2_ros.tools.scenes.tabletop_scenes import parts_above, render_tabletop, stacked_parts, visible_boxes


def frame_of(layout, seed: int = 0):
    """(FrameResult of the visible parts, their indices into the layout, the truth: parts above each)."""
    scene = render_tabletop(layout, tilt_deg=15.0, depth_noise_m=0.001, seed=seed)
    camera = PinholeCameraModel(scene.K, np.zeros(5), 640, 480)
    visible, boxes = visible_boxes(scene)
    masks = [scene.masks[i] for i in visible]
    lifted = ObjectLifter().lift(scene.depth, camera, boxes, masks)
    detections = [
        Detection(0, "part", 0.9, box, mask, pose.center, pose.size)
        for box, mask, pose in zip(boxes, masks, lifted, strict=True)
    ]
    result = FrameResult(CameraFrame("camera", scene.image_rgb, scene.depth, camera), None, detections)
    return result, visible, parts_above(scene)


def test_a_plate_on_a_brick_holds_the_brick_back_and_names_the_plate():
    layout = [("brick", 0.0, 0.0, 10.0), ("plate", 0.02, 0.01, 60.0, 0), ("cube", 0.2, 0.05, 0.0)]
    result, visible, truth = frame_of(layout)
    assert truth == [{1}, set(), set()]
    candidates, held = pick_order(result, ids=[11, 12, 13])
    by_part = {int(visible[d.index]): d for d in candidates + held}
    assert not by_part[0].free and by_part[0].under == (list(visible).index(1),)
    assert "under #12" in by_part[0].reason and "mm higher along the support normal" in by_part[0].reason
    assert [int(visible[d.index]) for d in candidates] == [2, 1], "both free, the higher top first (cube 6 cm)"
    assert by_part[1].top_height_m == pytest.approx(0.04 + 0.015, abs=0.004)  # plate on a 4 cm brick
    assert by_part[2].top_height_m == pytest.approx(0.06, abs=0.004)


def test_on_stacked_scenes_the_first_candidate_is_free_and_free_is_rarely_wrong():
    first_free, claimed_free, wrongly_free, truly_free, found_free = 0, 0, 0, 0, 0
    scenes = 12
    for seed in range(scenes):
        result, visible, truth = frame_of(stacked_parts(seed), seed)
        candidates, held = pick_order(result)
        assert len(candidates) + len(held) == len(result.detections)
        first_free += bool(candidates) and not truth[visible[candidates[0].index]]
        for decision in candidates + held:
            free = not truth[visible[decision.index]]
            truly_free += free
            claimed_free += decision.free
            wrongly_free += decision.free and not free
            found_free += decision.free and free
    assert first_free == scenes
    assert wrongly_free / claimed_free <= 0.02, (wrongly_free, claimed_free)
    assert found_free / truly_free >= 0.75, (found_free, truly_free)  # recall: parts held back that are free


def test_without_depth_or_poses_there_is_no_order():
    result, _, _ = frame_of([("bar", 0.0, 0.0, 0.0)])
    bare = FrameResult(result.frame, None, [Detection(0, "part", 0.9, d.box, d.mask) for d in result.detections])
    assert pick_order(bare) == ([], [])
