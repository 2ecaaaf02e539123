"""Track ids against ground truth: our ByteTrack (perception/object_tracking.py) and supervision's (the
oracle) on a conveyor sequence.

Parts on a table tilted by 15 degrees move across the view at 0.05 m/s, filmed at 10 Hz with 5 % of
the frames dropped (tools/scenes/tabletop_scenes.py); the detections are the visible parts' true boxes
with a detector's faults (corner jitter, 5 % misses, a false positive in 5 % of the frames; DetectorNoise),
so the figures measure the tracker, not the detector. IDF1, ID switches and MOTA from py-motmetrics,
against the same run's baseline without tracking (each frame's objects numbered 1..N), and what each
tracker costs per frame.

    .venv/bin/python benchmarks/eval_tracking.py --frames 400
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dinov2_ros.perception.object_tracking import CameraTracker
from dinov2_ros.tools.evaluation.mot_evaluation import evaluate_tracks, track_conveyor
from dinov2_ros.tools.evaluation.oracle_tracker import OracleByteTrack
from dinov2_ros.tools.scenes.tabletop_scenes import Conveyor, DetectorNoise, conveyor_sequence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400, help="camera frames (5 %% are dropped)")
    parser.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--lost-timeout", type=float, default=1.0, help="tracking.lost_timeout_s")
    parser.add_argument("--speed", type=float, default=0.05, help="conveyor speed (m/s)")
    parser.add_argument("--miss", type=float, default=0.05, help="fraction of the visible parts the detector misses")
    args = parser.parse_args()
    width, height = args.size
    conveyor = Conveyor(speed_m_s=args.speed, spawn_every_s=0.075 / args.speed)  # parts 7.5 cm apart
    frames = list(conveyor_sequence(args.frames, conveyor=conveyor, width=width, height=height))
    noise = DetectorNoise(miss=args.miss)
    trackers = {
        "ByteTrack (ours)": CameraTracker(args.lost_timeout),
        # it counts frames: conveyor_sequence films at 10 Hz
        "supervision ByteTrack": OracleByteTrack(frame_rate=10, lost_s=args.lost_timeout),
    }
    costs: dict[str, list[float]] = {name: [] for name in trackers}

    def timed(name: str):
        def update(stamp_s: float, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
            start = time.perf_counter()
            ids = trackers[name].update(stamp_s, boxes, scores)
            costs[name].append(time.perf_counter() - start)
            return ids

        return update

    def numbered(stamp_s: float, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return np.arange(1, len(boxes) + 1)

    print(
        f"{len(frames)} frames delivered of {args.frames}, {width}x{height}, conveyor {args.speed} m/s, "
        f"{args.miss:.0%} of the parts missed, lost timeout {args.lost_timeout} s"
    )
    print(f"{'ids':<28}{'IDF1':>7}{'ID switches':>13}{'per 100 GT':>12}{'MOTA':>7}{'frag.':>7}{'GT obj-frames':>15}")
    for name, update in (("per-frame numbering (base)", numbered), *((name, timed(name)) for name in trackers)):
        figures = evaluate_tracks(track_conveyor(frames, update, noise))
        print(
            f"{name:<28}{figures.idf1:>7.3f}{figures.id_switches:>13}{figures.switches_per_100:>12.2f}"
            f"{figures.mota:>7.3f}{figures.fragmentations:>7}{figures.ground_truth:>15}"
        )
    parts = np.mean([len(f.scene.parts) for f in frames])
    for name, seconds in costs.items():
        ms = np.array(seconds) * 1e3
        print(
            f"{name} update: median {np.median(ms):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms ({parts:.1f} parts/frame)"
        )


if __name__ == "__main__":
    main()
