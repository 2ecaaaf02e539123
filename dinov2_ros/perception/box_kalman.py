"""A constant-velocity Kalman filter on image boxes, for all of a camera's tracks at once.

The state of each track is (cx, cy, a, h, vcx, vcy, va, vh): the box centre (pixels), its aspect ratio
w / h, its height (pixels) and their rates of change per second. The noise model is ByteTrack's (its
`kalman_filter.py`, from DeepSORT): standard deviations proportional to the box height, with the
weights below, which that filter applies per frame of a 30 Hz video. Here time is in seconds, so a
camera that drops frames or runs at 5 Hz predicts as far as the time that passed: the process noise
grows with the step, as a random walk's does, and equals ByteTrack's for a step of REFERENCE_PERIOD_S.

Every function takes and returns arrays over tracks: means (T, 8) and covariances (T, 8, 8), float64.
"""

from __future__ import annotations

import numpy as np

POSITION_WEIGHT = 1.0 / 20  # std of the centre and height, per unit of box height
VELOCITY_WEIGHT = 1.0 / 160  # std of their change per reference period, per unit of box height
REFERENCE_PERIOD_S = 1.0 / 30  # the frame period ByteTrack's weights are given for

# standard deviations = box height x _PER_HEIGHT + _FIXED (the aspect ratio's do not scale), per state
_RATE = VELOCITY_WEIGHT / REFERENCE_PERIOD_S
_PROCESS_PER_HEIGHT = np.array([POSITION_WEIGHT] * 2 + [0.0, POSITION_WEIGHT] + [_RATE] * 2 + [0.0, _RATE])
_PROCESS_FIXED = np.array([0.0, 0.0, 1e-2, 0.0, 0.0, 0.0, 1e-5 / REFERENCE_PERIOD_S, 0.0])
_INITIAL_PER_HEIGHT = _PROCESS_PER_HEIGHT * np.array([2.0] * 4 + [10.0] * 4)
_MEASUREMENT_PER_HEIGHT = np.array([POSITION_WEIGHT] * 2 + [0.0, POSITION_WEIGHT])
_MEASUREMENT_FIXED = np.array([0.0, 0.0, 1e-1, 0.0])
_DIAGONAL_8, _DIAGONAL_4 = np.diag_indices(8), np.diag_indices(4)


def boxes_to_measurements(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy pixel boxes -> (N, 4) measurements (cx, cy, w / h, h)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + width / 2, boxes[:, 1] + height / 2, width / height, height], axis=1)


def means_to_boxes(means: np.ndarray) -> np.ndarray:
    """(T, 8) states -> (T, 4) xyxy pixel boxes."""
    cx, cy, aspect, height = means[:, 0], means[:, 1], means[:, 2], means[:, 3]
    half_w, half_h = aspect * height / 2, height / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


def initiate(measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks at `measurements` (N, 4), at rest, with ByteTrack's initial uncertainty."""
    means = np.zeros((len(measurements), 8))
    means[:, :4] = measurements
    std = measurements[:, 3:4] * _INITIAL_PER_HEIGHT + _PROCESS_FIXED
    covariances = np.zeros((len(measurements), 8, 8))
    covariances[:, _DIAGONAL_8[0], _DIAGONAL_8[1]] = std**2
    return means, covariances


def predict(means: np.ndarray, covariances: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """The states `dt_s` seconds later (dt_s >= 0)."""
    if len(means) == 0:
        return means, covariances
    variance = (means[:, 3:4] * _PROCESS_PER_HEIGHT + _PROCESS_FIXED) ** 2
    motion = np.eye(8)
    motion[_DIAGONAL_4[0], _DIAGONAL_4[1] + 4] = dt_s
    means = means @ motion.T
    covariances = motion @ covariances @ motion.T
    covariances[:, _DIAGONAL_8[0], _DIAGONAL_8[1]] += variance * (dt_s / REFERENCE_PERIOD_S)
    return means, covariances


def update(means: np.ndarray, covariances: np.ndarray, measurements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The states corrected by `measurements` (T, 4), one per track."""
    if len(means) == 0:
        return means, covariances
    innovation_cov = covariances[:, :4, :4].copy()
    innovation_cov[:, _DIAGONAL_4[0], _DIAGONAL_4[1]] += (
        means[:, 3:4] * _MEASUREMENT_PER_HEIGHT + _MEASUREMENT_FIXED
    ) ** 2
    cross = covariances[:, :, :4]  # P H^T, (T, 8, 4)
    gain = np.linalg.solve(innovation_cov, cross.transpose(0, 2, 1)).transpose(0, 2, 1)  # P H^T S^-1
    innovation = measurements - means[:, :4]
    means = means + np.einsum("tij,tj->ti", gain, innovation)
    covariances = covariances - gain @ innovation_cov @ gain.transpose(0, 2, 1)
    return means, covariances
