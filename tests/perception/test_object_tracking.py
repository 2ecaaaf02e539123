"""Track ids (perception/object_tracking.py) against ground truth and on hand-made sequences."""

from __future__ import annotations

import numpy as np
import pytest

from dinov2_ros.perception.object_tracking import CameraTracker, ObjectTracker
from dinov2_ros.tools.evaluation.mot_evaluation import evaluate_tracks, iou_distances, track_conveyor
from dinov2_ros.tools.scenes.tabletop_scenes import conveyor_sequence

BOX = np.array([[100.0, 80.0, 160.0, 120.0]], np.float32)
SCORE = np.array([0.8], np.float32)


def test_on_a_conveyor_ids_stay_with_the_parts_within_one_switch_per_100_object_frames():
    frames = list(conveyor_sequence(320, width=240, height=180, seed=1))
    assert len(frames) >= 290, "at least 300 camera frames, 5 % of them dropped"
    tracker = CameraTracker(lost_timeout_s=1.0)
    figures = evaluate_tracks(track_conveyor(frames, tracker.update, seed=1))
    numbered = evaluate_tracks(track_conveyor(frames, lambda t, b, s: np.arange(1, len(b) + 1), seed=1))
    assert figures.ground_truth > 1000
    assert figures.switches_per_100 <= 1.0, figures
    assert figures.idf1 >= 0.9, figures
    assert numbered.switches_per_100 > 10 and numbered.idf1 < 0.5, "the measure tells numbering from tracking"


class Camera:
    """A camera sending one frame every `period_s` to `tracker`, with BOX in view or not."""

    def __init__(self, tracker: CameraTracker, period_s: float = 0.1) -> None:
        self.tracker, self.period_s, self.stamp_s = tracker, period_s, 0.0

    def frame(self, in_view: bool = True, after_s: float | None = None) -> list[int]:
        self.stamp_s += self.period_s if after_s is None else after_s
        boxes = BOX if in_view else BOX[:0]
        return self.tracker.update(self.stamp_s, boxes, SCORE[: len(boxes)]).tolist()


def test_a_part_keeps_its_id_through_a_short_miss_and_a_new_one_after_the_lost_timeout():
    camera = Camera(CameraTracker(lost_timeout_s=1.0))
    assert [camera.frame() for _ in range(5)] == [[1]] * 5
    assert [camera.frame(in_view=False) for _ in range(6)] == [[]] * 6  # 0.6 s unseen, frames still coming
    assert camera.frame() == [1], "unseen for less than the timeout: the same part"
    for _ in range(12):  # 1.2 s unseen
        camera.frame(in_view=False)
    assert camera.frame() == [0], "a new track: no id before its second sighting"
    assert camera.frame() == [2], "and never the expired part's id"


def test_a_silent_camera_expires_its_tracks_by_time_not_by_frames():
    camera = Camera(CameraTracker(lost_timeout_s=1.0))
    for _ in range(3):
        camera.frame()
    assert camera.frame(after_s=0.5) == [1], "0.5 s without a frame: the same part"
    assert camera.frame(after_s=1.2) == [0], "1.2 s without a frame (a camera restart): a new part"
    assert camera.frame() == [2]


def test_the_period_and_so_the_timeout_follow_the_processed_frame_rate():
    tracker = CameraTracker(lost_timeout_s=1.0)
    camera = Camera(tracker, period_s=0.25)  # a node that processes 4 frames a second
    for _ in range(5):
        camera.frame()
    assert tracker.period_s == pytest.approx(0.25)
    for _ in range(3):  # 0.75 s unseen: 3 frames at this rate, under the 1 s timeout
        camera.frame(in_view=False)
    assert camera.frame() == [1]


def test_object_tracker_gives_ids_per_camera():
    tracker = ObjectTracker(lost_timeout_s=1.0)
    scores = np.array([0.8, 0.8])

    def frame(camera: str, stamp_s: float, boxes: list[np.ndarray]) -> list[int]:
        ids = tracker.update(camera, stamp_s, np.array(boxes, np.float32).reshape(-1, 4), scores[: len(boxes)])
        return [int(i) for i in ids if i > 0]  # the pipeline publishes the tracked ones only

    assert frame("left", 0.0, [BOX[0]]) == [1]
    assert frame("right", 0.0, [BOX[0]]) == [1], "ids are per camera"
    moved = BOX[0] + (200, 100, 200, 100)
    assert frame("left", 0.1, [BOX[0], moved]) == [1], "new: unconfirmed"
    assert frame("left", 0.2, [moved, BOX[0]]) == [2, 1]


def test_iou_distances_follow_motmetrics_convention():
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    tracks = np.array([[0, 0, 10, 5], [21, 20, 31, 30]], np.float32)
    distances = iou_distances(truth, tracks, min_iou=0.5)
    assert distances[0, 0] == pytest.approx(0.5) and distances[1, 1] == pytest.approx(1 - 90 / 110)
    assert np.isnan(distances[0, 1]) and np.isnan(distances[1, 0])


def test_a_camera_slower_than_the_timeout_still_gets_tracks():
    camera = Camera(CameraTracker(lost_timeout_s=1.0), period_s=2.0)
    assert [camera.frame() for _ in range(4)] == [[1]] * 4
    assert camera.frame(in_view=False) == [] and camera.frame() == [1], "one frame unseen: at least one kept"
