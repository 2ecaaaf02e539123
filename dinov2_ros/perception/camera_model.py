"""Pinhole camera geometry in the vocabulary of ROS image_geometry, without ROS messages.

Pixels are in the image the detections and depth come from (the camera's image as published, not
rectified): when the distortion coefficients are non-zero, pixels are undistorted before they are
turned into rays, and 3D points are distorted when projected back. Invalid calibrations raise
InputError (a ValueError) saying what to fix.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence

import cv2
import numpy as np

from dinov2_ros.perception.input_error import InputError

LOG = logging.getLogger(__name__)
_PLANE_MODELS = ("plumb_bob", "rational_polynomial")
_FISHEYE_MODEL = "equidistant"
_PLANE_COEFFICIENTS = (4, 5, 8, 12, 14)  # what OpenCV's undistortion accepts for the plane models
# calibrations whose per-pixel table of undistorted coordinates stays cached (2.5 MB at 640x480, 96 MB
# at 4000x3000)
PIXEL_GRID_CACHE_SIZE = 4


class PinholeCameraModel:
    """Intrinsics K, distortion D (model `distortion_model`) and image size of one calibrated camera."""

    def __init__(
        self, K: np.ndarray, D: np.ndarray, width: int, height: int, distortion_model: str = "plumb_bob"
    ) -> None:
        K = np.asarray(K, np.float64)
        D = np.asarray(D, np.float64).reshape(-1)
        if K.shape != (3, 3):
            raise InputError("K shape", f"camera K must be 3x3 (9 values), got shape {K.shape}")
        if not np.isfinite(K).all() or not np.isfinite(D).all():
            raise InputError(
                "K or D not finite", "camera K or D contains NaN or infinity; republish a valid CameraInfo"
            )
        if not np.any(K):
            raise InputError(
                "K all zeros",
                "camera K is all zeros: the camera is not calibrated; calibrate it (camera_calibration) "
                "or set its camera_info_url, 3D objects need intrinsics",
            )
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise InputError(
                "focal length",
                f"camera focal lengths must be positive, got fx={K[0, 0]} fy={K[1, 1]}; check CameraInfo K",
            )
        if width <= 0 or height <= 0:
            raise InputError(
                "image size", f"camera image size must be positive, got {width}x{height}; check CameraInfo width/height"
            )
        if np.any(D) and distortion_model not in (*_PLANE_MODELS, _FISHEYE_MODEL):
            raise InputError(
                "distortion model",
                f"unsupported distortion model {distortion_model!r}; "
                f"supported: {', '.join((*_PLANE_MODELS, _FISHEYE_MODEL))}; "
                "or publish rectified images with D=0",
            )
        if np.any(D) and distortion_model in _PLANE_MODELS and D.size not in _PLANE_COEFFICIENTS:
            raise InputError(
                "distortion coefficients",
                f"the {distortion_model} model takes {', '.join(map(str, _PLANE_COEFFICIENTS))} coefficients in D "
                f"(OpenCV's counts; ROS calibrations give plumb_bob 5 and rational_polynomial 8), got {D.size}; "
                "republish the camera's calibration",
            )
        if np.any(D) and distortion_model == _FISHEYE_MODEL and D.size != 4:
            raise InputError(
                "equidistant coefficients", f"the equidistant model needs 4 coefficients in D, got {D.size}"
            )
        self.K = K
        self.D = D
        self.width = int(width)
        self.height = int(height)
        self.distortion_model = distortion_model

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
            raise InputError("k or p size", f"CameraInfo k must have 9 values and p 12, got {k.size} and {p.size}")
        if rectified:
            if not np.any(p):
                raise InputError(
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
            raise InputError(
                "roi outside the sensor",
                f"CameraInfo roi (x_offset {x_offset}, y_offset {y_offset}, {roi_width}x{roi_height}) does not "
                f"lie inside the {width}x{height} sensor; the driver's roi or width/height is wrong",
            )
        matrix[0, 2] -= x_offset
        matrix[1, 2] -= y_offset
        matrix[0] /= (binning_x, 1, binning_x)  # fx and cx; fy and cy below (image_geometry: K(0,0), K(0,2))
        matrix[1] /= (1, binning_y, binning_y)
        return cls(matrix, np.asarray(d, np.float64), roi_width // binning_x, roi_height // binning_y, distortion_model)

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
        """Pixels (N, 2) -> undistorted normalised image coordinates (x/z, y/z), shape (N, 2)."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        if not self.has_distortion:
            return np.column_stack([(uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy])
        if self.distortion_model == _FISHEYE_MODEL:
            return cv2.fisheye.undistortPoints(uv[:, None], self.K, self.D).reshape(-1, 2)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 1e-9)
        return cv2.undistortPoints(uv[:, None], self.K, self.D, None, None, None, criteria).reshape(-1, 2)

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
        if not np.any(self.D):
            uv = points[:, :2] / points[:, 2:] * (self.fx, self.fy) + (self.cx, self.cy)
        elif self.distortion_model == _FISHEYE_MODEL:
            uv = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), self.K, self.D)[0]
        else:
            uv = cv2.projectPoints(points, np.zeros(3), np.zeros(3), self.K, self.D)[0]
        uv = uv.reshape(-1, 2)
        return uv[0] if np.ndim(xyz) == 1 else uv


@functools.lru_cache(maxsize=PIXEL_GRID_CACHE_SIZE)
def _normalized_grid(k: bytes, d: bytes, width: int, height: int, distortion_model: str) -> np.ndarray:
    """PinholeCameraModel.normalized_pixel_grid of one calibration (K and D as float64 bytes); logged,
    as it delays the first frame of a calibration (0.1 s at 640x480, 0.7 s at 1920x1080 here)."""
    start = time.perf_counter()
    model = PinholeCameraModel(np.frombuffer(k).reshape(3, 3), np.frombuffer(d), width, height, distortion_model)
    rows, columns = np.mgrid[0:height, 0:width]
    pixels = np.column_stack([columns.ravel(), rows.ravel()]).astype(np.float64)
    grid = np.ascontiguousarray(model.normalized_coordinates(pixels).T.astype(np.float32).reshape(2, height, width))
    grid.setflags(write=False)  # shared by every caller of this calibration
    if model.has_distortion:
        LOG.info(
            "undistorted the %dx%d pixels of a %s calibration in %.2f s (once per calibration)",
            width,
            height,
            distortion_model,
            time.perf_counter() - start,
        )
    return grid
