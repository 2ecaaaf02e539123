"""`dinov2-ros demo`: the system of launch/demo.launch.py, started without ROS launch, with a report.

ROS launch is not installable without a ROS install, so this starts the same processes that
demo.launch.py starts — the synthetic camera and the perception node, configured with
config/perception.yaml and the demo's overrides — then teaches each synthetic part through the node's
dinov2/add_class service (boxes from the camera's ground truth; one example per scene, up to three)
and prints, once a second, what the node publishes next to that ground truth. With the conveyor scene
the node places objects with the camera's exact depth, and the report says whether each part kept
its track id. demo.launch.py runs the same teaching and report as the `demo_monitor` executable
(`monitor_main`).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from vision_msgs.msg import Detection2D, Detection2DArray, Detection3DArray, LabelInfo

from dinov2_ros.ros.camera_outputs import LATCHED_QOS
from dinov2_ros.ros.camera_streams import stamp_ns
from dinov2_ros.ros.class_services import add_class_request
from dinov2_ros.ros.dds_profile import PROFILE_FILE, profile_environment
from dinov2_ros.ros.node_main import spin_node
from dinov2_ros.tools.demo.synthetic_camera_node import PARAMETERS as CAMERA_PARAMETERS

# the same remappings as launch/demo.launch.py (tests/ros/test_demo_runner.py checks they agree)
DEMO_TOPICS = {
    "image": "/demo_camera/image",
    "camera_info": "/demo_camera/camera_info",
    "depth/image": "/demo_camera/depth/image",
}
GROUND_TRUTH_TOPIC = "/demo_camera/ground_truth"
NODE_NAME = "dinov2"
IOU_MATCH = 0.5
EXAMPLES_PER_CLASS = 3  # each part is taught from up to this many scenes, one example per scene


@dataclass(frozen=True)
class DemoSettings:
    duration_s: float = 30.0
    startup_timeout_s: float = 600.0
    backend: str = "onnxruntime"
    variant: str = "vits14"
    rate_hz: float = CAMERA_PARAMETERS["rate_hz"].default  # as demo.launch.py: the camera's defaults
    scene_period_s: float = CAMERA_PARAMETERS["scene_period_s"].default
    scene: str = "picking"  # or "conveyor", "stacked" (synthetic_camera_node's `scene`)
    graph_dir: str = ""  # the artifact store; "" keeps config/perception.yaml's model.graph_dir


def config_file(name: str = "perception.yaml") -> Path:
    """config/<name> of the installed package (colcon), else of this source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("dinov2_ros")) / "config" / name
    except (ImportError, LookupError, OSError):  # not installed with colcon, or no ament prefix at all
        return Path(__file__).resolve().parents[3] / "config" / name


def remap_arguments(topics: dict[str, str]) -> list[str]:
    return [arg for source, target in topics.items() for arg in ("-r", f"{source}:={target}")]


def camera_command(settings: DemoSettings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dinov2_ros.tools.demo.synthetic_camera_node",
        "--ros-args",
        "-r",
        "__node:=demo_camera",
        "-p",
        f"rate_hz:={settings.rate_hz}",
        "-p",
        f"scene_period_s:={settings.scene_period_s}",
        "-p",
        f"scene:={settings.scene}",
        *remap_arguments({**DEMO_TOPICS, "ground_truth": GROUND_TRUTH_TOPIC}),
    ]


def perception_command(settings: DemoSettings) -> list[str]:
    """As demo.launch.py runs it: the config file first, then the demo's overrides."""
    overrides = {
        "backend.kind": settings.backend,
        "model.variant": settings.variant,
        "model.weights": "random",
        "model.depth_weights": "random",
    }
    if settings.graph_dir:
        overrides["model.graph_dir"] = settings.graph_dir
    if settings.scene in ("conveyor", "stacked"):  # ray-cast depth: oriented boxes of the parts as they lie
        overrides["camera.use_depth"] = "true"
    return [
        sys.executable,
        "-m",
        "dinov2_ros.ros.perception_node",
        "--ros-args",
        "-r",
        f"__node:={NODE_NAME}",
        "--params-file",
        str(config_file()),
        *(arg for name, value in overrides.items() for arg in ("-p", f"{name}:={value}")),
        *remap_arguments({**DEMO_TOPICS, "image/compressed": DEMO_TOPICS["image"] + "/compressed"}),
    ]


def _box(detection: Detection2D) -> tuple[float, float, float, float]:
    c, sx, sy = detection.bbox.center.position, detection.bbox.size_x, detection.bbox.size_y
    return c.x - sx / 2, c.y - sy / 2, c.x + sx / 2, c.y + sy / 2


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _scene_key(truth: Detection2DArray) -> list:
    """What changes with the scene: the parts' identities where the truth has them (a conveyor's parts
    move every frame), else their classes and boxes."""
    if truth.detections and all(d.id for d in truth.detections):
        return sorted(d.id for d in truth.detections)
    return sorted((d.results[0].hypothesis.class_id, tuple(round(v) for v in _box(d))) for d in truth.detections)


@dataclass
class Tally:
    """Ground-truth parts of taught classes found (IoU >= 0.5, right class), and detections that matched."""

    truths: int = 0
    found: int = 0
    detections: int = 0
    correct: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    # ground-truth identity (conveyor) -> the track ids of the detections that found it
    track_ids: dict[str, set[str]] = field(default_factory=dict)

    def identity_line(self) -> str:
        """How many found parts kept one track id, for a ground truth with identities."""
        if not self.track_ids:
            return ""
        changed = sum(len(ids) > 1 for ids in self.track_ids.values())
        return f"; parts found {len(self.track_ids)}, of which kept one track id {len(self.track_ids) - changed}"


class DemoMonitor(Node):
    """Teaches the synthetic parts and scores the node's 2D objects against the camera's ground truth."""

    def __init__(self) -> None:
        super().__init__("dinov2_demo_monitor")
        self.truth_by_stamp: dict[int, Detection2DArray] = {}
        self.scene_since_ns = 0  # stamp of the first frame of the current scene
        self.labels: dict[str, str] = {}  # class id (as published) -> class name
        self.outputs = 0
        self.last_objects: list[tuple[str, float]] = []
        self.last_truth: list[str] = []
        self.tally = Tally()
        self.pending_teach = None
        self.examples: dict[str, int] = {}  # class name -> examples taught
        self.taught_this_scene: set[str] = set()
        self.create_subscription(Detection2DArray, GROUND_TRUTH_TOPIC, self._on_truth, qos_profile_sensor_data)
        self.create_subscription(Detection2DArray, f"/{NODE_NAME}/objects_2d", self._on_objects, 10)
        self.create_subscription(LabelInfo, f"/{NODE_NAME}/label_info", self._on_labels, LATCHED_QOS)
        # by stamp, so the report shows a frame's objects with that frame's pick order (they arrive apart)
        self.objects_by_stamp: dict[int, list[tuple[str, float]]] = {}
        self.pick_order_by_stamp: dict[int, list[str]] = {}
        self.create_subscription(Detection3DArray, f"/{NODE_NAME}/pick_candidates", self._on_pick_order, 10)
        self.add_class = self.create_client(SetParameters, f"/{NODE_NAME}/add_class")

    def _on_truth(self, msg: Detection2DArray) -> None:
        stamp = stamp_ns(msg)
        previous = self.truth_by_stamp[max(self.truth_by_stamp)] if self.truth_by_stamp else None
        if previous is None or _scene_key(previous) != _scene_key(msg):
            self.scene_since_ns = stamp
            self.taught_this_scene.clear()
        self.truth_by_stamp[stamp] = msg
        while len(self.truth_by_stamp) > 100:
            del self.truth_by_stamp[min(self.truth_by_stamp)]

    def _on_pick_order(self, msg: Detection3DArray) -> None:
        _remember(self.pick_order_by_stamp, stamp_ns(msg), [d.id for d in msg.detections])

    def _on_labels(self, msg: LabelInfo) -> None:
        self.labels = {str(c.class_id): c.class_name for c in msg.class_map}

    def _on_objects(self, msg: Detection2DArray) -> None:
        now_ns, stamp = self.get_clock().now().nanoseconds, stamp_ns(msg)
        self.outputs += 1
        self.tally.latencies_ms.append((now_ns - stamp) / 1e6)
        found = [(self.labels.get(d.results[0].hypothesis.class_id, "?"), d) for d in msg.detections if d.results]
        self.last_objects = [(f"{name} #{d.id}", d.results[0].hypothesis.score) for name, d in found]
        _remember(self.objects_by_stamp, stamp, self.last_objects)
        truth = self.truth_by_stamp.get(stamp)
        if truth is None:
            return
        taught = set(self.labels.values())
        parts = [(d.results[0].hypothesis.class_id, _box(d)) for d in truth.detections]
        self.last_truth = [name for name, _ in parts]
        self._teach_missing(parts, stamp)
        for part, (name, box) in zip(truth.detections, parts, strict=True):
            if name in taught:
                self.tally.truths += 1
                hits = [d for n, d in found if n == name and iou(box, _box(d)) >= IOU_MATCH]
                self.tally.found += bool(hits)
                if hits and part.id:
                    self.tally.track_ids.setdefault(part.id, set()).add(hits[0].id)
        for name, d in found:
            self.tally.detections += 1
            self.tally.correct += any(n == name and iou(b, _box(d)) >= IOU_MATCH for n, b in parts)

    def _teach_missing(self, parts: list[tuple[str, tuple[float, ...]]], stamp: int) -> None:
        """Teach one example at a time, from a frame the node processed after the scene changed: every
        class once per scene, until it has EXAMPLES_PER_CLASS (random weights need several views)."""
        if self.pending_teach is not None or stamp < self.scene_since_ns or not self.add_class.service_is_ready():
            return
        wanted = [
            (name, box)
            for name, box in parts
            if self.examples.get(name, 0) < EXAMPLES_PER_CLASS and name not in self.taught_this_scene
        ]
        if not wanted:
            return
        name, box = wanted[0]
        self.taught_this_scene.add(name)
        self.pending_teach = self.add_class.call_async(add_class_request(name, box))
        self.pending_teach.add_done_callback(lambda future, name=name: self._taught(future, name))

    def _taught(self, future, name: str) -> None:
        self.pending_teach = None
        response = future.result()
        result = response.results[0] if response is not None and response.results else None
        if result is not None and result.successful:
            self.examples[name] = self.examples.get(name, 0) + 1
            # the node logs the class id it gave (result.reason): this line does not repeat it
            print(
                f"demo: taught '{name}' (example {self.examples[name]} of {EXAMPLES_PER_CLASS}) "
                f"through {NODE_NAME}/add_class",
                flush=True,
            )
        else:
            print(f"demo: teaching '{name}' failed: {result.reason if result else 'no response'}", flush=True)


def _remember(by_stamp: dict, stamp: int, value, keep: int = 50) -> None:
    by_stamp[stamp] = value
    while len(by_stamp) > keep:
        del by_stamp[min(by_stamp)]


def _report_line(monitor: DemoMonitor, elapsed_s: float, outputs_before: int) -> str:
    both = set(monitor.objects_by_stamp) & set(monitor.pick_order_by_stamp)
    newest = max(both) if both else None  # the newest frame whose objects and pick order both arrived
    shown = monitor.objects_by_stamp[newest] if newest is not None else monitor.last_objects
    objects = ", ".join(f"{name} {score:.2f}" for name, score in shown) or "none"
    truth = ", ".join(monitor.last_truth) or "?"
    latency = monitor.tally.latencies_ms[-1] if monitor.tally.latencies_ms else float("nan")
    order = monitor.pick_order_by_stamp.get(newest)
    picks = "" if order is None else f" | pick order: {', '.join(f'#{i}' for i in order) or 'none'}"
    return (
        f"[{elapsed_s:6.1f} s] {monitor.outputs - outputs_before} outputs/s, latency {latency:5.0f} ms | "
        f"objects: {objects}{picks} | scene: {truth}"
    )


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def run_demo(settings: DemoSettings) -> int:
    """Run the demo; 0 when the node published objects for the whole duration, 1 otherwise."""
    print(
        f"demo: synthetic camera {settings.rate_hz:g} Hz -> perception node ({settings.backend}, {settings.variant}, "
        "RANDOM encoder and depth weights: nothing is downloaded, so depth is meaningless; the parts are "
        "taught by example and found by colour and texture).\n"
        f"demo: config {config_file()}; the first run exports the graph (about half a minute), later runs reuse it.",
        flush=True,
    )
    # both processes send camera-sized messages: give their Fast DDS the large-image profile
    env = {**os.environ, **profile_environment(config_file(PROFILE_FILE), os.environ)}
    # `python -m` puts its working directory first on sys.path: run it where this very package lies, so
    # a dinov2_ros/ folder where the user stands (e.g. ~/ros2_ws/src with the clone) cannot shadow it
    where = Path(__file__).resolve().parents[3]
    processes = [subprocess.Popen(camera_command(settings), env=env, cwd=where)]
    processes.append(subprocess.Popen(perception_command(settings), env=env, cwd=where))
    rclpy.init()
    monitor = DemoMonitor()
    try:
        return _monitor(monitor, processes, settings)
    except KeyboardInterrupt:
        return 0
    finally:
        monitor.destroy_node()
        rclpy.try_shutdown()
        _stop(processes)


def _monitor(monitor: DemoMonitor, processes: list[subprocess.Popen], settings: DemoSettings) -> int:
    deadline = time.monotonic() + settings.startup_timeout_s
    while monitor.outputs == 0:
        rclpy.spin_once(monitor, timeout_sec=0.2)
        exited = [p for p in processes if p.poll() is not None]
        if exited or time.monotonic() > deadline:
            why = f"{exited[0].args[2]} exited with {exited[0].returncode}" if exited else "timed out"
            print(f"demo: no output from the perception node ({why}); see its log above", flush=True)
            return 1
    print("demo: first objects received; reporting once a second (Ctrl-C stops)", flush=True)
    start = time.monotonic()
    next_report, outputs_before = start + 1.0, monitor.outputs
    while settings.duration_s <= 0 or time.monotonic() - start < settings.duration_s:
        rclpy.spin_once(monitor, timeout_sec=0.05)
        if any(p.poll() is not None for p in processes):
            print("demo: a node exited early; see its log above", flush=True)
            return 1
        if time.monotonic() >= next_report:
            print(_report_line(monitor, time.monotonic() - start, outputs_before), flush=True)
            next_report, outputs_before = next_report + 1.0, monitor.outputs
    tally = monitor.tally
    latencies = sorted(tally.latencies_ms)
    print(
        f"demo: {monitor.outputs} outputs; latency median {statistics.median(latencies):.0f} ms, "
        f"p99 {latencies[int(0.99 * (len(latencies) - 1))]:.0f} ms; taught classes {sorted(set(monitor.labels.values()))}; "
        f"parts of taught classes found {tally.found}/{tally.truths}, detections correct {tally.correct}/{tally.detections} "
        f"(IoU >= {IOU_MATCH}){tally.identity_line()}",
        flush=True,
    )
    return 0


def monitor_main(args: list[str] | None = None) -> int:
    """The `demo_monitor` executable of demo.launch.py: teaches the parts and logs the report each second."""

    def make_monitor() -> DemoMonitor:
        monitor = DemoMonitor()
        start, counted = time.monotonic(), [0]

        def report() -> None:
            monitor.get_logger().info(_report_line(monitor, time.monotonic() - start, counted[0]))
            counted[0] = monitor.outputs

        monitor.create_timer(1.0, report)
        return monitor

    return spin_node(make_monitor, "dinov2_demo_monitor", args)
