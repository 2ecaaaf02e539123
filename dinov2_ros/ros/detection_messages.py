"""FrameResult -> standard ROS messages (vision_msgs 4.1.1, sensor_msgs, visualization_msgs).

Conventions, so that any consumer can read the output without our code:
- every header is the input image's header (stamp and optical frame_id);
- `ObjectHypothesis.class_id` is the numeric class id as a string, named by /dinov2/label_info;
- Detection3DArray holds only detections with a measured 3D pose: a pose is never made up, the
  2D array carries every detection;
- depth is 32FC1 metres with NaN where invalid, at the camera resolution.
"""

from __future__ import annotations

import cv2
import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import (
    BoundingBox2D,
    BoundingBox3D,
    Detection2D,
    Detection2DArray,
    Detection3D,
    Detection3DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)
from visualization_msgs.msg import Marker, MarkerArray

from dinov2_ros.perception.frame_pipeline import Detection, FrameResult
from dinov2_ros.ros.image_conversion import array_to_image

# markers older than this disappear in RViz if the node stops publishing
MARKER_LIFETIME_S = 1.0
TEXT_HEIGHT_M = 0.05


def _hypothesis(detection: Detection) -> ObjectHypothesisWithPose:
    result = ObjectHypothesisWithPose()
    result.hypothesis.class_id = str(detection.class_id)
    result.hypothesis.score = float(detection.score)
    return result


def _pose(detection: Detection) -> Pose:
    x, y, z = (float(v) for v in detection.centre)
    qx, qy, qz, qw = (float(v) for v in detection.orientation)
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def to_detection3d_array(result: FrameResult, header: Header) -> Detection3DArray:
    """Detections with a 3D pose, in the camera's optical frame."""
    array = Detection3DArray(header=header)
    for index, detection in enumerate(result.detections):
        if detection.centre is None:
            continue
        hypothesis = _hypothesis(detection)
        hypothesis.pose.pose = _pose(detection)
        sx, sy, sz = (float(v) for v in detection.size)
        bbox = BoundingBox3D(center=hypothesis.pose.pose, size=Vector3(x=sx, y=sy, z=sz))
        array.detections.append(
            Detection3D(header=header, results=[hypothesis], bbox=bbox, id=detection_id(detection, index))
        )
    return array


def bounding_box_2d(x1: float, y1: float, x2: float, y2: float) -> BoundingBox2D:
    """The BoundingBox2D (centre and size) of corner coordinates in pixels."""
    bbox = BoundingBox2D(size_x=x2 - x1, size_y=y2 - y1)
    bbox.center.position.x = (x1 + x2) / 2
    bbox.center.position.y = (y1 + y2) / 2
    return bbox


def to_detection2d_array(result: FrameResult, header: Header) -> Detection2DArray:
    """Every detection, boxes in source-image pixels (centre and size)."""
    array = Detection2DArray(header=header)
    for index, detection in enumerate(result.detections):
        bbox = bounding_box_2d(*(float(v) for v in detection.box))
        array.detections.append(
            Detection2D(header=header, results=[_hypothesis(detection)], bbox=bbox, id=detection_id(detection, index))
        )
    return array


def to_label_info(labels: dict[int, str], threshold: float, header: Header) -> LabelInfo:
    """The class map that names the numeric class ids of the detection messages."""
    class_map = [VisionClass(class_id=class_id, class_name=name) for class_id, name in sorted(labels.items())]
    return LabelInfo(header=header, class_map=class_map, threshold=float(threshold))


def camera_info_for_output(camera_info: CameraInfo, header: Header) -> CameraInfo:
    """The input's CameraInfo under an output image's header: the outputs are pixel-aligned with the
    camera image, so the same calibration, binning and ROI describe them."""
    return CameraInfo(
        header=header,
        height=camera_info.height,
        width=camera_info.width,
        distortion_model=camera_info.distortion_model,
        d=camera_info.d,
        k=camera_info.k,
        r=camera_info.r,
        p=camera_info.p,
        binning_x=camera_info.binning_x,
        binning_y=camera_info.binning_y,
        roi=camera_info.roi,
    )


def detection_number(detection: Detection, index: int) -> int:
    """The detection's id as a number: its track id, or (tracking off) 1, 2, ... by `index` in the
    frame; never 0, which the instances image keeps for background."""
    return detection.track_id or index + 1


def detection_id(detection: Detection, index: int) -> str:
    """`id` of the detection in objects_2d and objects (and its label in the instances image)."""
    return str(detection_number(detection, index))


def instance_labels(result: FrameResult) -> np.ndarray:
    """(H, W) int32 labels at camera resolution: 0 background, else the `detection_id` of the detection
    the pixel belongs to (int32, so a label equals a track id however long the run: 16 bits would wrap
    after 65,535 parts); where masks overlap, the higher score wins. A detection without a mask
    covers its box. Masks come from the patch grid (14 model-input pixels) upsampled bilinearly, so
    their edges are as coarse as a patch at camera scale."""
    height, width = result.frame.size
    labels = np.zeros((height, width), np.int32)
    order = sorted(range(len(result.detections)), key=lambda i: result.detections[i].score)
    for index in order:  # lowest score first: higher scores paint over it
        detection = result.detections[index]
        label = detection_number(detection, index)
        if detection.mask is not None:
            labels[detection.mask] = label
        else:
            x1, y1, x2, y2 = (round(float(v)) for v in detection.box)
            labels[max(0, y1) : y2, max(0, x1) : x2] = label
    return labels


def to_instances_messages(result: FrameResult, header: Header, camera_info: CameraInfo) -> tuple[Image, CameraInfo]:
    """Instance label image (32SC1, `instance_labels`) and its CameraInfo, published as siblings
    `dinov2/instances/image` and `dinov2/instances/camera_info`."""
    return array_to_image(instance_labels(result), "32SC1", header), camera_info_for_output(camera_info, header)


def to_depth_messages(result: FrameResult, header: Header, camera_info: CameraInfo) -> tuple[Image, CameraInfo]:
    """Depth image (32FC1 metres, NaN invalid) and its CameraInfo: the input's, under the image header;
    published as siblings `dinov2/depth/image` and `dinov2/depth/camera_info` (image_transport's rule)."""
    return array_to_image(result.depth, "32FC1", header), camera_info_for_output(camera_info, header)


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


def class_colour(class_id: int) -> tuple[float, float, float]:
    """A stable, well-separated RGB colour in [0, 1] per class id (golden-ratio hue steps)."""
    hue = np.uint8(int((class_id * 0.618033988749895 % 1.0) * 180))
    rgb = cv2.cvtColor(np.array([[[hue, 200, 255]]], dtype=np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return tuple(float(c) / 255.0 for c in rgb)


def to_markers(result: FrameResult, header: Header, labels: dict[int, str]) -> MarkerArray:
    """A DELETEALL, then per detection with a 3D pose its (oriented) box and a text label naming
    class, id and score; marker ids are the detection ids, so RViz keeps one marker per track."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    lifetime = Duration(sec=int(MARKER_LIFETIME_S), nanosec=int(MARKER_LIFETIME_S % 1 * 1e9))
    for index, detection in enumerate(result.detections):
        if detection.centre is None:
            continue
        r, g, b = class_colour(detection.class_id)
        pose = _pose(detection)
        sx, sy, sz = (float(v) for v in detection.size)
        number = detection_number(detection, index)
        box = Marker(header=header, ns="dinov2/boxes", id=number, type=Marker.CUBE, action=Marker.ADD)
        box.pose, box.scale, box.lifetime = pose, Vector3(x=sx, y=sy, z=sz), lifetime
        box.color = ColorRGBA(r=r, g=g, b=b, a=0.4)
        text = Marker(header=header, ns="dinov2/labels", id=number, type=Marker.TEXT_VIEW_FACING)
        text.action, text.lifetime = Marker.ADD, lifetime
        text.pose.position = Point(x=pose.position.x, y=pose.position.y - sy / 2 - TEXT_HEIGHT_M, z=pose.position.z)
        text.pose.orientation.w = 1.0
        text.scale.z = TEXT_HEIGHT_M
        text.color = ColorRGBA(r=r, g=g, b=b, a=1.0)
        text.text = f"{labels.get(detection.class_id, detection.class_id)} #{number} {detection.score:.2f}"
        markers += [box, text]
    return MarkerArray(markers=markers)


def draw_debug_image(result: FrameResult, labels: dict[int, str], max_depth_m: float) -> np.ndarray:
    """RGB picture of the frame with depth blended in (when there is depth), masks tinted and boxes labelled.

    Masks are tinted inside their boxes only (FramePipeline's masks are empty outside them), which keeps
    the cost per detection proportional to its box, not to the frame: this runs on the worker thread.
    """
    image = np.ascontiguousarray(result.frame.image_rgb).copy()
    if result.depth is not None:
        depth = np.nan_to_num(result.depth, nan=0.0)
        scaled = np.clip(depth * (255.0 / max_depth_m), 0, 255).astype(np.uint8)
        depth_rgb = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
        cv2.addWeighted(image, 0.65, depth_rgb, 0.35, 0.0, dst=image)
    height, width = image.shape[:2]
    for index, detection in enumerate(result.detections):
        colour = tuple(int(c * 255) for c in class_colour(detection.class_id))
        x1, y1, x2, y2 = (round(float(v)) for v in detection.box)
        if detection.mask is not None:
            top, left, bottom, right = max(y1, 0), max(x1, 0), min(y2, height), min(x2, width)
            roi, inside = image[top:bottom, left:right], detection.mask[top:bottom, left:right]
            roi[inside] = ((roi[inside].astype(np.uint16) + colour) // 2).astype(np.uint8)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        name = labels.get(detection.class_id, detection.class_id)
        caption = f"{name} #{detection_number(detection, index)} {detection.score:.2f}"
        if detection.centre is not None:
            caption += f" {float(detection.centre[2]):.2f} m"
        cv2.putText(image, caption, (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return image


def debug_image_message(result: FrameResult, labels: dict[int, str], max_depth_m: float, header: Header) -> Image:
    return array_to_image(draw_debug_image(result, labels, max_depth_m), "rgb8", header)
