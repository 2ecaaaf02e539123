"""3D centre, size and pose of each detection from a depth image and the camera intrinsics.

Depth follows REP 118: 32FC1 in metres or 16UC1 in millimetres, with 0 and NaN meaning "no return".
A detection whose mask holds too little valid depth gets no pose and a reason, never a guessed one.
The box is axis-aligned in the camera optical frame (identity orientation): one view of an unknown
part gives no reliable orientation, and an axis-aligned box is what a grasp planner can trust.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dinov2_ros.perception.camera_model import PinholeCameraModel

IDENTITY_ORIENTATION_XYZW = (0.0, 0.0, 0.0, 1.0)
MEDIAN_SAMPLES = 2048  # depth pixels the robust statistics look at; extents use every pixel


@dataclass(frozen=True)
class LiftedObject:
    """One detection in 3D; `center` and `size` are None exactly when `reason` says why."""

    center: np.ndarray | None  # (3,) metres, optical frame (x right, y down, z forward)
    size: np.ndarray | None  # (3,) metres, extents along x, y, z of the optical frame
    inlier_count: int  # depth pixels that support the estimate
    reason: str = ""
    orientation_xyzw: tuple[float, float, float, float] = IDENTITY_ORIENTATION_XYZW

    @property
    def has_pose(self) -> bool:
        return self.center is not None


def fast_median(values: np.ndarray) -> float:
    """np.median of a 1D float array, by one partition: the same value, a fifth of the time for the
    few thousand values a detection has (np.median's generic axis and NaN handling dominate there)."""
    half = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, half)[half])
    lower, upper = np.partition(values, (half - 1, half))[half - 1 : half + 1]
    return float(0.5 * (lower + upper))


class ObjectLifter:
    """Robust 3D boxes: median depth, rejection of depth outliers (beyond `outlier_mads` median absolute
    deviations, at least `min_depth_band` metres), then the extents of the remaining points.

    Works when most of the mask lies on the part, which holds for the heads' masks and for boxes of
    compact parts; flying pixels at edges and background seen through holes are rejected by depth.
    """

    def __init__(
        self,
        min_valid_pixels: int = 20,
        outlier_mads: float = 3.0,
        min_depth_band: float = 0.01,
    ) -> None:
        if min_valid_pixels < 1 or outlier_mads <= 0 or min_depth_band < 0:
            raise ValueError("need min_valid_pixels >= 1, outlier_mads > 0 and min_depth_band >= 0 (metres)")
        self.min_valid_pixels = min_valid_pixels
        self.outlier_mads = outlier_mads
        self.min_depth_band = min_depth_band

    def lift(
        self,
        depth_m: np.ndarray | None,
        camera: PinholeCameraModel | None,
        boxes: np.ndarray,
        masks: Sequence[np.ndarray] | np.ndarray | None = None,
    ) -> list[LiftedObject]:
        """One LiftedObject per box (K, 4) xyxy camera pixels; `masks` (K of (H, W) bool) narrow each box.

        `depth_m` is metres with NaN for no return (see perception.depth), aligned with the camera image.
        """
        boxes = self._checked(depth_m, camera, boxes, masks)
        if camera is None:
            return [
                LiftedObject(None, None, 0, "no valid camera intrinsics (CameraInfo missing or uncalibrated)")
            ] * len(boxes)
        if depth_m is None:
            return [LiftedObject(None, None, 0, "no depth image for this frame")] * len(boxes)
        return [
            self._lift_one(depth_m, camera, box, None if masks is None else masks[i]) for i, box in enumerate(boxes)
        ]

    def can_lift(
        self,
        depth_m: np.ndarray | None,
        camera: PinholeCameraModel | None,
        boxes: np.ndarray,
        masks: Sequence[np.ndarray] | np.ndarray | None = None,
    ) -> np.ndarray:
        """(K,) bool: where `lift` would give the box a pose (intrinsics, and enough valid depth in its
        mask), without the estimate, for a caller that has a better box for those (oriented_box)."""
        boxes = self._checked(depth_m, camera, boxes, masks)
        if camera is None or depth_m is None:
            return np.zeros(len(boxes), bool)
        counts = [
            np.count_nonzero(self._support(depth_m, box, None if masks is None else masks[i])[3])
            for i, box in enumerate(boxes)
        ]
        return np.array(counts, np.int64).reshape(-1) >= self.min_valid_pixels

    @staticmethod
    def _checked(depth_m, camera, boxes, masks) -> np.ndarray:
        """Boxes as (K, 4) float64; raises ValueError when depth, intrinsics and masks do not agree."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if camera is None or depth_m is None:
            return boxes
        if depth_m.shape != (camera.height, camera.width):
            raise ValueError(
                f"depth image is {depth_m.shape[1]}x{depth_m.shape[0]} but CameraInfo says "
                f"{camera.width}x{camera.height}; use depth aligned to the camera image"
            )
        if masks is not None and (len(masks) != len(boxes) or any(m.shape != depth_m.shape for m in masks)):
            shapes = [m.shape for m in masks]
            raise ValueError(f"masks must be {len(boxes)} arrays of the depth's shape {depth_m.shape}, got {shapes}")
        return boxes

    @staticmethod
    def _support(
        depth_m: np.ndarray, box: np.ndarray, mask: np.ndarray | None
    ) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(x1, y1, crop, support): the box's depth crop from pixel (x1, y1) and where it holds valid
        depth inside the mask."""
        height, width = depth_m.shape
        left, top, right, bottom = box.tolist()  # Python floats: NumPy's scalar calls cost more than the crop
        x1, y1 = min(max(math.floor(left), 0), width), min(max(math.floor(top), 0), height)
        x2, y2 = min(max(math.ceil(right), 0), width), min(max(math.ceil(bottom), 0), height)
        crop = depth_m[y1:y2, x1:x2]
        support = np.isfinite(crop) if mask is None else np.isfinite(crop) & mask[y1:y2, x1:x2]
        return x1, y1, crop, support

    def _lift_one(
        self, depth_m: np.ndarray, camera: PinholeCameraModel, box: np.ndarray, mask: np.ndarray | None
    ) -> LiftedObject:
        x1, y1, crop, support = self._support(depth_m, box, mask)
        count = int(np.count_nonzero(support))
        if count < self.min_valid_pixels:
            return LiftedObject(
                None, None, count,
                f"only {count} valid depth pixels inside the detection (need {self.min_valid_pixels})",
            )  # fmt: skip
        z_valid = crop[support]
        # medians of an even subsample: same estimate, less time
        sample = z_valid[:: -(-count // MEDIAN_SAMPLES)].astype(np.float64)
        inliers = sample
        for _ in range(3):  # re-estimate on the inliers: a large first spread (half table) shrinks to the part's
            median = fast_median(inliers)
            band = max(self.outlier_mads * 1.4826 * fast_median(np.abs(inliers - median)), self.min_depth_band)
            refined = sample[np.abs(sample - median) <= band]
            if len(refined) == len(inliers):
                break
            inliers = refined
        keep = support & (np.abs(crop - median) <= band)
        if camera.has_distortion:  # x = (x/z)(u, v) * z from the camera's table, reduced over the crop
            rays = camera.normalized_pixel_grid()[:, y1 : y1 + crop.shape[0], x1 : x1 + crop.shape[1]]
            keep &= np.isfinite(rays[0])  # pixels where the lens model has no inverse give no points
            z = crop.astype(np.float64)  # NaN where no return: outside `keep`
            coordinates = (rays[0] * z, rays[1] * z, z)
            if not keep.any():
                return LiftedObject(None, None, 0, "no pixel of the detection has an inverse in the lens model")
            low = np.array([np.min(c, where=keep, initial=np.inf) for c in coordinates])
            high = np.array([np.max(c, where=keep, initial=-np.inf) for c in coordinates])
        else:  # pinhole: x = (u - cx) / fx * z, so the extremes of x (y) come from each column's (row's)
            # nearest and farthest kept depth: four reductions of the crop instead of a gather per pixel
            near, far = np.where(keep, crop, np.inf), np.where(keep, crop, -np.inf)
            low, high = np.empty(3), np.empty(3)
            for axis, (start, c, f) in enumerate(((x1, camera.cx, camera.fx), (y1, camera.cy, camera.fy))):
                near_line, far_line = near.min(axis=axis), far.max(axis=axis)  # per column, then per row
                used = np.isfinite(near_line)  # lines with a kept pixel
                ratio = (np.arange(start, start + len(near_line))[used] - c) / f
                ends = np.concatenate([ratio * near_line[used], ratio * far_line[used]])
                low[axis], high[axis] = ends.min(), ends.max()
            low[2], high[2] = near.min(), far.max()
        center = 0.5 * (low + high)
        # points are pixel centres: add one pixel's footprint so a face of n pixels spans n pixels
        footprint = center[2] * np.array([1 / camera.fx, 1 / camera.fy, 0.0])
        return LiftedObject(center, high - low + footprint, int(np.count_nonzero(keep)))
