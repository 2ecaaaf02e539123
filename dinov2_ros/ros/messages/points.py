"""Point clouds (sensor_msgs/PointCloud2, metres in the camera optical frame)."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from dinov2_ros.perception.frame import FrameResult
from dinov2_ros.perception.object_points import ObjectPoints

_XYZ_FIELDS = [
    PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, name in enumerate("xyz")
]
# PCL's PointXYZRGBL by name (pcl::fromROSMsg maps fields by name): rgb as PCL packs it, 0x00RRGGBB in a
# float32's bytes; label the object's id. 20 bytes a point, no padding.
_OBJECT_FIELDS = [
    *_XYZ_FIELDS,
    PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
    PointField(name="label", offset=16, datatype=PointField.UINT32, count=1),
]
_OBJECT_POINT = np.dtype(
    {"names": ["x", "y", "z", "rgb", "label"], "formats": ["<f4", "<f4", "<f4", "<u4", "<u4"], "itemsize": 20}
)


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


def to_object_point_cloud(objects: ObjectPoints, header: Header) -> PointCloud2:
    """Unorganised x, y, z (metres), rgb, label cloud of every object's points (`object_points`);
    `label` is the point's object id, the `id` of its Detection3D/Detection2D."""
    cloud = np.empty(len(objects.ids), _OBJECT_POINT)
    cloud["x"], cloud["y"], cloud["z"] = objects.points.T
    red, green, blue = (objects.rgb[:, channel].astype(np.uint32) for channel in range(3))
    cloud["rgb"] = (red << 16) | (green << 8) | blue
    cloud["label"] = objects.ids
    return PointCloud2(
        header=header,
        height=1,
        width=len(cloud),
        fields=_OBJECT_FIELDS,
        is_bigendian=False,
        point_step=_OBJECT_POINT.itemsize,
        row_step=_OBJECT_POINT.itemsize * len(cloud),
        data=cloud.tobytes(),
        is_dense=True,
    )
