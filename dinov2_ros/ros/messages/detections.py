"""Objects as vision_msgs 4.1.1 messages, readable by any consumer without our code.

- every header is the input image's header (stamp and optical frame_id);
- `ObjectHypothesis.class_id` is the numeric class id as a string, named by `dinov2/label_info`;
- `id` is the track id (1, 2, ... by position in the frame when tracking is off);
- Detection3DArray holds only detections with a measured 3D pose: a pose is never made up, the 2D
  array carries every detection.
"""

from __future__ import annotations

from collections.abc import Sequence

from geometry_msgs.msg import Pose
from std_msgs.msg import Header
from vision_msgs.msg import (
    BoundingBox2D,
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


def set_object_pose(pose: Pose, detection: Detection) -> Pose:
    """Write the detection's centre (m) and orientation (x, y, z, w) into `pose`, and return it."""
    position, orientation = pose.position, pose.orientation
    position.x, position.y, position.z = (float(v) for v in detection.centre)
    orientation.x, orientation.y, orientation.z, orientation.w = (float(v) for v in detection.orientation)
    return pose


def object_pose(detection: Detection) -> Pose:
    return set_object_pose(Pose(), detection)


# The arrays below fill default-constructed messages in place: a message constructor builds the
# default of every field, including those passed as keywords, so nesting constructors builds each
# field twice (at 10 objects: 0.43 ms against 0.31 ms for both arrays).


def to_detection3d_array(result: FrameResult, header: Header, order: Sequence[int] | None = None) -> Detection3DArray:
    """Detections with a 3D pose, in the camera's optical frame; `order`: only these detections
    (indices into result.detections), in this order (dinov2/pick_candidates)."""
    array = Detection3DArray(header=header)
    detections = []
    for index in range(len(result.detections)) if order is None else order:
        detection = result.detections[index]
        if detection.centre is None:
            continue
        message = Detection3D()
        message.header, message.id = header, detection_id(detection, index)
        hypothesis = object_hypothesis(detection)
        hypothesis.pose.pose = set_object_pose(message.bbox.center, detection)
        message.results = [hypothesis]
        size = message.bbox.size
        size.x, size.y, size.z = (float(v) for v in detection.size)
        detections.append(message)
    array.detections = detections
    return array


def set_bounding_box_2d(bbox: BoundingBox2D, x1: float, y1: float, x2: float, y2: float) -> BoundingBox2D:
    """Write the centre and size of corner coordinates in pixels into `bbox`, and return it."""
    bbox.size_x, bbox.size_y = x2 - x1, y2 - y1
    bbox.center.position.x, bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
    return bbox


def bounding_box_2d(x1: float, y1: float, x2: float, y2: float) -> BoundingBox2D:
    """The BoundingBox2D (centre and size) of corner coordinates in pixels."""
    return set_bounding_box_2d(BoundingBox2D(), x1, y1, x2, y2)


def to_detection2d_array(result: FrameResult, header: Header) -> Detection2DArray:
    """Every detection, boxes in source-image pixels (centre and size)."""
    array = Detection2DArray(header=header)
    detections = []
    for index, detection in enumerate(result.detections):
        message = Detection2D()
        message.header, message.id = header, detection_id(detection, index)
        message.results = [object_hypothesis(detection)]
        set_bounding_box_2d(message.bbox, *(float(v) for v in detection.box))
        detections.append(message)
    array.detections = detections
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
