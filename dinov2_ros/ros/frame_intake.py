"""The one place a camera's paired messages become a CameraFrame, or a Rejection saying why they cannot.

Image -> RGB (image_conversion, as cv_bridge converts), CameraInfo -> PinholeCameraModel (as
image_geometry's fromCameraInfo; None for an uncalibrated camera, whose frames give 2D objects and
depth only), aligned depth -> metres (REP 118). CameraFrame checks that the three agree in size.
"""

from __future__ import annotations

import time
from typing import Protocol

from sensor_msgs.msg import CameraInfo, Image

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.frame import CameraFrame
from dinov2_ros.ros.frame_slots import PairedFrame
from dinov2_ros.ros.image_conversion import depth_image_to_metres


class CameraInput(Protocol):
    """What the intake needs of a camera (ros.camera_streams.CameraStreams)."""

    name: str
    rectified: bool  # project with P and no distortion (image_rect streams)
    image_topic: str
    depth_topic: str

    def to_rgb(self, msg) -> ...: ...


def is_uncalibrated(info: CameraInfo, rectified: bool = False) -> bool:
    """CameraInfo's convention for an uncalibrated camera: K (P for a rectified image) all zeros, as
    camera_info_manager publishes without a calibration file (usb_cam, v4l2_camera)."""
    return not any(info.p if rectified else info.k)


def camera_model_from_info(info: CameraInfo, rectified: bool = False) -> PinholeCameraModel:
    """PinholeCameraModel of the image a sensor_msgs/CameraInfo describes, binning and ROI applied as
    image_geometry's fromCameraInfo does (REP 104; see PinholeCameraModel.from_camera_info), with P
    and no distortion for a `rectified` image. A camera_info Rejection for missing or invalid intrinsics."""
    roi = info.roi
    return PinholeCameraModel.from_camera_info(
        info.k,
        info.d,
        info.p,
        info.width,
        info.height,
        info.distortion_model or "plumb_bob",
        rectified=rectified,
        binning=(info.binning_x, info.binning_y),
        roi=(roi.x_offset, roi.y_offset, roi.width, roi.height),
    )


def to_camera_frame(paired: PairedFrame, camera: CameraInput) -> CameraFrame:
    """The CameraFrame of `paired` (`stamp` its image stamp in ns, `time_s` its arrival on the monotonic
    clock); a Rejection (category image, camera_info, depth or size) naming the message at fault."""
    image = camera.to_rgb(paired.image)
    info: CameraInfo = paired.camera_info
    model = None if is_uncalibrated(info, camera.rectified) else camera_model_from_info(info, camera.rectified)
    depth_msg: Image | None = paired.depth
    return CameraFrame(
        camera.name,
        image,
        depth_image_to_metres(depth_msg) if depth_msg is not None else None,
        model,
        stamp=paired.stamp_ns,
        time_s=paired.received_ns / 1e9 if paired.received_ns else time.monotonic(),
        image_source=f"the camera image on {camera.image_topic}",
        depth_source=f"depth image on {camera.depth_topic}",
    )
