"""One camera's output topics and what each frame's result publishes on them.

With one camera they are `dinov2/...`; with several, each camera's live under its name
(`front/dinov2/objects`). Every output image has its CameraInfo beside it, as image_transport's
CameraPublisher names them (`<ns>/image` and `<ns>/camera_info`), so image_pipeline and RViz's Camera
and DepthCloud displays pair them: `dinov2/depth/image` with `dinov2/depth/camera_info`,
`dinov2/depth/completed/image` with `dinov2/depth/completed/camera_info`, `dinov2/debug/image` with
`dinov2/debug/camera_info`, `dinov2/instances/image` with `dinov2/instances/camera_info`. The
publishers are lifecycle publishers: they publish only while the node is active. Like image_pipeline, an output costs nothing while nobody subscribes to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rclpy.lifecycle import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from dinov2_ros.perception.frame import FrameResult
from dinov2_ros.perception.object_points import object_points
from dinov2_ros.perception.pick_order import PickOrder, pick_order
from dinov2_ros.ros.messages.detections import (
    detection_number,
    to_detection2d_array,
    to_detection3d_array,
    to_label_info,
)
from dinov2_ros.ros.messages.images import (
    camera_info_for_output,
    debug_image_message,
    to_depth_messages,
    to_instances_messages,
)
from dinov2_ros.ros.messages.markers import to_markers, to_pick_markers
from dinov2_ros.ros.messages.points import depth_points, to_object_point_cloud, to_point_cloud

OUTPUT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)


@dataclass(frozen=True)
class OutputOptions:
    """The output parameters that change at run time (output.*)."""

    points_stride: int = 4
    debug_max_depth_m: float = 5.0
    object_points_stride: int = 2


class CameraOutputs:
    """The publishers of one camera's outputs (created at configure, destroyed at cleanup)."""

    def __init__(self, node: Node, prefix: str, points: bool = False, completed_depth: bool = False) -> None:
        """`points`: advertise dinov2/points (output.points; `set_points` changes it at run time);
        `completed_depth`: advertise dinov2/depth/completed/* (the camera has a depth image, use_depth)."""
        self._node = node
        self._out = out = f"{prefix}dinov2/"
        publish = node.create_lifecycle_publisher
        self.objects = publish(Detection3DArray, out + "objects", OUTPUT_QOS)
        self.objects_2d = publish(Detection2DArray, out + "objects_2d", OUTPUT_QOS)
        # the free parts, in the order to pick them (perception/pick_order.py)
        self.pick_candidates = publish(Detection3DArray, out + "pick_candidates", OUTPUT_QOS)
        self.pick_markers = publish(MarkerArray, out + "pick_candidates/markers", OUTPUT_QOS)
        self.label_info = publish(LabelInfo, out + "label_info", LATCHED_QOS)
        self.depth = publish(Image, out + "depth/image", OUTPUT_QOS)
        self.depth_info = publish(CameraInfo, out + "depth/camera_info", OUTPUT_QOS)
        # the camera's depth image with its holes filled (depth_completion.enabled, with a depth image)
        self.completed_depth = self.completed_depth_info = None
        if completed_depth:
            self.completed_depth = publish(Image, out + "depth/completed/image", OUTPUT_QOS)
            self.completed_depth_info = publish(CameraInfo, out + "depth/completed/camera_info", OUTPUT_QOS)
        self.points = publish(PointCloud2, out + "points", OUTPUT_QOS) if points else None
        self.object_points = publish(PointCloud2, out + "objects/points", OUTPUT_QOS)
        self.markers = publish(MarkerArray, out + "markers", OUTPUT_QOS)
        # the picture is pixel-aligned with the camera image, so the input's CameraInfo describes it
        self.debug_image = publish(Image, out + "debug/image", OUTPUT_QOS)
        self.debug_info = publish(CameraInfo, out + "debug/camera_info", OUTPUT_QOS)
        # instance labels: 0 background, else the detection's id in objects_2d and objects
        self.instances = publish(Image, out + "instances/image", OUTPUT_QOS)
        self.instances_info = publish(CameraInfo, out + "instances/camera_info", OUTPUT_QOS)

    def publish_labels(self, labels: dict[int, str], threshold: float, header: Header) -> None:
        """Latch the class names (LabelInfo) that name the detections' class ids."""
        self.label_info.publish(to_label_info(labels, threshold, header))

    def publish_objects(self, result: FrameResult, header: Header) -> PickOrder | None:
        """The objects (what planners wait for): 3D unless the frame has none at all (FrameResult.without_3d:
        then no array, rather than an empty one that says the view is empty), and 2D; the pick
        candidates while subscribed, whose decisions (candidates, held back) it returns."""
        if result.without_3d is None:
            self.objects.publish(to_detection3d_array(result, header))
        self.objects_2d.publish(to_detection2d_array(result, header))
        if result.without_3d is not None or not self._subscribed(self.pick_candidates, self.pick_markers):
            return None
        ids = [detection_number(detection, index) for index, detection in enumerate(result.detections)]
        decisions = pick_order(result, ids)
        order = [decision.index for decision in decisions[0]]
        self.pick_candidates.publish(to_detection3d_array(result, header, order))
        if self._subscribed(self.pick_markers):
            self.pick_markers.publish(to_pick_markers(result, header, order))
        return decisions

    def publish_images(
        self,
        result: FrameResult,
        header: Header,
        camera_info: CameraInfo,
        labels: dict[int, str],
        options: OutputOptions,
    ) -> None:
        """Depth, instances, points, markers and the debug picture, each only while subscribed."""
        subscribed = self._subscribed
        if result.depth is not None and subscribed(self.depth, self.depth_info):
            # a 640x480 depth message is a 1.2 MB copy
            depth, info = to_depth_messages(result.depth, header, camera_info)
            self.depth.publish(depth)
            self.depth_info.publish(info)
        if (
            result.completed_depth is not None
            and self.completed_depth is not None
            and subscribed(self.completed_depth, self.completed_depth_info)
        ):
            depth, info = to_depth_messages(result.completed_depth, header, camera_info)
            self.completed_depth.publish(depth)
            self.completed_depth_info.publish(info)
        if subscribed(self.debug_info):
            self.debug_info.publish(camera_info_for_output(camera_info, header))
        if subscribed(self.instances, self.instances_info):
            instances, info = to_instances_messages(result, header, camera_info)
            self.instances.publish(instances)
            self.instances_info.publish(info)
        points = self.points  # None unless output.points
        if (
            points is not None
            and result.depth is not None
            and result.frame.camera_model is not None
            and subscribed(points)
        ):
            points.publish(to_point_cloud(depth_points(result, options.points_stride), header))
        if result.without_3d is None and subscribed(self.object_points):
            ids = [detection_number(detection, index) for index, detection in enumerate(result.detections)]
            objects = object_points(result, ids, options.object_points_stride)
            self.object_points.publish(to_object_point_cloud(objects, header))
        if subscribed(self.markers):
            self.markers.publish(to_markers(result, header, labels))
        if subscribed(self.debug_image):
            self.debug_image.publish(debug_image_message(result, labels, options.debug_max_depth_m, header))

    def set_points(self, enabled: bool, active: bool) -> None:
        """Advertise dinov2/points (enabled, publishing at once when the node is `active`) or withdraw it."""
        if enabled and self.points is None:
            self.points = self._node.create_lifecycle_publisher(PointCloud2, self._out + "points", OUTPUT_QOS)
            if active:
                self.points.on_activate(None)
        elif not enabled and self.points is not None:
            self._node.destroy_lifecycle_publisher(self.points)
            self.points = None

    @staticmethod
    def _subscribed(*publishers) -> bool:
        return any(publisher.get_subscription_count() for publisher in publishers)

    def destroy(self) -> None:
        self.set_points(False, active=False)
        for publisher in (
            self.objects, self.objects_2d, self.pick_candidates, self.pick_markers, self.label_info, self.depth,
            self.depth_info, self.completed_depth, self.completed_depth_info, self.markers, self.debug_image,
            self.debug_info, self.instances, self.instances_info, self.object_points,
        ):  # fmt: skip
            if publisher is not None:
                self._node.destroy_lifecycle_publisher(publisher)
