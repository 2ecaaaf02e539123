"""Frames of sizes the node was not set up for never stall the other cameras (issue 10): refused when
the camera has a configured (or learned) size or the graph limit is reached, or prepared on a thread
of their own. Real DDS, the tiny graphs of node_harness; the other camera's output rate is measured."""

from __future__ import annotations

import numpy as np
from node_harness import Harness, SceneCamera
from node_harness import start_node as start_tiny_node
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from dinov2_ros.ros.image_conversion import array_to_image
from dinov2_ros.ros.perception_node import PerceptionNode
from dinov2_ros.tools.demo.synthetic_camera_node import camera_info_for

SECOND = 1_000_000_000
PERIOD_S = 0.05  # each camera at 20 Hz


class BlankCamera(SceneCamera):
    """A camera of any size, down to 1x1 (the scene generator needs room for its parts)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height, self.frame_id = width, height, "odd_optical_frame"
        self.K = np.array([[100.0, 0, width / 2], [0, 100.0, height / 2], [0, 0, 1]])

    def messages(self, stamp_ns: int):
        header = self.header(stamp_ns)
        image = array_to_image(np.full((self.height, self.width, 3), 90, np.uint8), "rgb8", header)
        return image, camera_info_for(self.K, self.width, self.height, header), None


def start_node(context, namespace: str, graph_dir, **overrides) -> PerceptionNode:
    values = {"warnings.throttle_s": 0.0, "cameras": ["front", "side"], "side.width": 128, "side.height": 96}
    return start_tiny_node(context, graph_dir, namespace, reliable=True, **(values | overrides))


class TwoCameras:
    """Publishes the front and side cameras at 20 Hz each and counts the side camera's output."""

    def __init__(self, harness: Harness, namespace: str) -> None:
        self.harness = harness
        self.publishers = {
            name: (
                harness.publisher(Image, f"/{namespace}/{name}/image"),
                harness.publisher(CameraInfo, f"/{namespace}/{name}/camera_info"),
            )
            for name in ("front", "side")
        }
        self.outputs = {
            name: harness.record(Detection2DArray, f"/{namespace}/{name}/dinov2/objects_2d") for name in self.publishers
        }
        self.side = SceneCamera(128, 96, "side_optical")
        self.stamp_ns = 0

    def stream(self, seconds: float, front: list[SceneCamera] | None) -> float:
        """Publish for `seconds` (front cycling through `front`, silent for None); the side camera's
        output rate (Hz) over that time."""
        before = len(self.outputs["side"])
        for index in range(int(seconds / PERIOD_S)):
            self.stamp_ns += SECOND // 20
            cameras = {"side": self.side} | ({"front": front[index % len(front)]} if front else {})
            for name, camera in cameras.items():
                image, info, _ = camera.messages(self.stamp_ns)
                self.publishers[name][1].publish(info)
                self.publishers[name][0].publish(image)
            self.harness.spin_for(PERIOD_S)
        return (len(self.outputs["side"]) - before) / seconds


def test_frames_of_another_size_are_refused_and_the_other_camera_keeps_its_rate(context, graph_dir, harness, capfd):
    node = start_node(context, "refuse", graph_dir, **{"front.width": 160, "front.height": 120})
    harness.add_node(node)
    cameras = TwoCameras(harness, "refuse")
    good = SceneCamera(160, 120, "front_optical")
    odd = [BlankCamera(641, 479), BlankCamera(800, 600), BlankCamera(1, 1)]
    statistics = node.cameras["front"].statistics
    try:
        cameras.stream(1.0, [good])  # warm-up
        before = cameras.stream(3.0, [good])
        during = cameras.stream(3.0, odd)
        assert before > 5.0
        assert during > 0.8 * before, f"side camera {during:.1f} Hz while front sent odd sizes, {before:.1f} Hz before"
        assert statistics.rejected["size"] >= 10
        assert set(node.pipeline.graphs) == {(120, 160), (96, 128)}, "no graph was opened for the odd sizes"
        published = len(cameras.outputs["front"])
        cameras.stream(1.0, [good])
        assert len(cameras.outputs["front"]) >= published + 5, "the good frames after the odd ones are processed"
        logged = capfd.readouterr()
        log = logged.out + logged.err
        for size in ("641x479", "800x600", "1x1"):
            assert (
                f"camera 'front': frame skipped (size): the frame is {size} but this camera's frames are 160x120" in log
            )
        assert "start the node with front.width:=800 front.height:=600 (read-only parameters)" in log
    finally:
        node.destroy_node()


def test_a_learned_size_is_prepared_off_the_worker_while_the_other_camera_keeps_its_rate(
    context, graph_dir, harness, capfd
):
    node = start_node(context, "learn", graph_dir)  # front: 0 x 0, learned from its first frame
    harness.add_node(node)
    cameras = TwoCameras(harness, "learn")
    front = node.cameras["front"].statistics
    try:
        cameras.stream(1.0, None)
        before = cameras.stream(2.0, None)
        assert set(node.pipeline.graphs) == {(96, 128)}, "only the configured size is prepared at configure"
        during = cameras.stream(2.0, [SceneCamera(160, 120, "front_optical")])
        assert during > 0.8 * before, (
            f"side camera {during:.1f} Hz while front's graph was prepared, {before:.1f} Hz before"
        )
        assert front.waited_for_graph >= 1, "the first frame is dropped and counted while its graph opens"
        skipped = [line for line in capfd.readouterr().err.splitlines() if "is being prepared" in line]
        assert skipped and all(line.startswith("[INFO]") for line in skipped), "expected and counted: no WARN"
        assert not front.rejected
        assert len(cameras.outputs["front"]) >= 5, "the front camera runs once its graph is open"
        assert set(node.pipeline.graphs) == {(96, 128), (120, 160)}
        cameras.stream(1.0, [BlankCamera(200, 150)])  # another size: refused, the learned one stays
        assert front.rejected["size"] >= 5 and (150, 200) not in node.pipeline.graphs
    finally:
        node.destroy_node()


def test_a_new_size_beyond_graphs_max_open_is_refused_naming_the_parameter(context, graph_dir, harness, capfd):
    node = start_node(context, "limit", graph_dir, **{"graphs.max_open": 1})
    harness.add_node(node)
    cameras = TwoCameras(harness, "limit")
    try:
        cameras.stream(1.0, None)
        before = cameras.stream(2.0, None)
        during = cameras.stream(2.0, [SceneCamera(160, 120, "front_optical")])
        assert during > 0.8 * before
        assert node.cameras["front"].statistics.rejected["graph limit"] >= 10
        assert set(node.pipeline.graphs) == {(96, 128)} and not cameras.outputs["front"]
        logged = capfd.readouterr()
        assert (
            "the frame is 160x120, a new size, but graphs.max_open (1) sizes are served already (128x96); raise graphs.max_open"
            in logged.out + logged.err
        )
    finally:
        node.destroy_node()


def test_a_first_frame_whose_graph_cannot_be_made_does_not_decide_the_cameras_size(context, graph_dir, harness, capfd):
    """200x150 has no stored graph and the tiny test encoder cannot be exported: the real exporter
    runs in its child process and fails; the camera's next frames, of a servable size, run."""
    node = start_node(context, "relearn", graph_dir)
    harness.add_node(node)
    cameras = TwoCameras(harness, "relearn")
    front = node.cameras["front"].statistics
    try:
        cameras.stream(1.0, None)
        before = cameras.stream(2.0, None)
        odd = BlankCamera(200, 150)
        during = 0.0
        for _ in range(30):  # until the export has failed (the child process imports torch first)
            during = cameras.stream(1.0, [odd])
            if front.rejected["graph failed"]:
                break
        assert front.rejected["graph failed"] >= 1, front.last_rejection
        assert during > 0.8 * before, f"side camera {during:.1f} Hz while the export failed, {before:.1f} Hz before"
        cameras.stream(3.0, [SceneCamera(160, 120, "front_optical")])
        assert len(cameras.outputs["front"]) >= 5, front.last_rejection
        logged = capfd.readouterr()
        assert "the graph for 200x150 frames could not be made: unknown backbone" in logged.out + logged.err
    finally:
        node.destroy_node()
