"""End-to-end ROS latency of perception_node against the bare compiled-graph call, in one run.

    .venv/bin/python benchmarks/bench_node.py [--rate 30] [--seconds 20] [--variant vits14]
        [--backend onnxruntime|torch|tensorrt --device cpu|cuda] [--no-wait-for-new-frame]

1. Opens (exporting once, random weights asked for explicitly) the graph for 640x480 frames exactly
   as the node does; times the node's own per-frame work around the graph call in process
   (conversions, masks, 3D lifting, output messages) with one class taught.
2. Starts perception_node in its own process on that graph, with its default QoS and scheduling and
   the Fast DDS large-image profile the launch file gives it (this process, the camera, gets it too),
   publishes 640x480 rgb8 frames with camera_info, teaches one class through dinov2/add_class so
   objects are found and published, and times image published -> objects received:
   - paced: one frame at a time, each after the previous result, alternating with a bare
     `Backend.infer` call in this process, so both see the same machine state;
   - at `--rate` Hz (30: a camera faster than the CPU graph), in blocks alternating with bare calls.
3. What the object outputs cost per frame at 10 objects on 640x480 (in process, a ray-cast tabletop
   with its true masks as the detections), interleaved with the graph call: 3D lifting (the
   axis-aligned box, the baseline), oriented boxes (both also with a distorted lens), the instances
   image and track ids.
Prints medians and p99 in ms, the output rate, and the node's own split from its /diagnostics.
`--objects-only` runs part 3 alone (no ROS processes).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray

from dinov2_ros.export.graph_builder import GraphBuilder
from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.frame import CameraFrame, Detection, FrameResult
from dinov2_ros.perception.frame_pipeline import FramePipeline
from dinov2_ros.perception.object_lifting import ObjectLifter
from dinov2_ros.perception.object_tracking import ObjectTracker
from dinov2_ros.perception.oriented_box import fit_from_depths
from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.ros.camera_streams import camera_qos, stamp_ns
from dinov2_ros.ros.class_services import add_class_request
from dinov2_ros.ros.dds_profile import PROFILE_FILE, profile_environment
from dinov2_ros.ros.frame_intake import to_camera_frame
from dinov2_ros.ros.frame_slots import PairedFrame
from dinov2_ros.ros.image_conversion import array_to_image, image_to_rgb
from dinov2_ros.ros.messages.detections import to_detection2d_array, to_detection3d_array
from dinov2_ros.ros.messages.images import to_depth_messages, to_instances_messages
from dinov2_ros.runtime.model_settings import ModelSettings
from dinov2_ros.tools.demo.synthetic_camera_node import camera_info_for
from dinov2_ros.tools.evaluation.replayed_graph import ReplayedGraph, graph_inputs
from dinov2_ros.tools.latency import time_interleaved
from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator
from dinov2_ros.tools.scenes.tabletop_scenes import render_tabletop, visible_boxes

REPO = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 480, 640
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# what the node's frame intake needs of a camera (ros.camera_streams.CameraStreams)
CAMERA = SimpleNamespace(
    name="camera", rectified=False, image_topic="/image", depth_topic="/depth/image", to_rgb=image_to_rgb
)


def node_parameters(args, graph_dir: Path) -> dict[str, object]:
    """The model and backend parameters of the benchmarked node: its defaults, random weights (asked for)."""
    return {
        "model.variant": args.variant,
        "model.weights": "random",
        "model.depth_weights": "random",
        "model.input_height": args.input[0],
        "model.input_width": args.input[1],
        "model.graph_dir": str(graph_dir),
        "backend.kind": args.backend,
        "backend.device": args.device,
        "backend.threads": args.threads,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_split(values: dict[str, str]) -> tuple[float, float, float]:
    """(image age at receipt, graph call, in node besides it) medians in ms from the node's /diagnostics."""
    keys = ("image age at receipt median (ms)", "inference median (ms)", "in node besides inference median (ms)")
    return tuple(float(values.get(key, "nan")) for key in keys)


def summary(name: str, values_ms: np.ndarray, extra: str = "") -> str:
    return (
        f"{name:<44} median {np.median(values_ms):7.1f} ms   p99 {np.percentile(values_ms, 99):7.1f} ms"
        f"   n={len(values_ms)} {extra}"
    )


class BareGraph:
    """The baseline: one `Backend.infer` call on the frame the node gets, no classes taught."""

    def __init__(self, backend, image: np.ndarray) -> None:
        self.backend = backend
        self.inputs = graph_inputs(backend.spec, image)
        backend.infer(self.inputs)  # warm-up
        self.times_ms: list[float] = []

    def time(self, repeats: int = 1) -> None:
        for _ in range(repeats):
            start = time.perf_counter()
            self.backend.infer(self.inputs)
            self.times_ms.append((time.perf_counter() - start) * 1e3)


def node_work_ms(backend, scene, repeats: int) -> np.ndarray:
    """The node's per-frame work besides the graph call, without DDS: message -> arrays -> pipeline
    (batch copy, masks, 3D lifting) -> output messages, with one taught class detected."""
    spec = backend.spec
    store = PrototypeStore(f"{spec.variant}:bench", (spec.input_height, spec.input_width), spec.embed_dim)
    pipeline = FramePipeline(lambda height, width: backend, store)
    header = Header(frame_id="camera_optical_frame")
    image_msg = array_to_image(scene.image_rgb, "rgb8", header)
    info_msg = camera_info_for(scene.K, WIDTH, HEIGHT, header)

    def one_frame() -> float:
        start = time.perf_counter()
        frame = to_camera_frame(PairedFrame("camera", 1, image_msg, info_msg, None), CAMERA)
        result = pipeline.process([frame])[0]
        to_detection3d_array(result, header)
        to_detection2d_array(result, header)
        to_depth_messages(result.depth, header, info_msg)
        return time.perf_counter() - start - backend.last_infer_s

    one_frame()
    pipeline.add_class_from_box("camera", "part", scene.boxes[0])
    return np.array([one_frame() for _ in range(repeats)]) * 1e3


# ten parts on a table tilted by 15 degrees: (class, a, b metres on the table, yaw degrees)
TEN_PARTS = [
    ("bar", -0.2, -0.08, 10),
    ("plate", -0.05, -0.08, 40),
    ("brick", 0.1, -0.08, -30),
    ("cube", 0.22, -0.08, 0),
    ("bar", -0.2, 0.05, 80),
    ("plate", -0.05, 0.05, -60),
    ("brick", 0.1, 0.05, 20),
    ("cube", 0.22, 0.05, 45),
    ("bar", -0.12, 0.14, -20),
    ("plate", 0.12, 0.14, 70),
]


def object_outputs(bare: BareGraph, backend, iterations: int) -> None:
    """Part 3: each object output's cost per frame at 10 objects, beside the graph call, and all of
    the node's work on such a frame (message in -> objects out, without DDS and the graph call)."""
    scene = render_tabletop(TEN_PARTS, tilt_deg=15.0, width=WIDTH, height=HEIGHT)
    visible, boxes = visible_boxes(scene)
    masks = [scene.masks[i] for i in visible]
    replayed = ReplayedGraph(backend, scene.image_rgb, boxes, masks)
    spec = replayed.spec
    store = PrototypeStore("bench:replayed", (spec.input_height, spec.input_width), spec.embed_dim)
    node_tracker = ObjectTracker(lost_timeout_s=1.0)
    pipeline = FramePipeline(lambda height, width: replayed, store, class_names={0: "part"}, tracker=node_tracker)
    image_msg = array_to_image(scene.image_rgb, "rgb8", Header(frame_id="camera_optical_frame"))
    depth_msg = array_to_image((scene.depth * 1000).astype(np.uint16), "16UC1", image_msg.header)
    info_msg = camera_info_for(scene.K, WIDTH, HEIGHT, image_msg.header)
    clock_ns = [0]

    def node_frame() -> None:
        """What perception_node does between an image's receipt and its objects' publication."""
        clock_ns[0] += 100_000_000  # a 10 Hz camera: the tracker's clock is the frames' arrival
        frame = to_camera_frame(PairedFrame("camera", 1, image_msg, info_msg, depth_msg, clock_ns[0]), CAMERA)
        (result,) = pipeline.process([frame])
        to_detection3d_array(result, image_msg.header)
        to_detection2d_array(result, image_msg.header)

    node_frame()
    camera = PinholeCameraModel(scene.K, np.zeros(5), WIDTH, HEIGHT)
    # a lens as a colour camera's calibration gives it (plumb_bob): every pixel is undistorted
    distorted = PinholeCameraModel(scene.K, np.array([-0.12, 0.05, 0.001, -0.0015, 0.0]), WIDTH, HEIGHT)
    result = FrameResult(
        CameraFrame("camera", scene.image_rgb),
        None,
        [Detection(0, "part", 0.8, b, m) for b, m in zip(boxes, masks, strict=True)],
    )
    header, info = Header(frame_id="camera_optical_frame"), camera_info_for(scene.K, WIDTH, HEIGHT, Header())
    lifter, tracker, stamp_s = ObjectLifter(), ObjectTracker(lost_timeout_s=1.0), [0.0]

    scores = np.full(len(boxes), 0.8)

    def track() -> None:
        stamp_s[0] += 0.1  # a 10 Hz camera: every frame the same ten parts, matched to their tracks
        tracker.update("camera", stamp_s[0], boxes, scores)

    stages = {
        "graph call (bare)": bare.time,
        "3D lifting, axis-aligned (10 objects)": lambda: lifter.lift(scene.depth, camera, boxes, masks),
        "oriented boxes (10 objects)": lambda: fit_from_depths(scene.depth, camera, masks, boxes),
        "3D lifting, plumb_bob camera": lambda: lifter.lift(scene.depth, distorted, boxes, masks),
        "oriented boxes, plumb_bob camera": lambda: fit_from_depths(scene.depth, distorted, masks, boxes),
        "instances image + camera_info": lambda: to_instances_messages(result, header, info),
        "track ids (10 tracks)": track,
        "the node's own work, all of it (10 objects)": node_frame,
    }
    print(f"object outputs at {len(boxes)} objects, {WIDTH}x{HEIGHT}, interleaved ({iterations} frames):")
    for name, latency in time_interleaved(stages, iterations).items():
        print(f"  {name:<44} {latency}")


class Camera:
    """Publishes frames and records when each frame's objects arrive."""

    def __init__(self, scene) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bench_camera", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        # like a camera driver: sensor-data QoS, the node's default
        self.image_pub = self.node.create_publisher(Image, "/bench/image", camera_qos())
        self.info_pub = self.node.create_publisher(CameraInfo, "/bench/camera_info", camera_qos())
        self.add_class = self.node.create_client(SetParameters, "/bench/dinov2/add_class")
        self.node.create_subscription(Detection3DArray, "/bench/dinov2/objects", self._received, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, RELIABLE)
        self.node_values: dict[str, str] = {}
        header = Header(frame_id="camera_optical_frame")
        self.image = array_to_image(scene.image_rgb, "rgb8", header)
        self.info = camera_info_for(scene.K, WIDTH, HEIGHT, header)
        self.sent_ns: dict[int, int] = {}
        self.latency_ms: list[float] = []
        self.received_at: list[float] = []
        self.objects: list[int] = []

    def _received(self, msg: Detection3DArray) -> None:
        stamp = stamp_ns(msg)
        self.objects.append(len(msg.detections))
        if stamp in self.sent_ns:
            self.latency_ms.append((time.perf_counter_ns() - self.sent_ns.pop(stamp)) / 1e6)
            self.received_at.append(time.monotonic())

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("bench/") or status.hardware_id == "camera":
                self.node_values.update({kv.key: kv.value for kv in status.values})

    def publish(self) -> None:
        """Like a camera driver publishing from its own buffer: only the stamps change."""
        stamp = time.time_ns()
        for msg in (self.image, self.info):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        self.info_pub.publish(self.info)
        self.sent_ns[stamp] = time.perf_counter_ns()
        self.image_pub.publish(self.image)

    def teach(self, box) -> str:
        """Teach one class from `box` on the node's newest frame; the service's answer."""
        if not self.add_class.wait_for_service(timeout_sec=10.0):
            raise RuntimeError("perception_node offers no dinov2/add_class service")
        future = self.add_class.call_async(add_class_request("part", box))
        self.executor.spin_until_future_complete(future, timeout_sec=10.0)
        result = future.result().results[0]
        if not result.successful:
            raise RuntimeError(f"add_class failed: {result.reason}")
        return result.reason

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.executor.spin_once(timeout_sec=max(0.0, min(0.05, end - time.monotonic())))
            if time.monotonic() >= end:
                return

    def run_at_rate(self, rate_hz: float, seconds: float) -> None:
        period, next_time = 1.0 / rate_hz, time.monotonic()
        end = next_time + seconds
        while next_time < end:
            self.publish()
            next_time += period
            self.spin(max(0.0, next_time - time.monotonic()))
        self.spin(1.0)

    def run_paced(self, frames: int, between=lambda: None) -> None:
        for _ in range(frames):
            between()
            done = len(self.latency_ms)
            self.publish()
            deadline = time.monotonic() + 2.0
            while len(self.latency_ms) == done and time.monotonic() < deadline:
                self.executor.spin_once(timeout_sec=0.05)
            self.spin(0.05)  # let the node go idle again

    def reset(self) -> None:
        self.sent_ns.clear()
        self.latency_ms.clear()
        self.received_at.clear()
        self.objects.clear()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vits14")
    parser.add_argument("--input", type=int, nargs=2, default=(224, 308), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="camera time at --rate, in 4 blocks")
    parser.add_argument("--paced-frames", type=int, default=30)
    parser.add_argument("--backend", choices=("onnxruntime", "torch", "tensorrt"), default="onnxruntime")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: one per core)")
    parser.add_argument(
        "--wait-for-new-frame",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the node's scheduling.wait_for_new_frame (default, lowest latency; --no-... for output rate)",
    )
    parser.add_argument("--graph-dir", type=Path, default=Path(tempfile.gettempdir()) / "dinov2_ros_bench_graphs")
    parser.add_argument("--objects-only", action="store_true", help="only part 3, the object outputs' cost")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    # as perception.launch.py sets it up, for the node and for this process (the camera)
    os.environ.update(profile_environment(REPO / "config" / PROFILE_FILE, os.environ))

    model_parameters = node_parameters(args, args.graph_dir)
    model = ModelSettings.from_values(model_parameters)
    scene = SyntheticSceneGenerator(0, WIDTH, HEIGHT).render(0)
    print(f"graph: {model.describe()}; camera {WIDTH}x{HEIGHT}; {os.cpu_count()} CPUs")
    backend = GraphBuilder(model).open(HEIGHT, WIDTH)
    bare = BareGraph(backend, scene.image_rgb)
    object_outputs(bare, backend, iterations=30)
    bare.times_ms.clear()
    if args.objects_only:
        backend.close()
        return 0
    work = node_work_ms(backend, scene, repeats=20)

    parameters = {
        **model_parameters,
        "diagnostics.period_s": 0.5,
        "scheduling.wait_for_new_frame": args.wait_for_new_frame,
    }
    with tempfile.TemporaryDirectory() as scratch:
        params = Path(scratch) / "bench.yaml"
        params.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
        node_arguments = ["--params-file", str(params), "-r", "__ns:=/bench"]
        node = subprocess.Popen(
            [sys.executable, "-m", "dinov2_ros.ros.perception_node", "--ros-args", *node_arguments],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        camera = Camera(scene)
        try:
            deadline = time.monotonic() + 120.0
            while not camera.latency_ms and time.monotonic() < deadline:  # discovery, session start
                camera.run_paced(1)
            if not camera.latency_ms:
                raise RuntimeError("perception_node produced no output in 120 s")
            print(f"taught one class: {camera.teach(scene.boxes[0])}")
            camera.run_paced(3)  # the first frames with the class
            camera.reset()
            camera.run_paced(args.paced_frames, between=bare.time)
            paced, paced_objects = np.array(camera.latency_ms), np.median(camera.objects)
            bare_paced = np.array(bare.times_ms)
            camera.spin(1.0)  # the node's /diagnostics of the paced run (its last 5 s)
            split_paced = [node_split(camera.node_values)]
            camera.reset()
            bare.times_ms.clear()
            at_rate, received, split_rate = [], [], []
            node_cpu_s, camera_cpu_s, wall_s = 0.0, 0.0, 0.0
            for _ in range(4):
                bare.time(repeats=6)
                cpu_before, wall_before = (cpu_seconds(node.pid), cpu_seconds(os.getpid())), time.monotonic()
                camera.run_at_rate(args.rate, args.seconds / 4)
                node_cpu_s += cpu_seconds(node.pid) - cpu_before[0]
                camera_cpu_s += cpu_seconds(os.getpid()) - cpu_before[1]
                wall_s += time.monotonic() - wall_before
                at_rate += camera.latency_ms
                received.append(np.array(camera.received_at))
                split_rate.append(node_split(camera.node_values))
                camera.reset()
            bare_rate = np.array(bare.times_ms)
            in_node = dict(camera.node_values)
        finally:
            camera.close()
            backend.close()
            node.send_signal(2)
            node.wait(timeout=30)

    output_hz = np.mean([(len(r) - 1) / (r[-1] - r[0]) for r in received if len(r) > 1])
    at_rate = np.array(at_rate)
    print(summary("node-side work per frame, no DDS (in-process)", work, "(one class taught)"))
    print(summary("bare graph call, alternating with paced frames", bare_paced))
    print(summary("node, paced (image published -> objects)", paced, f"{paced_objects:.0f} objects a frame"))
    print(summary(f"bare graph call, between {args.rate:g} Hz blocks", bare_rate))
    print(summary(f"node, camera at {args.rate:g} Hz", at_rate, f"output {output_hz:.1f} Hz"))
    for name, e2e, baseline, splits in (
        ("paced", paced, bare_paced, split_paced),
        (f"{args.rate:g} Hz", at_rate, bare_rate, split_rate),
    ):
        age, graph, besides = np.mean(splits, axis=0)  # the node's 5 s medians, averaged over blocks
        added = np.median(e2e) - np.median(baseline)
        print(
            f"{name}: end to end {added:+.1f} ms over the bare call. The node's /diagnostics: image age at receipt "
            f"{age:.1f} ms, graph call {graph:.1f} ms, in node besides it {besides:.1f} ms; the rest, objects "
            f"out to this process, {np.median(e2e) - age - graph - besides:.1f} ms"
        )
    print(
        f"at {args.rate:g} Hz, CPU cores busy: perception_node {node_cpu_s / wall_s:.2f}, "
        f"this process (camera) {camera_cpu_s / wall_s:.2f}, of {os.cpu_count()}"
    )
    print(
        f"at {args.rate:g} Hz the node's /diagnostics say: frames received {in_node.get('frames received')}, "
        f"published {in_node.get('frames published')}, dropped {in_node.get('frames dropped')} (since start)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
