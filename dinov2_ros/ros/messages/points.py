"""Point clouds (sensor_msgs/PointCloud2, metres in the camera optical frame)."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from dinov2_ros.perception.frame import FrameResult

_XYZ_FIELDS = [
    PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, name in enumerate("xyz")
]


def to_point_cloud(points: np.ndarray, header: Header) -> PointCloud2:
    """Unorganised xyz float32 cloud from (N, 3) points in metres."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    return PointCloud2(
        header=header,
        height=1,
        width=points.shape[0],
        fields=_XYZ_FIELDS,
        is_bigendian=False,
        point_step=12,
        row_step=12 * points.shape[0],
        data=points.tobytes(),
        is_dense=True,
    )


def depth_points(result: FrameResult, stride: int) -> np.ndarray:
    """(N, 3) points of every `stride`-th valid depth pixel, back-projected with the camera model (a
    pixel where the lens model has no inverse gives no point)."""
    depth, model = result.depth, result.frame.camera_model
    rows, cols = np.mgrid[0 : depth.shape[0] : stride, 0 : depth.shape[1] : stride]
    z = depth[rows, cols]
    valid = np.isfinite(z)
    points = model.back_project_pixels(cols[valid], rows[valid], z[valid])
    return points[np.isfinite(points).all(axis=1)]
