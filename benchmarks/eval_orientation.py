"""Oriented 3D boxes against exact ground truth, and what they cost beside the axis-aligned lifting.

Tabletop scenes (tools/scenes/tabletop_scenes.py): four cuboid classes at known yaws on tables tilted
0..30 degrees toward the camera, 640x480, 1 mm depth noise. For exact masks and for masks on the
16x22 patch grid of the node's default 224x308 input (as the heads give them), prints per class the
median and p95 yaw error (a square's modulo 90 degrees), the median normal error, the mean 3D IoU of
the oriented box and of today's axis-aligned box (ObjectLifter) with the truth, and how often no
orientation was found. Then the time per frame of 10 objects: ObjectLifter alone (the baseline) and
ObjectLifter plus the oriented fit, interleaved, median and p99.

    .venv/bin/python benchmarks/eval_orientation.py
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import cv2
import numpy as np

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.object_lifting import ObjectLifter
from dinov2_ros.perception.oriented_box import OrientedBox, box_iou_3d, fit_from_depth, fit_from_depths
from dinov2_ros.tools.latency import time_interleaved
from dinov2_ros.tools.scenes.tabletop_scenes import TABLETOP_PARTS, render_tabletop

LAYOUT = [("bar", -0.12, 0.07), ("plate", 0.1, 0.08), ("brick", 0.0, -0.09), ("cube", -0.14, -0.1)]


def patch_grid(mask: np.ndarray, grid=(16, 22)) -> np.ndarray:
    small = cv2.resize(mask.astype(np.float32), grid[::-1], interpolation=cv2.INTER_AREA)
    return cv2.resize(small, mask.shape[::-1], interpolation=cv2.INTER_LINEAR) > 0.5


def angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(abs(a @ b), 0.0, 1.0))))


def boxes_of(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float64)


def evaluate(coarse: bool, tilts, yaws) -> None:
    stats = defaultdict(lambda: defaultdict(list))
    lifter = ObjectLifter()
    for tilt in tilts:
        for seed, yaw in enumerate(yaws):
            parts = [(name, a, b, yaw + 37 * i) for i, (name, a, b) in enumerate(LAYOUT)]
            scene = render_tabletop(parts, tilt_deg=tilt, depth_noise_m=0.001, seed=seed)
            camera = PinholeCameraModel(scene.K, np.zeros(5), 640, 480)
            for part, exact in zip(scene.parts, scene.masks, strict=True):
                mask = patch_grid(exact) if coarse else exact
                box = boxes_of(mask)
                truth = OrientedBox(part.center, part.rotation, part.size)
                (lifted,) = lifter.lift(scene.depth, camera, box[None], mask[None])
                s = stats[part.name]
                s["aligned_iou"].append(box_iou_3d(OrientedBox(lifted.center, np.eye(3), lifted.size), truth, 50_000))
                fitted = fit_from_depth(scene.depth, camera, mask, box)
                if not isinstance(fitted, OrientedBox):
                    s["none"].append(1)
                    continue
                yaw_error = angle(fitted.rotation[:, 0], part.rotation[:, 0])
                if part.name == "cube":
                    yaw_error = min(yaw_error, angle(fitted.rotation[:, 0], part.rotation[:, 1]))
                s["yaw"].append(yaw_error)
                s["normal"].append(angle(fitted.rotation[:, 2], part.rotation[:, 2]))
                s["iou"].append(box_iou_3d(fitted, truth, 50_000))
    print(f"\n{'patch-grid' if coarse else 'exact'} masks, tilts {list(tilts)} deg, {len(yaws)} yaws each")
    for name in TABLETOP_PARTS:
        s = stats[name]
        total = len(s["aligned_iou"])
        if not s["yaw"]:
            print(f"  {name:<6} no orientation in {total}/{total}")
            continue
        print(
            f"  {name:<6} (aspect {TABLETOP_PARTS[name][0] / TABLETOP_PARTS[name][1]:.1f}) yaw error median "
            f"{np.median(s['yaw']):5.2f} p95 {np.percentile(s['yaw'], 95):5.2f} deg, normal error median "
            f"{np.median(s['normal']):5.2f} deg, 3D IoU oriented {np.mean(s['iou']):.2f} vs axis-aligned "
            f"{np.mean(s['aligned_iou']):.2f}, no orientation {len(s['none'])}/{total}"
        )


def cost(iterations: int, objects: int) -> None:
    scene = render_tabletop([(n, a, b, 20.0) for n, a, b in LAYOUT], tilt_deg=20.0, depth_noise_m=0.001)
    camera = PinholeCameraModel(scene.K, np.zeros(5), 640, 480)
    masks = [patch_grid(scene.masks[i % len(LAYOUT)]) for i in range(objects)]
    boxes = np.stack([boxes_of(mask) for mask in masks])
    lifter = ObjectLifter()

    def lifting():
        return lifter.lift(scene.depth, camera, boxes, masks)

    def lifting_and_orientation():
        lifting()
        return fit_from_depths(scene.depth, camera, masks, boxes)

    result = time_interleaved(
        {"lifting (baseline)": lifting, "lifting + oriented boxes": lifting_and_orientation}, iterations
    )
    print(f"\ncost per 640x480 frame of {objects} objects (patch-grid masks)")
    for name, latency in result.items():
        print(f"  {name:<26} median {latency.median_ms:7.2f} ms   p99 {latency.p99_ms:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--objects", type=int, default=10)
    args = parser.parse_args()
    tilts, yaws = (0.0, 10.0, 20.0, 30.0), tuple(np.linspace(-85.0, 85.0, 8))
    for coarse in (False, True):
        evaluate(coarse, tilts, yaws)
    cost(args.iterations, args.objects)


if __name__ == "__main__":
    main()
