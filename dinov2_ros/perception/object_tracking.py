"""Per-camera track ids: ByteTrack fed each frame's boxes, scores and time.

The tracker is supervision's ByteTrack (Zhang et al., ECCV 2022: Kalman-predicted boxes matched to
detections by IoU fused with score, Hungarian assignment). Its maintained successor is Roboflow's
`trackers` package, which requires numpy >= 2; the message packages of apt-installed ROS 2 Humble,
Jazzy and Kilted are C extensions built against numpy 1.x, which numpy 2 refuses to load. supervision
0.30 runs on both, with its ByteTrack marked deprecated (removed in 0.31, hence the pin `<0.31`). Move
to `trackers.ByteTrackTracker`, which takes stamps itself, once the supported distributions ship numpy 2.

ByteTrack counts frames, not seconds; the frames' times set how many (the node gives their arrival
on a monotonic clock, as image stamps can be zero or jump). A camera's frame period is the median of
its recent time differences (of the frames the node processed, which may be every third of a fast
camera's); a lost track expires after `lost_timeout_s` worth of such frames, and at least one frame;
after a silence of at least `lost_timeout_s` that is longer than the usual period (a camera restart,
a deactivated node) every lost track has expired, so a part seen again gets a new id. Ids start at 1
per camera and are never reused while the tracker lives. A detection gets its id on its second
sighting (or on the camera's first frame), which keeps one-frame false positives out of the
published objects. Tracks are class-agnostic (as ByteTrack is): a track keeps its id when the
detector's class for the part flips, and takes the newest detection's class.
"""

from __future__ import annotations

import math
import warnings
from collections import deque

import numpy as np
import supervision as sv
from supervision.tracker.byte_tracker.core import ByteTrack

# time differences the frame period is the median of
PERIOD_WINDOW = 16
# frame period assumed until a camera has sent two frames
DEFAULT_PERIOD_S = 1 / 30


class CameraTracker:
    """Track ids for one camera's detections, frame after frame."""

    def __init__(self, lost_timeout_s: float) -> None:
        if not lost_timeout_s > 0:
            raise ValueError(f"lost_timeout_s must be > 0 s, got {lost_timeout_s}")
        self.lost_timeout_s = lost_timeout_s
        with warnings.catch_warnings():  # the deprecation is known and explained in the module docstring
            warnings.simplefilter("ignore", FutureWarning)
            self._byte_track = ByteTrack(frame_rate=30, lost_track_buffer=30)
        self._last_stamp_s: float | None = None
        self._periods: deque[float] = deque(maxlen=PERIOD_WINDOW)

    @property
    def period_s(self) -> float:
        """The camera's frame period (s): median of its recent time differences."""
        return float(np.median(self._periods)) if self._periods else DEFAULT_PERIOD_S

    def update(self, stamp_s: float, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Ids (N,) int64 for `boxes` (N, 4) xyxy pixels with `scores` (N,) in [0, 1] of the frame at
        `stamp_s` (seconds, the frame's time on a clock that only goes forward); 0 where a detection has
        no confirmed track. The detections passed the pipeline's score threshold: every one of them is
        a "high" detection in ByteTrack's terms and may start a track."""
        tracker = self._byte_track
        silent = self._advance(stamp_s)
        tracker.max_time_lost = max(1, math.ceil(self.lost_timeout_s / self.period_s))
        if silent:  # expire everything lost: frames that were never sent do not count otherwise
            # (+ 2: ByteTrack marks a track removed one step after it passed max_time_lost, and drops it
            # from the tracks it matches against one step later)
            for _ in range(tracker.max_time_lost + 2):
                tracker.update_with_tensors(np.empty((0, 5), np.float32))
        # the detections passed the pipeline's threshold: all are "high" and all may start a track
        tracker.track_activation_threshold = tracker.det_thresh = 0.0
        ids = np.zeros(len(boxes), np.int64)
        if len(boxes) == 0:
            tracker.update_with_tensors(np.empty((0, 5), np.float32))
            return ids
        detections = sv.Detections(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
            confidence=np.asarray(scores, np.float32),
            data={"index": np.arange(len(boxes))},
        )
        tracked = tracker.update_with_detections(detections)
        if len(tracked):  # (an empty result carries no data)
            ids[tracked.data["index"]] = tracked.tracker_id
        return ids

    def _advance(self, stamp_s: float) -> bool:
        """Take the frame's time into the period estimate; True after a silence: a gap of at least
        lost_timeout_s that is not the camera's usual period (a 1 Hz camera is not silent each second)."""
        last, self._last_stamp_s = self._last_stamp_s, stamp_s
        if last is None:
            return False
        gap_s = stamp_s - last
        if gap_s <= 0:
            return False
        if not self._periods or gap_s < 2.5 * self.period_s:  # a frame period, not a gap of dropped frames
            self._periods.append(gap_s)
            return False
        return gap_s >= self.lost_timeout_s


class ObjectTracker:
    """One CameraTracker per camera name: track ids are per camera."""

    def __init__(self, lost_timeout_s: float) -> None:
        if not lost_timeout_s > 0:
            raise ValueError(f"lost_timeout_s must be > 0 s, got {lost_timeout_s}")
        self.lost_timeout_s = lost_timeout_s
        self._cameras: dict[str, CameraTracker] = {}

    def update(self, camera: str, stamp_s: float, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """CameraTracker.update for `camera`'s frame at `stamp_s`: ids (N,), 0 where not tracked."""
        tracker = self._cameras.get(camera)
        if tracker is None:
            tracker = self._cameras[camera] = CameraTracker(self.lost_timeout_s)
        return tracker.update(stamp_s, boxes, scores)
