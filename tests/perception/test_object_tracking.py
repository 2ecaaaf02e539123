"""Track ids (perception/object_tracking.py, perception/box_kalman.py): against ground truth on conveyor
sequences, against supervision's ByteTrack (the test oracle: a dev requirement, never a run-time one),
and on hand-made sequences for the rules that are ours (time, low scores, silences)."""

from __future__ import annotations

import numpy as np
import pytest
from supervision.tracker.byte_tracker.kalman_filter import KalmanFilter

from dinov2_ros.perception import box_kalman
from dinov2_ros.perception.object_tracking import CameraTracker, ObjectTracker, box_iou
from dinov2_ros.tools.evaluation.mot_evaluation import evaluate_tracks, iou_distances, track_conveyor
from dinov2_ros.tools.evaluation.oracle_tracker import OracleByteTrack
from dinov2_ros.tools.scenes.tabletop_scenes import (
    Conveyor,
    DetectorNoise,
    conveyor_sequence,
    noisy_detections,
    visible_boxes,
)

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


@pytest.mark.parametrize("speed_m_s, miss", [(0.05, 0.05), (0.1, 0.15)])
def test_on_conveyors_as_good_as_the_oracle(speed_m_s, miss):
    """IDF1 at least the oracle's and no more ID switches, on 10 Hz sequences with dropped frames."""
    conveyor = Conveyor(speed_m_s=speed_m_s, spawn_every_s=0.075 / speed_m_s)
    frames = list(conveyor_sequence(300, conveyor=conveyor, width=320, height=240, seed=3))
    noise = DetectorNoise(miss=miss)
    ours = evaluate_tracks(track_conveyor(frames, CameraTracker(1.0).update, noise, seed=5))
    oracle = evaluate_tracks(track_conveyor(frames, OracleByteTrack(frame_rate=10, lost_s=1.0).update, noise, seed=5))
    assert ours.idf1 >= oracle.idf1 - 1e-9 and ours.id_switches <= oracle.id_switches, (ours, oracle)


def test_ids_agree_with_the_oracle_where_both_apply_the_same_rules():
    """Scores of 1 (the paper's fused cost then admits what our IoU rule admits), every frame at 30 Hz
    (its frame counts are then our seconds): the same id for every detection of every frame."""
    frames = list(conveyor_sequence(240, rate_hz=30.0, missed_fraction=0.0, width=320, height=240, seed=2))
    noise = DetectorNoise(miss=0.05, scores=(1.0, 1.0))
    ours, oracle = CameraTracker(lost_timeout_s=0.5), OracleByteTrack(frame_rate=30, lost_s=0.5)
    rng = np.random.default_rng(4)
    compared = 0
    for index, frame in enumerate(frames):
        boxes, scores = noisy_detections(visible_boxes(frame.scene)[1], frame.scene.depth.shape, rng, noise)
        expected = oracle.update(index / 30.0, boxes, scores)
        assert ours.update(index / 30.0, boxes, scores).tolist() == expected.tolist(), f"frame {index}"
        compared += int((expected > 0).sum())
    assert compared > 500, "enough tracked detections to compare"


def test_a_detection_scoring_low_keeps_its_track_when_the_threshold_lets_it_in():
    """A detector whose scores sit at 0.12 with the threshold at 0: published on every frame under the
    same ids (the paper's fused-cost gate refused such matches, so they vanished after frame one)."""
    tracker = CameraTracker(lost_timeout_s=1.0)
    boxes = np.array([[10, 10, 50, 50], [100, 10, 140, 50]], np.float32)
    ids = [tracker.update(0.2 * i, boxes, np.array([0.12, 0.19]), score_threshold=0.0).tolist() for i in range(6)]
    assert ids == [[1, 2]] * 6


def test_a_tracked_part_whose_score_dips_stays_published_and_a_low_new_one_does_not():
    tracker = CameraTracker(lost_timeout_s=1.0, low_score_threshold=0.1)
    far = BOX + 200

    def frame(stamp_s, boxes, scores):
        return tracker.update(stamp_s, np.concatenate(boxes), np.array(scores), score_threshold=0.5).tolist()

    assert frame(0.0, [BOX], [0.8]) == [1]
    assert frame(0.1, [BOX, far], [0.3, 0.3]) == [1, 0], "the tracked part dips: kept; a new low one: not"
    assert frame(0.2, [BOX, far], [0.05, 0.3]) == [0, 0], "under the low threshold: not even tracked"
    assert frame(0.3, [BOX], [0.8]) == [1], "lost for one frame: found again"


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


def test_after_a_silence_the_camera_starts_afresh_and_publishes_at_once():
    camera = Camera(CameraTracker(lost_timeout_s=1.0))
    for _ in range(3):
        camera.frame()
    assert camera.frame(after_s=0.5) == [1], "0.5 s without a frame: the same part"
    assert camera.frame(after_s=1.2) == [2], "1.2 s without a frame (a restart): a new part, at once"
    assert camera.frame() == [2]


def test_a_slow_node_keeps_ids_by_time_not_by_frames():
    tracker = CameraTracker(lost_timeout_s=1.0)
    camera = Camera(tracker, period_s=0.25)  # a node that processes 4 frames a second
    for _ in range(5):
        camera.frame()
    assert tracker.period_s == pytest.approx(0.25)
    for _ in range(3):  # 0.75 s unseen: 3 frames at this rate, under the 1 s timeout
        camera.frame(in_view=False)
    assert camera.frame() == [1]


def test_a_camera_slower_than_the_timeout_keeps_ids_through_one_missed_frame():
    camera = Camera(CameraTracker(lost_timeout_s=1.0), period_s=2.0)
    assert [camera.frame() for _ in range(4)] == [[1]] * 4
    assert camera.frame(in_view=False) == [] and camera.frame() == [1], "one frame unseen: kept"


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


def test_degenerate_boxes_are_left_untracked_and_the_rest_tracked():
    tracker = CameraTracker(lost_timeout_s=1.0)
    boxes = np.array([[10, 10, 10, 50], [np.nan, 0, 5, 5], [20, 20, 60, 60]], np.float32)
    assert tracker.update(0.0, boxes, np.full(3, 0.9)).tolist() == [0, 0, 1]


def test_the_kalman_filter_is_bytetracks_at_its_frame_period():
    """box_kalman in seconds equals ByteTrack's per-frame filter (supervision's copy) for 1/30 s steps."""
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 300, (5, 2)).repeat(2, axis=1)[:, [0, 2, 1, 3]] + [[0, 0, 40, 30]]
    measurements = box_kalman.boxes_to_measurements(boxes)
    reference = KalmanFilter()
    means, covariances = box_kalman.initiate(measurements)
    moved = measurements + rng.normal(0, 2, measurements.shape)
    for k, measurement in enumerate(measurements):
        mean, covariance = reference.initiate(measurement)
        mean, covariance = reference.predict(mean, covariance)
        mean, covariance = reference.update(mean, covariance, moved[k])
        mean, covariance = reference.predict(mean, covariance)
        expected_box = box_kalman.means_to_boxes(mean[None])[0]
        ours_mean, ours_cov = box_kalman.predict(means[k : k + 1], covariances[k : k + 1], 1 / 30)
        ours_mean, ours_cov = box_kalman.update(ours_mean, ours_cov, moved[k : k + 1])
        ours_mean, ours_cov = box_kalman.predict(ours_mean, ours_cov, 1 / 30)
        np.testing.assert_allclose(box_kalman.means_to_boxes(ours_mean)[0], expected_box, rtol=1e-9, atol=1e-9)
        scale = np.diag([1, 1, 1, 1, 30, 30, 30, 30])  # per frame -> per second
        np.testing.assert_allclose(ours_cov[0], scale @ covariance @ scale, rtol=1e-9, atol=1e-12)


def test_box_iou_and_the_motmetrics_distance():
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    tracks = np.array([[0, 0, 10, 5], [21, 20, 31, 30]], np.float32)
    assert box_iou(truth, tracks)[0, 0] == pytest.approx(0.5)
    distances = iou_distances(truth, tracks, min_iou=0.5)
    assert distances[0, 0] == pytest.approx(0.5) and distances[1, 1] == pytest.approx(1 - 90 / 110)
    assert np.isnan(distances[0, 1]) and np.isnan(distances[1, 0])
