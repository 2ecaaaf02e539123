"""CPU time of one tracker update: our ByteTrack (perception/object_tracking.py) against supervision's
ByteTrack (the oracle, per-track Python objects) in the same run, at 1, 10 and 100 tracked parts.

Each frame has N parts on a grid drifting right at 2 px per frame, corners jittered by 1.5 px, scores in
[0.55, 0.95], every 20th part missed in turn; both trackers get the same frames at 30 Hz, interleaved
(tools.latency.time_interleaved), after a warm-up that confirms every track. Prints median and p99.

    .venv/bin/python benchmarks/bench_tracker.py --iters 300
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from dinov2_ros.perception.object_tracking import CameraTracker
from dinov2_ros.tools.evaluation.oracle_tracker import OracleByteTrack
from dinov2_ros.tools.latency import time_interleaved


class Frames:
    """The k-th frame of N drifting parts: (stamp s, (M, 4) xyxy boxes, (M,) scores)."""

    def __init__(self, parts: int, seed: int = 0) -> None:
        side = int(np.ceil(np.sqrt(parts)))
        cells = np.stack(np.meshgrid(np.arange(side), np.arange(side)), axis=-1).reshape(-1, 2)[:parts]
        self.origins = np.concatenate([cells * 60.0, cells * 60.0 + 40.0], axis=1)
        self.rng = np.random.default_rng(seed)
        self.index = 0

    def next(self) -> tuple[float, np.ndarray, np.ndarray]:
        k, self.index = self.index, self.index + 1
        drift = np.array([2.0 * k, 0.0, 2.0 * k, 0.0])
        boxes = self.origins + drift + self.rng.normal(0, 1.5, self.origins.shape)
        kept = np.arange(len(boxes)) % 20 != k % 20
        boxes = boxes[kept].astype(np.float32)
        return k / 30.0, boxes, self.rng.uniform(0.55, 0.95, len(boxes)).astype(np.float32)


def stage(tracker, parts: int) -> Callable[[], None]:
    """One update of `tracker` with the next frame of its own sequence of `parts` parts."""
    frames = Frames(parts)

    def run() -> None:
        tracker.update(*frames.next())

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=300, help="timed frames per tracker and size")
    args = parser.parse_args()
    print(f"one update, {args.iters} frames each, interleaved; our ByteTrack against supervision's")
    print(f"{'parts':>6}  {'tracker':<28}{'median ms':>10}{'p99 ms':>10}")
    for parts in (1, 10, 100):
        stages = {
            "ours (vectorised)": stage(CameraTracker(lost_timeout_s=1.0), parts),
            "supervision ByteTrack (oracle)": stage(OracleByteTrack(frame_rate=30, lost_s=1.0), parts),
        }
        for name, latency in time_interleaved(stages, args.iters, warmup=10).items():
            print(f"{parts:>6}  {name:<28}{latency.median_ms:>10.3f}{latency.p99_ms:>10.3f}")


if __name__ == "__main__":
    main()
