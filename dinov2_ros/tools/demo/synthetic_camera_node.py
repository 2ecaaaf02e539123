"""The `synthetic_camera_node` executable: a camera that needs no hardware, for the demo and tests.

Publishes synthetic scenes as `image` (rgb8), `camera_info` and, optionally, an aligned `depth/image`
(32FC1 metres) with one stamp per frame, at a fixed rate, and the scene's ground truth on
`ground_truth` (vision_msgs/Detection2DArray: class name in `class_id`, box in pixels), so a demo can
teach parts and score what the perception node finds. `scene` picks what is filmed:
- picking (tools.scenes.synthetic_scenes): still parts, a new scene every `scene_period_s` seconds, so
  there is time to teach a part from it;
- conveyor (tools.scenes.tabletop_scenes.Conveyor): parts on a tilted table moving across the view at
  5 cm/s, ray-cast depth in which `shiny_fraction` of the parts return nothing (holes for the node's
  depth completion); each ground-truth detection's `id` is the part's true identity, so a
  demo can check that track ids stay with the parts;
- stacked (tools.scenes.tabletop_scenes.stacked_parts): still parts on the tilted table, four of them
  lying on others, a new layout every `scene_period_s` seconds: for the node's pick order.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from dinov2_ros.ros.image_conversion import array_to_image
from dinov2_ros.ros.messages.detections import bounding_box_2d
from dinov2_ros.ros.node_main import spin_node
from dinov2_ros.ros.node_parameters import declare
from dinov2_ros.runtime.model_settings import Setting
from dinov2_ros.tools.scenes.synthetic_scenes import Scene, SyntheticSceneGenerator
from dinov2_ros.tools.scenes.tabletop_scenes import (
    TABLETOP_PARTS,
    Conveyor,
    ConveyorFrame,
    TabletopScene,
    render_tabletop,
    stacked_parts,
    visible_boxes,
)

# reliable publishers reach both best-effort and reliable subscribers
CAMERA_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
PARAMETERS: dict[str, Setting] = {  # all read-only
    "width": Setting(640, "image width in pixels", True, (32, 4096)),
    "height": Setting(480, "image height in pixels", True, (32, 4096)),
    "rate_hz": Setting(15.0, "frames per second", True, (0.1, 1000.0)),
    "seed": Setting(0, "scene generator seed", True, (0, 2**31 - 1)),
    "scene_period_s": Setting(8.0, "seconds before the next scene", True, (0.0, 3600.0)),
    "frame_id": Setting("camera_optical_frame", "optical frame id", True),
    "publish_depth": Setting(True, "also publish aligned depth", True),
    "shiny_fraction": Setting(
        0.25,
        "conveyor: the share of parts that return no depth (shiny, black, film), as a depth camera gives them",
        True,
        (0.0, 1.0),
    ),
    "scene": Setting(
        "picking",
        "what is filmed: picking (still scenes), conveyor (moving parts) or stacked (parts lying on others)",
        True,
        choices=("picking", "conveyor", "stacked"),
    ),
}


def ground_truth_for(scene: Scene, class_names: Sequence[str], header: Header) -> Detection2DArray:
    """The scene's parts as Detection2DArray: class name as class_id, score 1, box in pixels."""
    parts = zip(scene.boxes.tolist(), scene.class_ids.tolist(), strict=True)
    return _ground_truth(((class_names[class_id], box, "") for box, class_id in parts), header)


def conveyor_ground_truth(frame: ConveyorFrame, header: Header) -> Detection2DArray:
    """The visible parts as Detection2DArray, as `ground_truth_for`, with the part's identity as id."""
    return tabletop_ground_truth(frame.scene, frame.track_ids, header)


def tabletop_ground_truth(scene: TabletopScene, identities: Sequence[int], header: Header) -> Detection2DArray:
    """A tabletop scene's visible parts as Detection2DArray, each part's `identities[i]` as its id."""
    visible = zip(*visible_boxes(scene), strict=True)
    return _ground_truth(((scene.parts[i].name, box, str(identities[i])) for i, box in visible), header)


def _ground_truth(parts: Iterable[tuple[str, Sequence[float], str]], header: Header) -> Detection2DArray:
    """(class name, xyxy pixel box, id) per part -> Detection2DArray with score 1."""
    detections = []
    for name, (x1, y1, x2, y2), identity in parts:
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = name
        hypothesis.hypothesis.score = 1.0
        bbox = bounding_box_2d(float(x1), float(y1), float(x2), float(y2))
        detections.append(Detection2D(header=header, results=[hypothesis], bbox=bbox, id=identity))
    return Detection2DArray(header=header, detections=detections)


def camera_info_for(K: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    """CameraInfo of an ideal pinhole camera (no distortion, P = [K | 0])."""
    info = CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob")
    info.k = [float(v) for v in K.reshape(-1)]
    info.d = [0.0] * 5
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [float(v) for v in np.hstack([K, np.zeros((3, 1))]).reshape(-1)]
    return info


class SyntheticCameraNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("synthetic_camera", **kwargs)
        values = {name: declare(self, name, spec) for name, spec in PARAMETERS.items()}
        self.width, self.height, self.frame_id = values["width"], values["height"], values["frame_id"]
        rate, seed, self.scene_period_s = values["rate_hz"], values["seed"], values["scene_period_s"]
        publish_depth = values["publish_depth"]
        self.generator = SyntheticSceneGenerator(seed, self.width, self.height)
        self.scene_kind, self.seed, self.shiny_fraction = values["scene"], seed, values["shiny_fraction"]
        conveyor = values["scene"] == "conveyor"
        self.conveyor = Conveyor(seed=seed, shiny_fraction=self.shiny_fraction) if conveyor else None
        self.image_pub = self.create_publisher(Image, "image", CAMERA_QOS)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", CAMERA_QOS)
        self.depth_pub = self.create_publisher(Image, "depth/image", CAMERA_QOS) if publish_depth else None
        self.truth_pub = self.create_publisher(Detection2DArray, "ground_truth", CAMERA_QOS)
        self.frames = 0
        self._scene_index = -1
        self._start = self.get_clock().now()
        self.create_timer(1.0 / rate, self._publish)
        classes = ", ".join(TABLETOP_PARTS if self.scene_kind != "picking" else self.generator.class_names)
        self.get_logger().info(
            f"synthetic camera: {self.width}x{self.height} at {rate} Hz, {values['scene']} scenes of seed {seed}, "
            f"classes {classes}"
        )

    def _scene(self, now) -> Scene | TabletopScene:
        """The still scene of the moment: a picking scene, or a stacked tabletop (a few parts lying on
        others, `shiny_fraction` of all returning no depth), a new one every scene_period_s."""
        elapsed_s = (now - self._start).nanoseconds / 1e9
        index = int(elapsed_s / self.scene_period_s) if self.scene_period_s > 0 else self.frames
        if index != self._scene_index:
            self._scene_index, self._current = index, self._render(index)
        return self._current

    def _render(self, index: int) -> Scene | TabletopScene:
        if self.scene_kind == "picking":
            return self.generator.render(index)
        seed = self.seed * 100_003 + index
        layout = stacked_parts(seed)
        rng = np.random.default_rng((seed, 1))
        shiny = tuple(np.flatnonzero(rng.random(len(layout)) < self.shiny_fraction).tolist())
        return render_tabletop(layout, 15.0, width=self.width, height=self.height, seed=seed, no_return=shiny)

    def _publish(self) -> None:
        now = self.get_clock().now()
        header = Header(stamp=now.to_msg(), frame_id=self.frame_id)
        if self.conveyor is not None:
            frame = self.conveyor.render((now - self._start).nanoseconds / 1e9, width=self.width, height=self.height)
            scene, K, truth = frame.scene, frame.scene.K, conveyor_ground_truth(frame, header)
        elif self.scene_kind == "stacked":
            scene = self._scene(now)
            K, truth = scene.K, tabletop_ground_truth(scene, range(1, len(scene.parts) + 1), header)
        else:
            scene = self._scene(now)
            K, truth = self.generator.K, ground_truth_for(scene, self.generator.class_names, header)
        self.image_pub.publish(array_to_image(scene.image_rgb, "rgb8", header))
        self.info_pub.publish(camera_info_for(K, self.width, self.height, header))
        if self.depth_pub is not None:
            self.depth_pub.publish(array_to_image(scene.depth, "32FC1", header))
        self.truth_pub.publish(truth)
        self.frames += 1


def main(args: list[str] | None = None) -> int:
    return spin_node(SyntheticCameraNode, "synthetic_camera", args)


if __name__ == "__main__":
    sys.exit(main())
