"""supervision's ByteTrack, the oracle our tracker is tested and benchmarked against (a dev requirement,
never a run-time one: the robot runs perception/object_tracking.py).

It counts frames: `frame_rate` and `lost_s` set how many frames a lost track lives (its lost buffer is
given for 30 Hz). Every detection is "high" (its activation threshold is 0, new tracks start from 0.1),
and its external ids (given on confirmation) are what it publishes.
"""

from __future__ import annotations

import warnings

import numpy as np
import supervision as sv
from supervision.tracker.byte_tracker.core import ByteTrack


class OracleByteTrack:
    def __init__(self, frame_rate: float, lost_s: float) -> None:
        with warnings.catch_warnings():  # deprecated in supervision 0.30, which is why we have our own
            warnings.simplefilter("ignore", FutureWarning)
            self._tracker = ByteTrack(
                track_activation_threshold=0.0, lost_track_buffer=round(lost_s * 30), frame_rate=frame_rate
            )

    def update(self, stamp_s: float, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(N,) ids for `boxes`, 0 where it publishes none (`stamp_s` unused: it counts frames)."""
        ids = np.zeros(len(boxes), np.int64)
        detections = sv.Detections(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
            confidence=np.asarray(scores, np.float32),
            data={"index": np.arange(len(boxes))},
        )
        tracked = self._tracker.update_with_detections(detections)
        if len(tracked):
            ids[tracked.data["index"]] = tracked.tracker_id
        return ids
