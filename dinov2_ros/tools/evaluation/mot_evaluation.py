"""Multi-object tracking figures from py-motmetrics: IDF1 (Ristani et al., 2016), ID switches and MOTA
(CLEAR MOT, Bernardin and Stiefelhagen, 2008), computed as the MOTChallenge devkit does.

Boxes match when their IoU is at least `min_iou` (0.5, the MOTChallenge rule). Needs motmetrics
(requirements/dev.txt): an evaluation tool, not a run-time dependency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import motmetrics
import numpy as np

from dinov2_ros.perception.object_tracking import box_iou
from dinov2_ros.tools.scenes.tabletop_scenes import ConveyorFrame, DetectorNoise, noisy_detections, visible_boxes

# (stamp s, (N, 4) xyxy boxes, (N,) scores) -> (N,) track ids, 0 for an untracked box
TrackUpdate = Callable[[float, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TrackingFigures:
    idf1: float  # identity F1 in [0, 1]
    id_switches: int
    mota: float
    fragmentations: int
    ground_truth: int  # ground-truth object-frames
    frames: int

    @property
    def switches_per_100(self) -> float:
        """ID switches per 100 ground-truth object-frames."""
        return 100.0 * self.id_switches / max(1, self.ground_truth)


def iou_distances(truth: np.ndarray, tracks: np.ndarray, min_iou: float) -> np.ndarray:
    """(M, N) 1 - IoU of xyxy boxes, NaN (no match allowed) where IoU < min_iou: motmetrics' distance
    convention (its own iou_matrix calls np.asfarray, which numpy 2 removed)."""
    iou = box_iou(np.asarray(truth, np.float64).reshape(-1, 4), np.asarray(tracks, np.float64).reshape(-1, 4))
    return np.where(iou >= min_iou, 1.0 - iou, np.nan)


def evaluate_tracks(
    frames: Iterable[tuple[Sequence[int], np.ndarray, Sequence[int], np.ndarray]], min_iou: float = 0.5
) -> TrackingFigures:
    """Figures over `frames`, each (ground-truth ids, their (M, 4) xyxy boxes, hypothesis ids, their
    (N, 4) xyxy boxes), in the sequence's order."""
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    for truth_ids, truth_boxes, track_ids, track_boxes in frames:
        accumulator.update(list(truth_ids), list(track_ids), iou_distances(truth_boxes, track_boxes, min_iou))
    names = ["idf1", "num_switches", "mota", "num_fragmentations", "num_objects", "num_frames"]
    row = motmetrics.metrics.create().compute(accumulator, metrics=names, name="sequence").iloc[0]
    return TrackingFigures(
        idf1=float(row["idf1"]),
        id_switches=int(row["num_switches"]),
        mota=float(row["mota"]),
        fragmentations=int(row["num_fragmentations"]),
        ground_truth=int(row["num_objects"]),
        frames=int(row["num_frames"]),
    )


def track_conveyor(
    frames: Iterable[ConveyorFrame], update: TrackUpdate, noise: DetectorNoise | None = None, seed: int = 0
) -> Iterator[tuple[list[int], np.ndarray, list[int], np.ndarray]]:
    """Feed `update` the detections `noise` makes of each frame's visible parts; yield what
    `evaluate_tracks` takes: the visible parts' true ids and boxes, the tracked boxes and their ids.
    `noise`: DetectorNoise() when None."""
    rng, noise = np.random.default_rng(seed), noise or DetectorNoise()
    for frame in frames:
        indices, truth = visible_boxes(frame.scene)
        boxes, scores = noisy_detections(truth, frame.scene.depth.shape, rng, noise)
        ids = update(frame.stamp_s, boxes, scores)
        tracked = ids > 0
        yield [frame.track_ids[i] for i in indices], truth, ids[tracked].tolist(), boxes[tracked]
