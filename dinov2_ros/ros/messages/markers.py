"""RViz markers of the 3D objects: an oriented box and a text label per object, one marker id per track."""

from __future__ import annotations

import cv2
import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Vector3
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from dinov2_ros.perception.frame import FrameResult
from dinov2_ros.ros.messages.detections import detection_number, object_pose

# markers older than this disappear in RViz if the node stops publishing
MARKER_LIFETIME_S = 1.0
TEXT_HEIGHT_M = 0.05


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
        pose = object_pose(detection)
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


def to_pick_markers(result: FrameResult, header: Header, order: list[int]) -> MarkerArray:
    """A DELETEALL, then the pick candidates' ranks ("pick 1", "pick 2", ...: `order` indexes
    result.detections in pick order) as green text just in front of each one's centre, toward the camera."""
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    lifetime = Duration(sec=int(MARKER_LIFETIME_S), nanosec=int(MARKER_LIFETIME_S % 1 * 1e9))
    for rank, index in enumerate(order, 1):
        detection = result.detections[index]
        x, y, z = (float(v) for v in detection.centre)
        text = Marker(header=header, ns="dinov2/pick_order", id=rank, type=Marker.TEXT_VIEW_FACING)
        text.action, text.lifetime = Marker.ADD, lifetime
        text.pose.position = Point(x=x, y=y, z=z - float(max(detection.size)))  # in front: toward the camera
        text.pose.orientation.w = 1.0
        text.scale.z = TEXT_HEIGHT_M
        text.color = ColorRGBA(r=0.1, g=1.0, b=0.2, a=1.0)
        text.text = f"pick {rank} (#{detection_number(detection, index)})"
        markers.append(text)
    return MarkerArray(markers=markers)
