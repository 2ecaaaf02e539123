"""One camera's topics: subscriptions that only fill its newest-frame slot, and its output publishers.

Topic names are relative, so namespaces and remapping apply. With one camera they are `image`,
`camera_info`, `depth` in and `dinov2/...` out; with several, each camera's live under its name
(`front/image`, `front/dinov2/objects`, ...). Every output image has its CameraInfo beside it, as
image_transport's CameraPublisher names them (`<ns>/image` and `<ns>/camera_info`), so image_pipeline
and RViz's Camera and DepthCloud displays pair them: `dinov2/depth/image` with
`dinov2/depth/camera_info`, `dinov2/debug/image` with `dinov2/debug/camera_info`,
`dinov2/instances/image` with `dinov2/instances/camera_info`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_policy_name_from_kind,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from dinov2_ros.ros.diagnostics import CameraStatistics
from dinov2_ros.ros.frame_slots import CameraSlot
from dinov2_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb
from dinov2_ros.ros.node_parameters import CameraSettings

try:  # Jazzy and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

OUTPUT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)


def camera_qos(reliable: bool) -> QoSProfile:
    """Keep only the newest message: sensor-data QoS (best effort), or reliable when asked for."""
    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=1, reliability=reliability, history=HistoryPolicy.KEEP_LAST)


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class CameraStreams:
    """Publishers, slot and statistics of one camera (created at configure), and its subscriptions
    (`subscribe` at activate, `unsubscribe` at deactivate). The publishers are lifecycle publishers:
    they publish only while the node is active."""

    def __init__(
        self,
        node: Node,
        settings: CameraSettings,
        prefix: str,
        reliable: bool,
        wake: Callable[[], None],
        warn: Callable[..., None],
    ) -> None:
        """`warn(problem, text, level="warning")` logs about this camera, throttled per problem (the node's)."""
        self.name = settings.name
        self.rectified = settings.rectified  # project with P and no distortion (image_rect streams)
        self.slot = CameraSlot(settings.name, settings.use_depth, 0, 0)  # the node sets the pairing parameters
        self.statistics = CameraStatistics(settings.name)
        self._node = node
        self._wake = wake
        self._warn = warn
        self._settings = settings
        self._prefix = prefix
        self._qos = camera_qos(reliable)
        self._subscriptions: list = []
        self.image_topic = ""  # the image subscription's resolved name (remapped), while subscribed
        self.depth_topic = ""  # the depth subscription's, where depth is used
        # the image message -> (H, W, 3) uint8 RGB; ValueError if malformed
        self.to_rgb = compressed_to_rgb if settings.transport == "compressed" else image_to_rgb
        out = f"{prefix}dinov2/"
        publish = node.create_lifecycle_publisher
        self.objects = publish(Detection3DArray, out + "objects", OUTPUT_QOS)
        self.objects_2d = publish(Detection2DArray, out + "objects_2d", OUTPUT_QOS)
        self.label_info = publish(LabelInfo, out + "label_info", LATCHED_QOS)
        self.depth = publish(Image, out + "depth/image", OUTPUT_QOS)
        self.depth_info = publish(CameraInfo, out + "depth/camera_info", OUTPUT_QOS)
        self.points = publish(PointCloud2, out + "points", OUTPUT_QOS)
        self.markers = publish(MarkerArray, out + "markers", OUTPUT_QOS)
        # the picture is pixel-aligned with the camera image, so the input's CameraInfo describes it
        self.debug_image = publish(Image, out + "debug/image", OUTPUT_QOS)
        self.debug_info = publish(CameraInfo, out + "debug/camera_info", OUTPUT_QOS)
        # instance labels: 0 background, else the detection's id in objects_2d and objects
        self.instances = publish(Image, out + "instances/image", OUTPUT_QOS)
        self.instances_info = publish(CameraInfo, out + "instances/camera_info", OUTPUT_QOS)
        self._publishers = [self.objects, self.objects_2d, self.label_info, self.depth, self.depth_info]
        self._publishers += [self.points, self.markers, self.debug_image, self.debug_info]
        self._publishers += [self.instances, self.instances_info]

    def subscribe(self) -> None:
        """Subscribe to the camera's topics (the node's activation)."""
        prefix, qos = self._prefix, self._qos
        if self._settings.transport == "compressed":
            self._subscribe(CompressedImage, f"{prefix}image/compressed", self._on_image, qos)
        else:
            self._subscribe(Image, f"{prefix}image", self._on_image, qos)
        self.image_topic = self._subscriptions[0].topic_name
        self._subscribe(CameraInfo, f"{prefix}camera_info", self._on_camera_info, qos)
        if self._settings.use_depth:
            self._subscribe(Image, f"{prefix}depth", self._on_depth, qos)
            self.depth_topic = self._subscriptions[-1].topic_name
        self.statistics.subscribed(time.monotonic())

    def unsubscribe(self) -> None:
        """Stop receiving (the node's deactivation) and forget the frames not processed yet."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions.clear()
        self.slot.clear()

    def destroy(self) -> None:
        """Destroy the subscriptions and publishers (the node's cleanup)."""
        self.unsubscribe()
        for publisher in self._publishers:
            self._node.destroy_lifecycle_publisher(publisher)

    def _subscribe(self, msg_type, topic: str, callback, qos: QoSProfile) -> None:
        subscriptions = []

        def incompatible(event) -> None:
            policy = qos_policy_name_from_kind(event.last_policy_kind)
            fix = (
                "the parameter qos.reliable:=false (best effort accepts every publisher)"
                if "RELIABILITY" in policy
                else f"the publisher's {policy} policy to the default"
            )
            name = subscriptions[0].topic_name
            self._warn(  # throttled per topic: camera_info's problem is not hidden by the image's
                f"incompatible QoS on {name}",
                f"the publisher of {name} offers QoS incompatible with this node's subscription (policy "
                f"{policy}); no messages will arrive. Fix: set {fix}",
                level="error",
            )

        events = SubscriptionEventCallbacks(incompatible_qos=incompatible)
        subscriptions.append(self._node.create_subscription(msg_type, topic, callback, qos, event_callbacks=events))
        self._subscriptions.append(subscriptions[0])

    def _on_image(self, msg) -> None:
        stamp = stamp_ns(msg)
        if stamp == 0:
            self._warn(
                "zero stamp",
                "image header stamp is 0: expected the capture time; the frames are processed but left out of "
                "the latency and image-age statistics. Set header.stamp in the camera driver",
            )
        if not msg.header.frame_id:
            self._warn(
                "empty frame_id",
                "image header frame_id is empty: expected the camera's optical frame (REP 103, e.g. "
                "camera_color_optical_frame); the outputs carry it, so TF cannot place them. Set the "
                "driver's frame_id",
            )
        age_s = (self._node.get_clock().now().nanoseconds - stamp) / 1e9 if stamp else None
        self.statistics.image_received(time.monotonic(), age_s)
        self.slot.put_image(stamp, msg, time.monotonic_ns())
        self._wake()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.slot.put_camera_info(stamp_ns(msg), msg)
        self._wake()

    def _on_depth(self, msg: Image) -> None:
        self.slot.put_depth(stamp_ns(msg), msg)
        self._wake()

    def status(self, node_name: str) -> DiagnosticStatus:
        publishers = self._node.count_publishers(self.image_topic) if self.image_topic else 0
        return self.statistics.to_status(
            time.monotonic(), node_name, dropped=self.slot.dropped, image_topic=(self.image_topic, publishers)
        )
