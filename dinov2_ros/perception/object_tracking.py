"""Per-camera track ids: ByteTrack (Zhang et al., ECCV 2022), vectorised over tracks, in seconds.

Each frame: every track's box is predicted to the frame's time (box_kalman, constant velocity);
detections scoring at least the score threshold ("high") are matched to the confirmed tracks, lost
ones included, by IoU fused with the score; the tracks still unmatched are matched to the detections
between `low_score_threshold` and the threshold by IoU alone (a part half hidden keeps its id while its
score dips); tracks born on the previous frame are confirmed by a high detection; the high detections
left start new tracks. Assignment is the Hungarian method (scipy's linear_sum_assignment).

Where this differs from the paper's code, and why:
- Time, not frames: a track unseen for more than `lost_timeout_s` (the frames' stamps) ends, whatever
  the frame rate (but not before one missed frame of a camera slower than that), and a camera silent
  that long starts afresh. Frame counts made a dropped frame or a slow node change the timeout.
- Matches are admitted by IoU (at least 0.2 against confirmed tracks, 0.3 against new ones: the
  paper's thresholds 0.8 and 0.7 on 1 - IoU x score with a score of 1), and the fused cost only
  chooses among them. The paper admits by the fused cost, so a detection scoring under 0.2 never
  matched its own track and vanished after its first frame (scores depend on the detector; ours are
  calibrated by the user's threshold, not by the paper's 0.6).
- Every high detection may start a track (the paper asks for threshold + 0.1), and ids are given on
  confirmation, so they count 1, 2, 3 ... with no gaps; they are never reused while the tracker lives.
- A detection is published from its second sighting, or at once on the camera's first frame and after
  a silence of `lost_timeout_s` (nothing to confirm against), as the paper does on its first frame.

Tracks are class-agnostic, as ByteTrack's are: a part keeps its id when the detector's class flips.
"""

from __future__ import annotations

import statistics
from collections import deque

import numpy as np
from scipy.optimize import linear_sum_assignment

from dinov2_ros.perception import box_kalman

# IoU a match needs: high detections against confirmed tracks, low ones against what those left,
# high ones against tracks born on the previous frame (ByteTrack's 0.8, 0.5 and 0.7 on 1 - IoU)
MIN_IOU_CONFIRMED, MIN_IOU_LOW, MIN_IOU_NEW = 0.2, 0.5, 0.3
# a lost track this similar to a tracked one is the same part: the younger copy goes (ByteTrack's 0.15)
DUPLICATE_IOU = 0.85
DEFAULT_LOW_SCORE = 0.1  # ByteTrack's floor for the second association
PERIOD_WINDOW = 16  # frame gaps the camera's period is the median of
# a gap longer than this many periods is a silence, not a frame period; and a track is kept at least
# this many periods (one missed frame of a camera slower than the lost timeout)
SILENCE_PERIODS = 2.5

_TRACKED, _LOST = 0, 1


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) IoU of xyxy boxes `a` (A, 4) and `b` (B, 4); 0 for empty boxes."""
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(width, 0.0) * np.maximum(height, 0.0)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _assign(iou: np.ndarray, min_iou: float, scores: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the matches: the most pairs with IoU >= `min_iou`, then the lowest total cost
    1 - IoU (x the column's score when `scores` is given, ByteTrack's score fusion)."""
    if iou.size == 0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    allowed = iou >= min_iou
    cost = 1.0 - (iou * scores[None, :] if scores is not None else iou)
    # a refused pair costs more than any set of allowed ones: the most matches first
    cost = np.where(allowed, cost, float(min(iou.shape)) + 2.0)
    rows, columns = linear_sum_assignment(cost)
    keep = allowed[rows, columns]
    return rows[keep], columns[keep]


class CameraTracker:
    """ByteTrack for one camera; the state of all tracks in arrays (one row per track)."""

    def __init__(self, lost_timeout_s: float, low_score_threshold: float = DEFAULT_LOW_SCORE) -> None:
        if not lost_timeout_s > 0:
            raise ValueError(f"lost_timeout_s must be > 0 s, got {lost_timeout_s}")
        if not 0.0 <= low_score_threshold <= 1.0:
            raise ValueError(f"low_score_threshold must be in [0, 1], got {low_score_threshold}")
        self.lost_timeout_s = lost_timeout_s
        self.low_score_threshold = low_score_threshold
        self._last_stamp_s: float | None = None
        self._periods: deque[float] = deque(maxlen=PERIOD_WINDOW)
        self._next_id = 1
        self._means = np.zeros((0, 8))
        self._covariances = np.zeros((0, 8, 8))
        self._ids = np.zeros(0, np.int64)  # 0: born on the previous frame, not yet confirmed
        self._state = np.zeros(0, np.int8)  # _TRACKED or _LOST (confirmed tracks only)
        self._first_seen_s = np.zeros(0)
        self._last_seen_s = np.zeros(0)

    def __len__(self) -> int:
        """The tracks alive: confirmed (tracked or lost) and new."""
        return len(self._ids)

    def update(self, stamp_s: float, boxes: np.ndarray, scores: np.ndarray, score_threshold: float = 0.5) -> np.ndarray:
        """Track ids (N,) int64 for `boxes` (N, 4) xyxy pixels with `scores` (N,) of the frame at
        `stamp_s` (seconds on a clock that only goes forward); 0 where a detection is not published: a
        new part before its second sighting, or a low detection (under `score_threshold`) that no
        track continues."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        fresh = self._advance(stamp_s)
        usable = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        high = usable & (scores >= score_threshold)
        low = usable & ~high & (scores >= self.low_score_threshold)
        iou = box_iou(box_kalman.means_to_boxes(self._means), boxes)  # every track against every detection
        track_open, detection_open = np.ones(len(self._ids), bool), usable.copy()
        matched: list[tuple[np.ndarray, np.ndarray]] = []

        def match(tracks: np.ndarray, candidates: np.ndarray, min_iou: float, fuse: bool) -> None:
            detections = np.flatnonzero(candidates & detection_open)
            rows, columns = _assign(iou[np.ix_(tracks, detections)], min_iou, scores[detections] if fuse else None)
            track_open[tracks[rows]] = detection_open[detections[columns]] = False
            matched.append((tracks[rows], detections[columns]))

        confirmed, new = self._ids > 0, self._ids == 0
        # 1. high detections against every confirmed track, lost ones included, by IoU x score
        match(np.flatnonzero(confirmed), high, MIN_IOU_CONFIRMED, fuse=True)
        # 2. the tracked ones still unmatched against the low detections, by IoU; the rest are lost
        match(np.flatnonzero(track_open & confirmed & (self._state == _TRACKED)), low, MIN_IOU_LOW, fuse=False)
        now_lost = track_open & confirmed
        # 3. new tracks against the high detections left: confirmed, or gone
        match(np.flatnonzero(new), high, MIN_IOU_NEW, fuse=True)
        ended = np.flatnonzero(track_open & new)  # a new track not seen again
        starting = np.flatnonzero(detection_open & high)

        tracks = np.concatenate([t for t, _ in matched])
        detections = np.concatenate([d for _, d in matched])
        self._state[now_lost] = _LOST
        self._correct(tracks, boxes[detections], stamp_s)
        ids = np.zeros(len(boxes), np.int64)
        ids[detections] = self._ids[tracks]
        self._start(boxes[starting], stamp_s, confirm=fresh)
        if fresh:
            ids[starting] = self._ids[len(self._ids) - len(starting) :]
        self._remove(ended)
        self._remove_duplicates()
        return ids

    @property
    def period_s(self) -> float:
        """The camera's frame period (s) as processed: the median of its recent frame gaps."""
        return statistics.median(self._periods) if self._periods else 0.0

    def _advance(self, stamp_s: float) -> bool:
        """Predict every track to `stamp_s` and end those unseen for longer than the lost timeout;
        True on the camera's first frame and after a silence longer than it (a new start)."""
        last = self._last_stamp_s
        self._last_stamp_s = stamp_s if last is None else max(stamp_s, last)
        dt_s = 0.0 if last is None else max(0.0, stamp_s - last)
        if last is not None and (not self._periods or dt_s <= SILENCE_PERIODS * self.period_s):
            self._periods.append(dt_s)  # a frame period, not a gap of dropped frames
        # a camera slower than the timeout still keeps a track through one missed frame
        timeout_s = max(self.lost_timeout_s, SILENCE_PERIODS * self.period_s)
        self._remove(np.flatnonzero(stamp_s - self._last_seen_s > timeout_s))
        moving = self._means.copy()
        moving[self._state == _LOST, 7] = 0.0  # as ByteTrack: a lost box keeps its height
        predicting = self._ids > 0  # a new track stays where it was seen, as in ByteTrack
        means, covariances = box_kalman.predict(moving[predicting], self._covariances[predicting], dt_s)
        self._means[predicting], self._covariances[predicting] = means, covariances
        return last is None or dt_s > timeout_s

    def _correct(self, tracks: np.ndarray, boxes: np.ndarray, stamp_s: float) -> None:
        """Kalman-update `tracks` with their matched `boxes`; they are tracked, confirmed, seen now."""
        if len(tracks) == 0:
            return
        self._means[tracks], self._covariances[tracks] = box_kalman.update(
            self._means[tracks], self._covariances[tracks], box_kalman.boxes_to_measurements(boxes)
        )
        self._state[tracks] = _TRACKED
        self._last_seen_s[tracks] = stamp_s
        unnamed = tracks[self._ids[tracks] == 0]
        self._ids[unnamed] = np.arange(self._next_id, self._next_id + len(unnamed))
        self._next_id += len(unnamed)

    def _start(self, boxes: np.ndarray, stamp_s: float, confirm: bool) -> None:
        """New tracks at `boxes`, confirmed at once (with ids) when `confirm`."""
        count = len(boxes)
        if count == 0:
            return
        means, covariances = box_kalman.initiate(box_kalman.boxes_to_measurements(boxes))
        ids = np.arange(self._next_id, self._next_id + count) if confirm else np.zeros(count, np.int64)
        self._next_id += count if confirm else 0
        self._means = np.concatenate([self._means, means])
        self._covariances = np.concatenate([self._covariances, covariances])
        self._ids = np.concatenate([self._ids, ids])
        self._state = np.concatenate([self._state, np.full(count, _TRACKED, np.int8)])
        self._first_seen_s = np.concatenate([self._first_seen_s, np.full(count, stamp_s)])
        self._last_seen_s = np.concatenate([self._last_seen_s, np.full(count, stamp_s)])

    def _remove(self, tracks: np.ndarray) -> None:
        if len(tracks) == 0:
            return
        keep = np.ones(len(self._ids), bool)
        keep[tracks] = False
        for name in ("_means", "_covariances", "_ids", "_state", "_first_seen_s", "_last_seen_s"):
            setattr(self, name, getattr(self, name)[keep])

    def _remove_duplicates(self) -> None:
        """A lost track on top of a tracked or new one is the same part: keep the one seen for longer."""
        tracked = np.flatnonzero(self._state == _TRACKED)
        lost = np.flatnonzero(self._state == _LOST)
        if len(tracked) == 0 or len(lost) == 0:
            return
        boxes = box_kalman.means_to_boxes(self._means)
        pairs_t, pairs_l = np.nonzero(box_iou(boxes[tracked], boxes[lost]) > DUPLICATE_IOU)
        age = self._last_seen_s - self._first_seen_s
        tracked_older = age[tracked[pairs_t]] > age[lost[pairs_l]]
        self._remove(np.union1d(lost[pairs_l[tracked_older]], tracked[pairs_t[~tracked_older]]))


class ObjectTracker:
    """One CameraTracker per camera name: track ids are per camera."""

    def __init__(self, lost_timeout_s: float, low_score_threshold: float = DEFAULT_LOW_SCORE) -> None:
        CameraTracker(lost_timeout_s, low_score_threshold)  # refuses bad settings now, not at the first frame
        self.lost_timeout_s = lost_timeout_s
        self.low_score_threshold = low_score_threshold
        self._cameras: dict[str, CameraTracker] = {}

    def update(
        self, camera: str, stamp_s: float, boxes: np.ndarray, scores: np.ndarray, score_threshold: float = 0.5
    ) -> np.ndarray:
        """CameraTracker.update for `camera`'s frame at `stamp_s`: ids (N,), 0 where not published."""
        tracker = self._cameras.get(camera)
        if tracker is None:
            tracker = self._cameras[camera] = CameraTracker(self.lost_timeout_s, self.low_score_threshold)
        return tracker.update(stamp_s, boxes, scores, score_threshold)
