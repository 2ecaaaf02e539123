"""The pick order on stacked tabletop scenes: is the first candidate free, how often is "free" right
and how many free parts are found, and what it costs per frame.

Scenes (tools/scenes/tabletop_scenes.stacked_parts): six parts standing on a table 0.8 m away tilted
15 degrees and four more lying on earlier ones (overhanging, sometimes two levels), 640x480, 1 mm
depth noise; the truth of what lies on what comes from the geometry (`parts_above`: footprints
overlapping in the table plane, one's bottom at or above the other's top). Detections are the
visible parts' exact masks with the lifter's poses, so the figures are the pick order's, not the
detector's.

Run: `.venv/bin/python benchmarks/eval_pick_order.py` (about a minute).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.frame import CameraFrame, Detection, FrameResult
from dinov2_ros.perception.object_lifting import ObjectLifter
from dinov2_ros.perception.pick_order import pick_order
from dinov2_ros.tools.scenes.tabletop_scenes import parts_above, render_tabletop, stacked_parts, visible_boxes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=200)
    args = parser.parse_args(argv)
    first_free = true_positive = false_positive = false_negative = true_negative = 0
    costs, objects = [], []
    lifter = ObjectLifter()
    for seed in range(args.scenes):
        scene = render_tabletop(stacked_parts(seed), tilt_deg=15.0, depth_noise_m=0.001, seed=seed)
        truth = parts_above(scene)
        camera = PinholeCameraModel(scene.K, np.zeros(5), 640, 480)
        visible, boxes = visible_boxes(scene)
        masks = [scene.masks[i] for i in visible]
        poses = lifter.lift(scene.depth, camera, boxes, masks)
        detections = [
            Detection(0, "part", 0.9, b, m, p.center, p.size) for b, m, p in zip(boxes, masks, poses, strict=True)
        ]
        result = FrameResult(CameraFrame("camera", scene.image_rgb, scene.depth, camera), None, detections)
        start = time.perf_counter()
        candidates, held = pick_order(result)
        costs.append(time.perf_counter() - start)
        objects.append(len(detections))
        first_free += bool(candidates) and not truth[visible[candidates[0].index]]
        for decision in candidates + held:
            free = not truth[visible[decision.index]]
            true_positive += decision.free and free
            false_positive += decision.free and not free
            false_negative += free and not decision.free
            true_negative += not free and not decision.free
    costs_ms = 1000 * np.array(costs)
    print(f"{args.scenes} stacked scenes, {np.mean(objects):.1f} visible parts each (10 placed, 4 of them on others)")
    print(f"first candidate truly free: {first_free} / {args.scenes} ({first_free / args.scenes:.1%})")
    print(
        f'"free": precision {true_positive / (true_positive + false_positive):.3f}, recall '
        f"{true_positive / (true_positive + false_negative):.3f} ({true_positive} right, {false_positive} wrongly free, "
        f"{false_negative} free parts held back, {true_negative} rightly held back)"
    )
    print(f"cost per frame: median {np.median(costs_ms):.2f} ms, p99 {np.percentile(costs_ms, 99):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
