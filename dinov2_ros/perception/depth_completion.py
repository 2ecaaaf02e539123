"""The model's metric depth fitted to the cell's depth camera, filling the camera's holes.

A depth camera returns nothing on shiny metal, black plastic and transparent packaging: the parts a
picking cell struggles with. The model's depth covers every pixel, but a monocular network's metric
scale comes from learned priors, so on a given scene it is off by a scale and an offset. Each frame
`fit_model_depth` finds sensor = scale * model + shift on the pixels where both have depth, and
`complete_depth` keeps the sensor's depth where it has a return and the fitted model depth in its
holes (REP 118: float32 metres, NaN where neither is trustworthy).

The estimator is RANSAC over two-pixel hypotheses with a depth-proportional inlier band (1 cm + 3 %,
the model's typical relative error), refitted by least squares on the inliers. The pixels it must
ignore are gross outliers, not a noisy tail: the sensor's flying pixels at part edges and multipath
returns, and regions the model gets wrong outright (an unusual material, a mirror). Least squares
would be pulled by them, and a Huber loss still is at the 20-40 % outlier shares these give; RANSAC
keeps the majority model up to half the pixels and needs no starting point. The hypotheses are
drawn from a fixed seed, so a frame's fit is reproducible. A flat view (a table or bin floor seen
from above, its depths within 10 % of each other) cannot tell a scale from a shift, since any line
through its one depth would fit: there the scale alone is fitted, through the origin. A scale
outside 0.5-2 or a shift beyond a quarter of the depth is refused as no real agreement.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

GRID = 4  # the fit looks at every GRID-th row and column (19,200 pixels of a 640x480 frame)
SAMPLES = 4096  # pixels with both depths the fit uses, evenly spread over the valid ones of the grid
MIN_PIXELS = 300  # fewer pixels of the grid with both depths: no fit (an empty view, a covered lens)
HYPOTHESES = 64
INLIER_BAND_M = 0.01  # |sensor - fitted| within INLIER_BAND_M + INLIER_BAND_RELATIVE * sensor depth
INLIER_BAND_RELATIVE = 0.03
MIN_INLIER_FRACTION = 0.5  # fewer inliers: the model and the sensor disagree, the holes stay NaN
SCALE_RANGE = (0.5, 2.0)  # a metric model's scale outside this is a wrong fit, not a scene
MAX_SHIFT = 0.25  # nor is a shift of more than this share of the median depth
FLAT_SPREAD = 0.1  # sensor depths within this share of their median (5th-95th percentile): a flat view
FILL_RANGE = (0.8, 1.2)  # holes are filled only within the sensor's own depths (1st..99th percentile) so widened


@dataclass(frozen=True)
class DepthFit:
    """sensor ~= scale * model + shift_m over a frame's pixels with both depths.

    `inlier_fraction` and `residual_m` (the median |sensor - fitted| of the inliers, metres) say how
    well the two agree; `trusted` is whether the holes are filled, `reason` why not when they are not.
    `fill_range_m` is the (near, far) band a filled pixel must fall in.
    """

    scale: float
    shift_m: float
    inlier_fraction: float
    residual_m: float
    pixels: int  # pixels of the grid with both depths
    trusted: bool
    reason: str = ""
    fill_range_m: tuple[float, float] = (0.0, 0.0)


def fit_model_depth(model_depth: np.ndarray, sensor_depth: np.ndarray) -> DepthFit:
    """The robust scale and shift that take `model_depth` to `sensor_depth`, both (H, W) float32 metres
    with NaN where there is none, pixel-aligned (the depth image aligned to the colour camera)."""
    sensor_grid, model_grid = sensor_depth[::GRID, ::GRID].ravel(), model_depth[::GRID, ::GRID].ravel()
    both = np.flatnonzero(np.isfinite(sensor_grid) & np.isfinite(model_grid))
    if both.size < MIN_PIXELS:
        return DepthFit(
            float("nan"), float("nan"), 0.0, float("nan"), int(both.size), False,
            f"only {both.size} pixels of every {GRID}th row and column have both sensor and model depth (at least "
            f"{MIN_PIXELS} are needed)",
        )  # fmt: skip
    chosen = both[np.linspace(0, both.size - 1, min(SAMPLES, both.size)).astype(np.int64)]
    model, sensor = model_grid[chosen].astype(np.float64), sensor_grid[chosen].astype(np.float64)
    band = INLIER_BAND_M + INLIER_BAND_RELATIVE * sensor
    near, low, median, high, far = np.percentile(sensor, (1, 5, 50, 95, 99))
    flat = high - low < FLAT_SPREAD * median
    scale, shift = _scale_only(model, sensor, band) if flat else _scale_and_shift(model, sensor, band)
    residuals = np.abs(scale * model + shift - sensor)
    inliers = residuals <= band
    fraction = float(inliers.mean())
    fit = DepthFit(
        scale, shift, fraction, float(np.median(residuals[inliers])) if inliers.any() else float("nan"),
        int(both.size), True, "", (float(near * FILL_RANGE[0]), float(far * FILL_RANGE[1])),
    )  # fmt: skip
    if fraction < MIN_INLIER_FRACTION:
        return _untrusted(
            fit,
            f"only {fraction:.0%} of the pixels agree with the fit (at least {MIN_INLIER_FRACTION:.0%} are needed): "
            "the model's depth and the sensor's disagree on this view",
        )
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1] or abs(shift) > MAX_SHIFT * median:
        return _untrusted(
            fit,
            f"scale {scale:.3f} and shift {shift:+.3f} m are not a metric model's error (scale within {SCALE_RANGE}, "
            f"shift within {MAX_SHIFT:.0%} of the depth): the fit found no real agreement",
        )
    return fit


def _scale_and_shift(model: np.ndarray, sensor: np.ndarray, band: np.ndarray) -> tuple[float, float]:
    """RANSAC over two-pixel hypotheses, then least squares on the inliers (twice)."""
    pairs = np.random.default_rng(0).integers(0, model.size, (HYPOTHESES, 2))
    run = model[pairs[:, 0]] - model[pairs[:, 1]]
    usable = np.abs(run) > 1e-6
    scales = np.where(usable, (sensor[pairs[:, 0]] - sensor[pairs[:, 1]]) / np.where(usable, run, 1.0), 1.0)
    shifts = sensor[pairs[:, 0]] - scales * model[pairs[:, 0]]
    votes = (np.abs(scales[:, None] * model - sensor + shifts[:, None]) <= band).sum(axis=1)
    votes[(scales < SCALE_RANGE[0]) | (scales > SCALE_RANGE[1])] = -1
    scale, shift = float(scales[np.argmax(votes)]), float(shifts[np.argmax(votes)])
    for _ in range(2):  # the second pass with the refined inliers
        inliers = np.abs(scale * model + shift - sensor) <= band
        if inliers.sum() < 2 or np.ptp(model[inliers]) < 1e-6:
            break
        scale, shift = (float(v) for v in np.polyfit(model[inliers], sensor[inliers], 1))
    return scale, shift


def _scale_only(model: np.ndarray, sensor: np.ndarray, band: np.ndarray) -> tuple[float, float]:
    """A flat view (a table or bin floor seen from above): its depths cannot tell a scale from a shift,
    so the scale alone, from the median ratio, then least squares through the origin on the inliers."""
    positive = model > 1e-6
    if not positive.any():
        return float("nan"), 0.0
    scale = float(np.median(sensor[positive] / model[positive]))
    for _ in range(2):
        inliers = (np.abs(scale * model - sensor) <= band) & positive
        if not inliers.any():
            break
        scale = float(model[inliers] @ sensor[inliers] / (model[inliers] @ model[inliers]))
    return scale, 0.0


def _untrusted(fit: DepthFit, reason: str) -> DepthFit:
    return dataclasses.replace(fit, trusted=False, reason=reason)


def complete_depth(sensor_depth: np.ndarray, model_depth: np.ndarray, fit: DepthFit) -> tuple[np.ndarray, np.ndarray]:
    """(completed depth, filled): the sensor's depth where it has a return, `fit` applied to the model's
    depth in its holes where the fit is trusted and the result lies in `fit.fill_range_m`, NaN
    elsewhere ((H, W) float32 metres, REP 118); `filled` (H, W) bool marks the pixels taken from the
    model. An untrusted fit leaves the sensor's depth as it is."""
    completed = sensor_depth.copy()
    holes = ~np.isfinite(sensor_depth)
    if not fit.trusted or not holes.any():
        return completed, np.zeros(sensor_depth.shape, bool)
    fitted = model_depth[holes] * np.float32(fit.scale) + np.float32(fit.shift_m)
    near, far = fit.fill_range_m
    usable = (fitted >= near) & (fitted <= far)  # NaN model depth compares False: stays a hole
    filled = np.zeros(sensor_depth.shape, bool)
    filled[holes] = usable
    completed[filled] = fitted[usable]
    return completed, filled
