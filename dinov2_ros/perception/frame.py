"""The frame path's types: a camera frame in, the frame's depth and objects out.

A CameraFrame is checked once, when it is made: the image is (H, W, 3) uint8 RGB, and the depth and
the camera model describe the same H x W. Whatever makes frames (the ROS intake, a tool, a test)
gets the same refusal, a Rejection naming both sizes and where each came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.depth_completion import DepthFit
from dinov2_ros.perception.object_lifting import IDENTITY_ORIENTATION_XYZW
from dinov2_ros.perception.rejection import Rejection


@dataclass(frozen=True)
class CameraFrame:
    """One camera image with what is known about it.

    `camera` names the camera (track ids and taught classes are per camera); `stamp` is opaque to the
    pipeline (the node keeps the header stamp there). `time_s` is the frame's time on a clock that only
    goes forward, which tracks expire by (the node gives the image's arrival: header stamps can be zero
    or jump); None: the time `process` sees it. `image_source` and `depth_source` say where the arrays
    came from, for messages (the node names the topics).
    """

    camera: str
    image_rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None = None  # (H, W) float32 metres, NaN invalid: an aligned sensor depth image
    camera_model: PinholeCameraModel | None = None  # None: uncalibrated, no 3D objects
    stamp: Any = None
    time_s: float | None = None
    image_source: str = "the camera image"
    depth_source: str = "depth image"

    def __post_init__(self) -> None:
        image = self.image_rgb
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            found = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise Rejection("image", "not RGB", f"{self.image_source} must be (H, W, 3) uint8 RGB, got {found}")
        height, width = image.shape[:2]
        if self.depth is not None and self.depth.shape != (height, width):
            raise Rejection(
                "depth",
                "depth size",
                f"{self.depth_source} is {self.depth.shape[1]}x{self.depth.shape[0]} but {self.image_source} is "
                f"{width}x{height}; use depth aligned to the colour image (e.g. aligned_depth_to_color)",
            )
        model = self.camera_model
        if model is not None and (model.width, model.height) != (width, height):
            raise Rejection(
                "size",
                "camera_info size",
                f"{model.source} but the image is {width}x{height}; publish the camera_info of this image stream, "
                "with the binning and roi the driver applied",
            )

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)"""
        return self.image_rgb.shape[0], self.image_rgb.shape[1]


@dataclass(frozen=True)
class Detection:
    """One object: 2D box in camera pixels, its mask, and a 3D pose or the reason there is none."""

    class_id: int
    label: str
    score: float
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 camera pixels
    mask: np.ndarray | None  # (H, W) bool, empty outside `box`; None when the graph gives no masks
    centre: np.ndarray | None = None  # (3,) metres in the camera optical frame
    size: np.ndarray | None = None  # (3,) metres along the box's axes (`orientation` turns them)
    orientation: tuple[float, float, float, float] = IDENTITY_ORIENTATION_XYZW  # x, y, z, w
    no_pose_reason: str = ""
    axis_aligned_reason: str = ""  # why a posed detection has no oriented box (identity orientation)
    track_id: int = 0  # per-camera track id (object_tracking.py), 0 when not tracked
    # of the object's pixels with depth, the share filled from the fitted model depth (no sensor return)
    filled_depth_fraction: float = 0.0

    @property
    def lifted_from_filled_depth(self) -> bool:
        """Posed mostly from depth the sensor did not return (more than half its pixels filled)."""
        return self.centre is not None and self.filled_depth_fraction > 0.5


@dataclass(frozen=True)
class FrameResult:
    """Everything computed for one frame.

    `without_3d` says why the frame has no 3D objects at all (an uncalibrated camera, a depth image
    without one valid pixel): then no Detection3DArray is published for it, as an empty one would tell
    a planner the view is empty. Its detections still carry their 2D boxes.
    With a sensor depth and the model's, `completed_depth` is the sensor's with its holes filled from the
    model's fitted to it (depth_completion.py; `depth_fit` says how well they agreed).
    """

    frame: CameraFrame
    depth: np.ndarray | None  # (H, W) float32 metres, NaN invalid; None when the graph has no depth head
    detections: list[Detection] = field(default_factory=list)
    inference_s: float = 0.0  # the batched graph call this frame was part of
    without_3d: Rejection | None = None
    completed_depth: np.ndarray | None = None  # (H, W) float32 metres, NaN where neither depth is trustworthy
    depth_fit: DepthFit | None = None

    @property
    def object_depth(self) -> np.ndarray | None:
        """The depth the objects were lifted from (`lifting_depth`)."""
        return lifting_depth(self.completed_depth, self.frame.depth, self.depth)


def lifting_depth(
    completed: np.ndarray | None, sensor: np.ndarray | None, model: np.ndarray | None
) -> np.ndarray | None:
    """The depth objects are lifted from: the completed depth, else the sensor's, else the model's."""
    return next((depth for depth in (completed, sensor, model) if depth is not None), None)
