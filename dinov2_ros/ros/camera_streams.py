"""One camera's input topics: subscriptions that only fill its newest-frame slot, and its statistics.

Topic names are relative, so namespaces and remapping apply. With one camera the node subscribes to
`image` (or `image/compressed`), `camera_info` and, with `use_depth`, `depth/image` (image_pipeline's
sibling rule, as `depth_registered/image_rect`); with several, each camera's live under its name
(`front/image`, ...). Subscriptions keep only the newest message with sensor-data QoS (best effort)
by default; rclpy's standard QoS overrides change that per topic at start-up, e.g.
`qos_overrides./camera/image.subscription.reliability:=reliable` (ros2/demos quality_of_service_demo).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from dinov2_ros.perception.frame import FrameResult
from dinov2_ros.perception.pick_order import PickOrder
from dinov2_ros.perception.rejection import Rejection
from dinov2_ros.ros.diagnostics import CameraStatistics
from dinov2_ros.ros.frame_slots import CameraSlot, PairedFrame
from dinov2_ros.ros.image_conversion import compressed_to_rgb, image_to_rgb
from dinov2_ros.ros.messages.detections import detection_number
from dinov2_ros.ros.node_parameters import CameraSettings

try:  # Jazzy and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks


def camera_qos() -> QoSProfile:
    """Keep only the newest message, best effort, so every publisher matches (sensor data QoS with depth
    1). A new profile per subscription: rclpy's QoS overrides change the profile they are given."""
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)


# a stamp this far ahead of the node's clock is not the capture time (unsynchronised clocks)
FUTURE_STAMP_TOLERANCE_S = 1.0


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def image_size_of(info: CameraInfo) -> tuple[int, int]:
    """(width, height) of the images a CameraInfo describes: its ROI (else the sensor) over its binning (REP 104)."""
    width = info.roi.width or info.width
    height = info.roi.height or info.height
    return width // max(info.binning_x, 1), height // max(info.binning_y, 1)


class CameraStreams:
    """Slot, statistics and warnings of one camera (created at configure), and its subscriptions
    (`subscribe` at activate, `unsubscribe` at deactivate)."""

    def __init__(
        self, node: Node, settings: CameraSettings, prefix: str, wake: Callable[[], None], warn: Callable[..., None]
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
        self._subscriptions: list = []
        self._newest_stamp_ns = 0  # the newest image stamp since subscribing: a stamp behind it went backwards
        self._warned_uncalibrated = False
        self.image_topic = ""  # the image subscription's resolved name (remapped), while subscribed
        self.camera_info_topic = ""  # the camera_info subscription's, while subscribed
        self.depth_topic = ""  # the depth subscription's, where depth is used
        # the image message -> (H, W, 3) uint8 RGB; a Rejection if malformed
        self.to_rgb = compressed_to_rgb if settings.transport == "compressed" else image_to_rgb

    def subscribe(self) -> None:
        """Subscribe to the camera's topics (the node's activation)."""
        prefix = self._prefix
        if self._settings.transport == "compressed":
            self._subscribe(CompressedImage, self._compressed_topic(f"{prefix}image"), self._on_image)
        else:
            self._subscribe(Image, f"{prefix}image", self._on_image)
        self.image_topic = self._subscriptions[0].topic_name
        self._subscribe(CameraInfo, f"{prefix}camera_info", self._on_camera_info)
        self.camera_info_topic = self._subscriptions[-1].topic_name
        if self._settings.use_depth:
            self._subscribe(Image, f"{prefix}depth/image", self._on_depth)
            self.depth_topic = self._subscriptions[-1].topic_name
        self._newest_stamp_ns = 0
        self.statistics.subscribed(time.monotonic())

    def _compressed_topic(self, image: str) -> str:
        """image_transport's name of the compressed stream: the image topic as remapped, plus
        `/compressed` (so `-r image:=/camera/color/image_raw` also moves the compressed stream), unless
        `image/compressed` is remapped itself."""
        node, compressed = self._node, f"{image}/compressed"
        if node.resolve_topic_name(compressed) != node.resolve_topic_name(compressed, only_expand=True):
            return compressed
        return node.resolve_topic_name(image) + "/compressed"

    def unsubscribe(self) -> None:
        """Stop receiving (the node's deactivation) and forget the frames not processed yet."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions.clear()
        self.slot.clear()

    def _subscribe(self, msg_type, topic: str, callback) -> None:
        subscriptions = []

        def incompatible(event) -> None:
            policy = qos_policy_name_from_kind(event.last_policy_kind)
            name = subscriptions[0].topic_name
            self.statistics.qos_incompatible(time.monotonic(), name, policy)
            fix = (
                f"the parameter qos_overrides.{name}.subscription.reliability:=best_effort (best effort accepts "
                "every publisher)"
                if "RELIABILITY" in policy
                else f"the publisher's {policy} policy to the default"
            )
            self._warn(  # throttled per topic: camera_info's problem is not hidden by the image's
                f"incompatible QoS on {name}",
                f"the publisher of {name} offers QoS incompatible with this node's subscription (policy "
                f"{policy}); no messages will arrive. Fix: set {fix}",
                level="error",
            )

        events = SubscriptionEventCallbacks(incompatible_qos=incompatible)
        subscription = self._node.create_subscription(
            msg_type,
            topic,
            callback,
            camera_qos(),
            event_callbacks=events,
            qos_overriding_options=QoSOverridingOptions.with_default_policies(),
        )
        subscriptions.append(subscription)
        self._subscriptions.append(subscription)

    def _on_image(self, msg) -> None:
        now_s, stamp = time.monotonic(), stamp_ns(msg)
        age_s = self._stamp_age_s(stamp)
        if not msg.header.frame_id:
            self._warn(
                "empty frame_id",
                "image header frame_id is empty: expected the camera's optical frame (REP 103, e.g. "
                "camera_color_optical_frame); the outputs carry it, so TF cannot place them. Set the "
                "driver's frame_id",
            )
        width, height = (getattr(msg, "width", 0), getattr(msg, "height", 0))  # a CompressedImage has neither
        self.statistics.image_received(now_s, age_s, (width, height, len(msg.data)) if width else None)
        self.slot.put_image(stamp, msg, time.monotonic_ns(), stamp_usable=age_s is not None)
        self._wake()

    def _stamp_age_s(self, stamp: int) -> float | None:
        """The image's age at receipt (s) from its stamp, or None (with a throttled warning) for a stamp
        that says nothing about it: zero, in the future, or behind the newest stamp (a clock reset, a
        looped bag). Such frames are processed, but left out of the latency and age statistics."""
        now = self._node.get_clock().now().nanoseconds
        problem = ""
        if stamp == 0:
            problem, text = "zero stamp", "image header stamp is 0: expected the capture time"
        elif stamp > now + FUTURE_STAMP_TOLERANCE_S * 1e9:
            problem = "stamp in the future"
            text = f"image stamp {stamp / 1e9:.3f} s is {(stamp - now) / 1e9:.3f} s ahead of this node's clock"
        elif stamp < self._newest_stamp_ns:
            problem = "stamp went backwards"
            text = (
                f"image stamp {stamp / 1e9:.3f} s is {(self._newest_stamp_ns - stamp) / 1e9:.3f} s behind an earlier "
                "image's (a clock reset, a looped bag)"
            )
        if not problem:  # a stamp in the future is not the newest: the frames after it would all seem late
            self._newest_stamp_ns = stamp
            return (now - stamp) / 1e9
        self.statistics.stamp_unusable(time.monotonic(), problem)
        self._warn(
            problem,
            f"{text}; the frames are processed but left out of the latency and image-age statistics. Stamp images "
            "with the capture time on a clock synchronised with this machine's (chrony, PTP), or, replaying a bag, "
            "publish its /clock (`ros2 bag play --clock`) and set use_sim_time",
        )
        return None

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.statistics.camera_info_received(time.monotonic(), *image_size_of(msg))
        self.slot.put_camera_info(stamp_ns(msg), msg)
        self._wake()

    def _on_depth(self, msg: Image) -> None:
        self.slot.put_depth(stamp_ns(msg), msg)
        self._wake()

    def report(self, rejection: Rejection) -> None:
        """Count a skipped frame and warn, throttled per problem; a frame that only waits for its graph
        is counted apart and logged as info."""
        if rejection.waiting:
            self.statistics.frame_waited_for_graph()
            self._warn(rejection.problem, f"frame skipped: {rejection}", level="info")
            return
        rejection = self._with_publisher_count(rejection)
        self.statistics.frame_rejected(time.monotonic(), rejection.category, rejection.detail)
        self._warn(f"{rejection.category}: {rejection.problem}", f"frame skipped ({rejection.category}): {rejection}")

    def _with_publisher_count(self, rejection: Rejection) -> Rejection:
        """A frame given up for want of its camera_info or depth, none of which ever arrived, says whether
        that topic has a publisher at all: the usual cause is a driver not started or a missing remap."""
        topic = {"no camera_info": self.camera_info_topic, "no depth image": self.depth_topic}.get(rejection.problem)
        if rejection.category != "pairing" or not topic or "none received" not in rejection.detail:
            return rejection
        if self._node.count_publishers(topic):
            return rejection
        remap = "camera_info" if rejection.problem == "no camera_info" else "depth/image (depth:= in the launch file)"
        return Rejection(
            rejection.category,
            rejection.problem,
            f"{rejection.detail}. {topic} has no publisher: start the driver that publishes it, or remap {remap} "
            "to its topic",
        )

    def result_published(self, paired: PairedFrame, result: FrameResult, decisions: PickOrder | None = None) -> None:
        """Account for a frame's published objects: latency, the node's own time, its 3D objects (or
        why it has none: warned once for an uncalibrated camera, throttled otherwise) and, where
        computed, its pick order (why each held-back part is held back: debug level)."""
        without_3d = result.without_3d
        self.statistics.uncalibrated = without_3d is not None and without_3d.problem == "uncalibrated"
        if self.statistics.uncalibrated and not self._warned_uncalibrated:
            self._warned_uncalibrated = True  # once: the camera stays uncalibrated, /diagnostics says so
            self._warn("uncalibrated", f"{without_3d.detail}; publishing dinov2/objects_2d and depth")
        elif without_3d is not None and not self.statistics.uncalibrated:
            self._warn(without_3d.problem, f"no 3D objects: {without_3d.detail}")
        self.statistics.frame_without_3d(*((without_3d.problem, without_3d.detail) if without_3d else ("", "")))
        # a stamp that is zero, in the future or gone backwards would read as a latency of years or of -1 day
        now_ns = self._node.get_clock().now().nanoseconds
        latency_s = (now_ns - paired.stamp_ns) / 1e9 if paired.stamp_usable else None
        in_node_s = (time.monotonic_ns() - paired.received_ns) / 1e9 - result.inference_s
        self.statistics.result_published(time.monotonic(), latency_s, result.inference_s, in_node_s)
        fit = result.depth_fit
        if fit is None and self._settings.use_depth:  # say why dinov2/depth/completed/image is silent
            fit = (
                "off: the graph has no depth head (model.depth_weights)"
                if result.depth is None
                else "off: depth_completion.enabled is false"
            )
        self.statistics.objects_published(result.detections, fit)
        if decisions is not None:
            candidates, held = decisions
            self.statistics.pick_order_decided(len(candidates), [decision.reason for decision in held])
            for decision in held:
                self._node.get_logger().debug(
                    f"camera {self.statistics.camera}: object {detection_number(result.detections[decision.index], decision.index)} "
                    f"held back from the pick candidates: {decision.reason}"
                )
        for index, detection in enumerate(result.detections):
            if detection.lifted_from_filled_depth:
                self._node.get_logger().debug(
                    f"camera {self.statistics.camera}: object {detection_number(detection, index)} lifted from "
                    f"completed depth ({detection.filled_depth_fraction:.0%} of its pixels have no sensor return)"
                )

    def status(self, node_name: str) -> DiagnosticStatus:
        publishers = self._node.count_publishers(self.image_topic) if self.image_topic else 0
        return self.statistics.to_status(
            time.monotonic(), node_name, dropped=self.slot.dropped, image_topic=(self.image_topic, publishers)
        )
