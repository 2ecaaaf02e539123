"""Objects as vision_msgs 4.1.1 messages, readable by any consumer without our code.

- every header is the input image's header (stamp and optical frame_id);
- `ObjectHypothesis.class_id` is the numeric class id as a string, named by `dinov2/label_info`;
- `id` is the track id (1, 2, ... by position in the frame when tracking is off);
- Detection3DArray holds only detections with a measured 3D pose: a pose is never made up, the 2D
  array carries every detection.
"""

from __future__ import annotations

from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from std_msgs.msg import Header
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

from dinov2_ros.perception.frame import Detection, FrameResult


def object_hypothesis(detection: Detection) -> ObjectHypothesisWithPose:
    result = ObjectHypothesisWithPose()
    result.hypothesis.class_id = str(detection.class_id)
    result.hypothesis.score = float(detection.score)
    return result


def object_pose(detection: Detection) -> Pose:
    x, y, z = (float(v) for v in detection.centre)
    qx, qy, qz, qw = (float(v) for v in detection.orientation)
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def to_detection3d_array(result: FrameResult, header: Header) -> Detection3DArray:
    """Detections with a 3D pose, in the camera's optical frame."""
    array = Detection3DArray(header=header)
    for index, detection in enumerate(result.detections):
        if detection.centre is None:
            continue
        hypothesis = object_hypothesis(detection)
        hypothesis.pose.pose = object_pose(detection)
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
            Detection2D(
                header=header, results=[object_hypothesis(detection)], bbox=bbox, id=detection_id(detection, index)
            )
        )
    return array


def to_label_info(labels: dict[int, str], threshold: float, header: Header) -> LabelInfo:
    """The class map that names the numeric class ids of the detection messages."""
    class_map = [VisionClass(class_id=class_id, class_name=name) for class_id, name in sorted(labels.items())]
    return LabelInfo(header=header, class_map=class_map, threshold=float(threshold))


def detection_number(detection: Detection, index: int) -> int:
    """The detection's id as a number: its track id, or (tracking off) 1, 2, ... by `index` in the
    frame; never 0, which the instances image keeps for background."""
    return detection.track_id or index + 1


def detection_id(detection: Detection, index: int) -> str:
    """`id` of the detection in objects_2d and objects (and its label in the instances image)."""
    return str(detection_number(detection, index))
