"""Pinhole camera geometry in the vocabulary of ROS image_geometry, without ROS messages.

Pixels are in the image the detections and depth come from (the camera's image as published, not
rectified): when the distortion coefficients are non-zero, pixels are undistorted before they are
turned into rays, and 3D points are distorted when projected back. Invalid calibrations raise a
camera_info Rejection (a ValueError) saying what to fix.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence

import cv2
import numpy as np

from dinov2_ros.perception.rejection import Rejection

LOG = logging.getLogger(__name__)
_PLANE_MODELS = ("plumb_bob", "rational_polynomial")
_FISHEYE_MODEL = "equidistant"
_PLANE_COEFFICIENTS = (4, 5, 8, 12, 14)  # what OpenCV's undistortion accepts for the plane models
# a pixel whose undistorted coordinates distort back farther than this from it has no inverse there
# (a rational_polynomial fit beyond its calibrated field): NaN, never a 3D point
MAX_REPROJECTION_PX = 0.1
# OpenCV's undistortion steps for every pixel, and for those not yet within CONVERGED_PX of their inverse
UNDISTORT_ITERATIONS, MAX_UNDISTORT_ITERATIONS, CONVERGED_PX = 20, 300, 0.01
# calibrations whose per-pixel table of undistorted coordinates stays cached (2.5 MB at 640x480, 96 MB
# at 4000x3000)
PIXEL_GRID_CACHE_SIZE = 4


def _invalid(problem: str, detail: str) -> Rejection:
    return Rejection("camera_info", problem, detail)


class PinholeCameraModel:
    """Intrinsics K, distortion D (model `distortion_model`) and image size of one calibrated camera.

    `source` says where the calibration came from, for the message when an image does not fit it
    (from_camera_info names the CameraInfo's sensor size, binning and ROI)."""

    def __init__(
        self,
        K: np.ndarray,
        D: np.ndarray,
        width: int,
        height: int,
        distortion_model: str = "plumb_bob",
        source: str = "",
    ) -> None:
        K = np.asarray(K, np.float64)
        D = np.asarray(D, np.float64).reshape(-1)
        if K.shape != (3, 3):
            raise _invalid("K shape", f"camera K must be 3x3 (9 values), got shape {K.shape}")
        if not np.isfinite(K).all() or not np.isfinite(D).all():
            raise _invalid("K or D not finite", "camera K or D contains NaN or infinity; republish a valid CameraInfo")
        if not np.any(K):
            raise _invalid(
                "K all zeros",
                "camera K is all zeros: the camera is not calibrated; calibrate it (camera_calibration) "
                "or set its camera_info_url, 3D objects need intrinsics",
            )
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise _invalid(
                "focal length",
                f"camera focal lengths must be positive, got fx={K[0, 0]} fy={K[1, 1]}; check CameraInfo K",
            )
        if width <= 0 or height <= 0:
            raise _invalid(
                "image size", f"camera image size must be positive, got {width}x{height}; check CameraInfo width/height"
            )
        if np.any(D) and distortion_model not in (*_PLANE_MODELS, _FISHEYE_MODEL):
            raise _invalid(
                "distortion model",
                f"unsupported distortion model {distortion_model!r}; "
                f"supported: {', '.join((*_PLANE_MODELS, _FISHEYE_MODEL))}; "
                "or publish rectified images with D=0",
            )
        if np.any(D) and distortion_model in _PLANE_MODELS and D.size not in _PLANE_COEFFICIENTS:
            raise _invalid(
                "distortion coefficients",
                f"the {distortion_model} model takes {', '.join(map(str, _PLANE_COEFFICIENTS))} coefficients in D "
                f"(OpenCV's counts; ROS calibrations give plumb_bob 5 and rational_polynomial 8), got {D.size}; "
                "republish the camera's calibration",
            )
        if np.any(D) and distortion_model == _FISHEYE_MODEL and D.size != 4:
            raise _invalid("equidistant coefficients", f"the equidistant model needs 4 coefficients in D, got {D.size}")
        self.K = K
        self.D = D
        self.width = int(width)
        self.height = int(height)
        self.distortion_model = distortion_model
        self.source = source or f"camera_info is for {self.width}x{self.height}"

    @classmethod
    def from_camera_info(
        cls,
        k: Sequence[float],
        d: Sequence[float],
        p: Sequence[float],
        width: int,
        height: int,
        distortion_model: str = "plumb_bob",
        rectified: bool = False,
        binning: tuple[int, int] = (0, 0),
        roi: tuple[int, int, int, int] = (0, 0, 0, 0),
    ) -> PinholeCameraModel:
        """From CameraInfo's fields: k (9 values), d, p (12 values, row-major), width, height (the full
        sensor resolution the calibration is for), binning (binning_x, binning_y) and roi (x_offset,
        y_offset, width, height of RegionOfInterest, full-resolution pixels).

        The published image (`image_raw`, or an aligned depth image) is described by K and D. Set
        `rectified` when the pixels come from a rectified image (`image_rect`): then P's left 3x3 is the
        intrinsic matrix and there is no distortion, as image_geometry does.

        Binned or cropped images (REP 104): as image_geometry's `PinholeCameraModel::fromCameraInfo`,
        binning 0 means 1 and an all-zero ROI the full image; the principal point moves by the ROI
        offset, then focal length and principal point divide by the binning, and the model's size is
        the image's: ROI size // binning. Distortion stays as calibrated (image_geometry's convention).
        """
        k, p = np.asarray(k, np.float64).reshape(-1), np.asarray(p, np.float64).reshape(-1)
        if k.size != 9 or p.size != 12:
            raise _invalid("k or p size", f"CameraInfo k must have 9 values and p 12, got {k.size} and {p.size}")
        if rectified:
            if not np.any(p):
                raise _invalid(
                    "P all zeros", "CameraInfo P is all zeros but rectified=True; calibrate the camera or use K"
                )
            matrix, d = p.reshape(3, 4)[:, :3].copy(), np.zeros(0)
        else:
            matrix = k.reshape(3, 3).copy()
            if not np.any(matrix):
                cls(matrix, np.zeros(0), width, height)  # raises the uncalibrated camera's error
        binning_x, binning_y = (max(int(b), 1) for b in binning)
        x_offset, y_offset, roi_width, roi_height = (int(v) for v in roi)
        if not any(roi):
            roi_width, roi_height = int(width), int(height)
        elif x_offset + roi_width > width or y_offset + roi_height > height or not (roi_width and roi_height):
            raise _invalid(
                "roi outside the sensor",
                f"CameraInfo roi (x_offset {x_offset}, y_offset {y_offset}, {roi_width}x{roi_height}) does not "
                f"lie inside the {width}x{height} sensor; the driver's roi or width/height is wrong",
            )
        matrix[0, 2] -= x_offset
        matrix[1, 2] -= y_offset
        matrix[0] /= (binning_x, 1, binning_x)  # fx and cx; fy and cy below (image_geometry: K(0,0), K(0,2))
        matrix[1] /= (1, binning_y, binning_y)
        size = roi_width // binning_x, roi_height // binning_y
        crop = f"roi {roi_width}x{roi_height} at ({x_offset}, {y_offset})" if any(roi) else "no roi"
        source = (
            f"CameraInfo describes a {size[0]}x{size[1]} image (sensor {width}x{height}, binning "
            f"{binning[0]}x{binning[1]}, {crop}; REP 104)"
        )
        return cls(matrix, np.asarray(d, np.float64), *size, distortion_model, source)

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def has_distortion(self) -> bool:
        """False for a plain pinhole (all distortion coefficients zero)."""
        return bool(np.any(self.D))

    def normalized_coordinates(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) -> undistorted normalised image coordinates (x/z, y/z), shape (N, 2); NaN for a
        pixel the lens model has no inverse at (its undistortion does not distort back onto it)."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        if not self.has_distortion:
            return np.column_stack([(uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy])
        normalized = self._undistorted(uv, UNDISTORT_ITERATIONS)
        # OpenCV's fixed-point iteration converges slowly towards the corners of a strong lens (3.6 px
        # off after 20 steps at a 1280x800 corner with k1 = -0.3): those points get more steps
        slow = np.flatnonzero(self._reprojection_error(uv, normalized) > CONVERGED_PX)
        if slow.size:
            normalized[slow] = self._undistorted(uv[slow], MAX_UNDISTORT_ITERATIONS)
            without_inverse = ~(self._reprojection_error(uv[slow], normalized[slow]) <= MAX_REPROJECTION_PX)
            normalized[slow[without_inverse]] = np.nan
        return normalized

    def _undistorted(self, uv: np.ndarray, iterations: int) -> np.ndarray:
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iterations, 1e-12)
        if self.distortion_model == _FISHEYE_MODEL:
            return cv2.fisheye.undistortPoints(uv[:, None], self.K, self.D, criteria=criteria).reshape(-1, 2)
        return cv2.undistortPoints(uv[:, None], self.K, self.D, None, None, None, criteria).reshape(-1, 2)

    def _reprojection_error(self, uv: np.ndarray, normalized: np.ndarray) -> np.ndarray:
        """(N,) pixels between `uv` and its `normalized` coordinates distorted back; inf where not finite."""
        finite = np.isfinite(normalized).all(axis=1) & (np.abs(normalized) < 1e6).all(axis=1)
        with np.errstate(all="ignore"):
            back = self._distorted_pixels(np.where(finite[:, None], normalized, 0.0))
            error = np.hypot(back[:, 0] - uv[:, 0], back[:, 1] - uv[:, 1])
        return np.where(finite & np.isfinite(error), error, np.inf)

    def normalized_pixel_grid(self) -> np.ndarray:
        """(2, H, W) float32, read-only: `normalized_coordinates` of every pixel centre, the x/z plane
        then the y/z plane, indexed [v, u] (planes, so that a crop of each is contiguous by rows).

        Computed once per calibration (0.1 s at 640x480 with distortion, 0.7 s at 1920x1080; logged)
        and shared by the models of every frame of that camera (an LRU of PIXEL_GRID_CACHE_SIZE
        calibrations), so a distorted camera's per-point cost is a table lookup instead of OpenCV's
        iterative undistortion."""
        return _normalized_grid(self.K.tobytes(), self.D.tobytes(), self.width, self.height, self.distortion_model)

    def back_project_pixels(self, columns: np.ndarray, rows: np.ndarray, z: np.ndarray) -> np.ndarray:
        """`back_project` of whole pixels: integer columns u (N,) and rows v (N,) with depth z (N,)
        metres along the optical axis -> 3D points (N, 3); a distorted camera's pixels are looked up in
        `normalized_pixel_grid` (within 1e-7 relative of `back_project`: a float32 table)."""
        z = np.asarray(z, np.float64).reshape(-1)
        points = np.empty((len(z), 3))
        if self.has_distortion:
            x_plane, y_plane = self.normalized_pixel_grid()
            points[:, 0], points[:, 1] = x_plane[rows, columns] * z, y_plane[rows, columns] * z
        else:
            points[:, 0] = (np.asarray(columns) - self.cx) * (z / self.fx)
            points[:, 1] = (np.asarray(rows) - self.cy) * (z / self.fy)
        points[:, 2] = z
        return points

    def project_pixel_to_3d_ray(self, uv: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) or (2,) -> unit rays in the optical frame (x right, y down, z forward)."""
        xy = self.normalized_coordinates(uv)
        rays = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        return rays[0] if np.ndim(uv) == 1 else rays

    def back_project(self, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Pixels (N, 2) with depth along the optical axis z (N,) metres -> 3D points (N, 3)."""
        xy = self.normalized_coordinates(uv)
        z = np.asarray(z, np.float64).reshape(-1, 1)
        return np.concatenate([xy * z, z], axis=1)

    def project_3d_to_pixel(self, xyz: np.ndarray) -> np.ndarray:
        """3D points (N, 3) or (3,) in the optical frame, z > 0 -> pixels (N, 2) or (2,)."""
        points = np.asarray(xyz, np.float64).reshape(-1, 3)
        if np.any(points[:, 2] <= 0):
            raise ValueError("points must lie in front of the camera (z > 0) to project to pixels")
        uv = self._distorted_pixels(points[:, :2] / points[:, 2:])
        return uv[0] if np.ndim(xyz) == 1 else uv

    def _distorted_pixels(self, xy: np.ndarray) -> np.ndarray:
        """Normalised coordinates (N, 2) -> pixels (N, 2) through the lens model: OpenCV's distortion
        (projectPoints, fisheye.projectPoints) written out in NumPy for every model but the tilted one,
        the same to 1e-12 px at a thirtieth of the time (OpenCV also computes Jacobians)."""
        x, y = xy[:, 0], xy[:, 1]
        d = np.pad(self.D, (0, max(0, 12 - self.D.size)))
        if not np.any(self.D):
            xd, yd = x, y
        elif self.distortion_model == _FISHEYE_MODEL:
            r = np.hypot(x, y)
            theta = np.arctan(r)
            theta2 = theta * theta
            theta_d = theta * (1 + theta2 * (d[0] + theta2 * (d[1] + theta2 * (d[2] + theta2 * d[3]))))
            scale = np.divide(theta_d, r, out=np.ones_like(r), where=r > 1e-8)
            xd, yd = x * scale, y * scale
        elif self.D.size > 12:  # the tilted sensor model (14 coefficients): OpenCV's own
            points = np.column_stack([xy, np.ones(len(xy))])
            return cv2.projectPoints(points, np.zeros(3), np.zeros(3), self.K, self.D)[0].reshape(-1, 2)
        else:
            k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4 = d
            r2 = x * x + y * y
            radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
            xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) + r2 * (s1 + r2 * s2)
            yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y + r2 * (s3 + r2 * s4)
        return np.column_stack([self.fx * xd + self.cx, self.fy * yd + self.cy])


@functools.lru_cache(maxsize=PIXEL_GRID_CACHE_SIZE)
def _normalized_grid(k: bytes, d: bytes, width: int, height: int, distortion_model: str) -> np.ndarray:
    """PinholeCameraModel.normalized_pixel_grid of one calibration (K and D as float64 bytes); logged,
    as it delays the first frame of a calibration (0.1 s at 640x480, 0.7 s at 1920x1080 here)."""
    start = time.perf_counter()
    model = PinholeCameraModel(np.frombuffer(k).reshape(3, 3), np.frombuffer(d), width, height, distortion_model)
    rows, columns = np.mgrid[0:height, 0:width]
    pixels = np.column_stack([columns.ravel(), rows.ravel()]).astype(np.float64)
    normalized = model.normalized_coordinates(pixels)
    grid = np.ascontiguousarray(normalized.T.astype(np.float32).reshape(2, height, width))
    grid.setflags(write=False)  # shared by every caller of this calibration
    if model.has_distortion:
        LOG.info(
            "undistorted the %dx%d pixels of a %s calibration in %.2f s (once per calibration)",
            width,
            height,
            distortion_model,
            time.perf_counter() - start,
        )
        if count := int(np.count_nonzero(np.isnan(normalized[:, 0]))):
            LOG.warning(
                "the %s calibration (D = %s) cannot be inverted at %d of the %dx%d pixels (near the image "
                "corners: its fit does not reach there): those pixels give no 3D points; recalibrate with "
                "targets out to the image corners, or use plumb_bob",
                distortion_model,
                np.round(model.D, 4).tolist(),
                count,
                width,
                height,
            )
    return grid
