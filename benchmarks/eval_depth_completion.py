"""Depth completion on tabletop scenes with parts that return no depth: how well the holes are filled,
how many of those parts get a 3D pose, how far it is off, and what it costs per frame.

Scenes (tools/scenes/tabletop_scenes.py): ten cuboid parts on a table 0.8 m away tilted 15 degrees,
640x480, 1 mm sensor noise; in each, `--shiny` of the parts (drawn per scene) return no depth, as
shiny metal, black plastic or film give a structured-light or time-of-flight camera. Random weights
predict no depth, so the model's depth is a STAND-IN made from the truth with a known scale and
offset error and per-pixel noise (`stand_in_model_depth`; sharper at edges than a network's, so
these are lower bounds). Poses come from the parts' exact masks (oriented_box.fit_from_depths; the
lifter's axis-aligned box for a part with no yaw to find, as the node does), so the figures are the
completion's, not the detector's; "from the sensor" counts the shiny parts the sensor's depth alone
can lift (ObjectLifter.can_lift).

Run: `.venv/bin/python benchmarks/eval_depth_completion.py` (about a minute).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.depth_completion import complete_depth, fit_model_depth
from dinov2_ros.perception.object_lifting import ObjectLifter
from dinov2_ros.perception.oriented_box import OrientedBox, fit_from_depths
from dinov2_ros.tools.scenes.tabletop_scenes import TABLETOP_PARTS, render_tabletop, stand_in_model_depth, visible_boxes

SLOTS = [(a, b) for b in (-0.08, 0.05, 0.14) for a in (-0.2, -0.05, 0.1, 0.22)][:10]


def scene_of(seed: int, shiny: int):
    rng = np.random.default_rng(seed)
    names = list(TABLETOP_PARTS)
    parts = [(names[rng.integers(len(names))], a, b, float(rng.uniform(-90, 90))) for a, b in SLOTS]
    no_return = tuple(sorted(rng.choice(len(parts), shiny, replace=False).tolist()))
    return render_tabletop(parts, tilt_deg=15.0, depth_noise_m=0.001, seed=seed, no_return=no_return)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--shiny", type=int, default=3, help="parts per scene without sensor depth")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.001, 0.003, 0.01], help="stand-in noise (m)")
    args = parser.parse_args(argv)
    print(f"{args.scenes} scenes, 10 parts each, {args.shiny} without sensor depth; stand-in scale 1.08, shift 4 cm")
    print(
        f"{'noise':>6} | {'hole error median / p95 (mm)':>28} | {'shiny parts posed':>38} | "
        f"{'centre error median / p95 (mm)':>30} | {'vs exact depth (mm)':>19} | fit + fill (ms)"
    )
    for noise in args.noise:
        hole_errors, centre_errors, versus_exact, costs = [], [], [], []
        posed = oriented = sensor_posed = shiny_total = 0
        lifter = ObjectLifter()
        for seed in range(args.scenes):
            scene = scene_of(seed, args.shiny)
            camera = PinholeCameraModel(scene.K, np.zeros(5), 640, 480)
            model = stand_in_model_depth(scene.true_depth, noise_m=noise, seed=seed)
            start = time.perf_counter()
            completed, _ = complete_depth(scene.depth, model, fit_model_depth(model, scene.depth))
            costs.append(time.perf_counter() - start)
            holes = np.isnan(scene.depth) & np.isfinite(scene.true_depth)
            hole_errors.append(np.abs(completed[holes] - scene.true_depth[holes]))
            visible, boxes = visible_boxes(scene)
            masks = [scene.masks[i] for i in visible]
            shiny = [k for k, index in enumerate(visible) if index in scene.no_return]
            fits = fit_from_depths(completed, camera, [masks[k] for k in shiny], boxes[shiny])
            exact = fit_from_depths(scene.true_depth, camera, [masks[k] for k in shiny], boxes[shiny])
            shiny_total += len(shiny)
            for k, fit, truth_fit in zip(shiny, fits, exact, strict=True):
                oriented -= not isinstance(fit, OrientedBox)
                centre, exact_centre = (
                    box.center
                    if isinstance(box, OrientedBox)
                    else lifter.lift(depth, camera, boxes[k : k + 1], [masks[k]])[0].center
                    for box, depth in ((fit, completed), (truth_fit, scene.true_depth))
                )  # no yaw to find: the node's axis-aligned box instead
                if centre is not None:
                    posed += 1
                    centre_errors.append(np.linalg.norm(centre - scene.parts[visible[k]].center))
                    versus_exact.append(np.linalg.norm(centre - exact_centre))
            oriented += len(shiny)
            sensor_posed += int(
                np.count_nonzero(lifter.can_lift(scene.depth, camera, boxes[shiny], [masks[k] for k in shiny]))
            )
        holes_mm = 1000 * np.concatenate(hole_errors)
        centre_mm, exact_mm = 1000 * np.array(centre_errors), 1000 * np.array(versus_exact)
        print(
            f"{noise * 1000:4.0f}mm | {np.median(holes_mm):13.1f} / {np.percentile(holes_mm, 95):12.1f} | "
            f"{posed:3d} ({oriented} oriented) / {shiny_total:3d}, {sensor_posed} from the sensor | {np.median(centre_mm):15.1f} / {np.percentile(centre_mm, 95):12.1f} | "
            f"{np.median(exact_mm):9.1f} / {np.percentile(exact_mm, 95):7.1f} | "
            f"{1000 * np.median(costs):.2f} median, {1000 * np.percentile(costs, 99):.2f} p99"
        )
    print(
        "'vs exact depth': the same box fit on the scene's exact depth; the rest of the centre error is the fit's own"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
