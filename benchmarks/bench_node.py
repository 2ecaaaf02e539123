"""End-to-end ROS latency of perception_node against the bare compiled-graph call, in one run.

    .venv/bin/python benchmarks/bench_node.py [--rate 30] [--seconds 20] [--variant vits14]

1. Opens (exporting once, random weights asked for explicitly) the graph for 640x480 frames exactly
   as the node does, and times the bare `Backend.infer` call on one frame: the baseline; then the
   node's own per-frame work around that call (conversions, masks, 3D lifting, output messages).
2. Starts perception_node in its own process on that graph, publishes 640x480 rgb8 frames with
   camera_info from this process, and times image published -> objects received.
   - at `--rate` Hz (30: a camera faster than the CPU graph; the node drops and counts frames), and
   - paced: one frame at a time, each after the previous result (the node's own overhead).
Prints medians and p99 in ms and the output rate.
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

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray

from dinov2_ros.perception.frame_pipeline import CameraFrame, FramePipeline
from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.perception.synthetic_scenes import SyntheticSceneGenerator
from dinov2_ros.ros import detection_messages as messages
from dinov2_ros.ros.camera_streams import stamp_ns
from dinov2_ros.ros.graph_source import GraphSource, ModelSettings
from dinov2_ros.ros.image_conversion import array_to_image, image_to_rgb
from dinov2_ros.ros.perception_node import camera_model_from_info
from dinov2_ros.ros.synthetic_camera_node import camera_info_for

REPO = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 480, 640
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# like a camera driver: keep only the newest frame, so a slow reader never makes the writer resend a backlog
CAMERA = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)


def settings(args, graph_dir: Path) -> ModelSettings:
    return ModelSettings(
        variant=args.variant,
        weights="random",
        depth_weights="random",
        depth_dataset="nyu",
        depth_kind="linear4",
        detector="exemplar",
        input_height=args.input[0],
        input_width=args.input[1],
        resize="stretch",
        top_k=20,
        max_prototypes=64,
        max_classes=16,
        backend="onnxruntime",
        device="cpu",
        threads=args.threads,
        graph_dir=graph_dir,
    )


def summary(name: str, values_ms: np.ndarray, extra: str = "") -> str:
    return (
        f"{name:<44} median {np.median(values_ms):7.1f} ms   p99 {np.percentile(values_ms, 99):7.1f} ms"
        f"   n={len(values_ms)} {extra}"
    )


def bare_graph_ms(backend, image: np.ndarray, repeats: int) -> np.ndarray:
    spec = backend.spec
    inputs = {
        "images": image[None],
        "prototypes": np.zeros((spec.max_prototypes, spec.embed_dim), np.float32),
        "prototype_classes": np.full(spec.max_prototypes, -1, np.int32),
    }
    backend.infer(inputs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.infer(inputs)
        times.append(time.perf_counter() - start)
    return np.array(times) * 1e3


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
        frame = CameraFrame("camera", image_to_rgb(image_msg), None, camera_model_from_info(info_msg))
        result = pipeline.process([frame])[0]
        messages.to_detection3d_array(result, header)
        messages.to_detection2d_array(result, header)
        messages.to_depth_messages(result, header, info_msg)
        return time.perf_counter() - start - backend.last_infer_s

    one_frame()
    pipeline.add_class_from_box("camera", "part", scene.boxes[0])
    return np.array([one_frame() for _ in range(repeats)]) * 1e3


class Camera:
    """Publishes frames and records when each frame's objects arrive."""

    def __init__(self, scene) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bench_camera", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.image_pub = self.node.create_publisher(Image, "/bench/image", CAMERA)
        self.info_pub = self.node.create_publisher(CameraInfo, "/bench/camera_info", CAMERA)
        self.node.create_subscription(Detection3DArray, "/bench/dinov2/objects", self._received, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, RELIABLE)
        self.node_values: dict[str, str] = {}
        self.scene = scene
        self.sent_ns: dict[int, int] = {}
        self.latency_ms: list[float] = []
        self.received_at: list[float] = []

    def _received(self, msg: Detection3DArray) -> None:
        stamp = stamp_ns(msg)
        if stamp in self.sent_ns:
            self.latency_ms.append((time.perf_counter_ns() - self.sent_ns.pop(stamp)) / 1e6)
            self.received_at.append(time.monotonic())

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("bench/") or status.hardware_id == "camera":
                self.node_values.update({kv.key: kv.value for kv in status.values})

    def publish(self) -> None:
        stamp = time.time_ns()
        header = Header(frame_id="camera_optical_frame")
        header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        image = array_to_image(self.scene.image_rgb, "rgb8", header)
        self.info_pub.publish(camera_info_for(self.scene.K, WIDTH, HEIGHT, header))
        self.sent_ns[stamp] = time.perf_counter_ns()
        self.image_pub.publish(image)

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

    def run_paced(self, frames: int) -> None:
        for _ in range(frames):
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

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vits14")
    parser.add_argument("--input", type=int, nargs=2, default=(224, 308), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--paced-frames", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0: one per core)")
    parser.add_argument(
        "--reliable",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reliable camera QoS (default): best effort loses fragments of 1.2 MB frames when inference saturates the CPU",
    )
    parser.add_argument("--graph-dir", type=Path, default=Path(tempfile.gettempdir()) / "dinov2_ros_bench_graphs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    model = settings(args, args.graph_dir)
    scene = SyntheticSceneGenerator(0, WIDTH, HEIGHT).render(0)
    print(f"graph: {model.describe()}; camera {WIDTH}x{HEIGHT}; {os.cpu_count()} CPUs")
    backend = GraphSource(model, logging.getLogger("bench"))(HEIGHT, WIDTH)
    bare = bare_graph_ms(backend, scene.image_rgb, repeats=30)
    work = node_work_ms(backend, scene, repeats=20)
    backend.close()

    parameters = {
        "model.variant": model.variant,
        "model.weights": "random",
        "model.depth_weights": "random",
        "model.input_height": model.input_height,
        "model.input_width": model.input_width,
        "model.graph_dir": str(model.graph_dir),
        "backend.threads": args.threads,
        "qos.reliable": args.reliable,
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
            camera.reset()
            camera.run_paced(args.paced_frames)
            paced = np.array(camera.latency_ms)
            camera.spin(1.5)  # the node's /diagnostics of the paced run
            in_node_paced = dict(camera.node_values)
            camera.reset()
            camera.run_at_rate(args.rate, args.seconds)
            at_rate = np.array(camera.latency_ms)
            received = np.array(camera.received_at)
            camera.spin(1.5)  # the node's /diagnostics of the run at rate
            in_node = camera.node_values
        finally:
            camera.close()
            node.send_signal(2)
            node.wait(timeout=30)

    output_hz = (len(received) - 1) / (received[-1] - received[0]) if len(received) > 1 else 0.0
    print(summary("bare graph call (Backend.infer, baseline)", bare))
    print(summary("node-side work per frame, no DDS (in-process)", work))
    print(summary("node, paced (image published -> objects)", paced, f"of {args.paced_frames} frames"))
    print(summary(f"node, camera at {args.rate:g} Hz", at_rate, f"output {output_hz:.1f} Hz"))
    graph_in_node = float(in_node_paced.get("inference median (ms)", "nan"))
    print(f"graph call inside the node, paced (its /diagnostics): median {graph_in_node:.1f} ms")
    print(f"node overhead, paced: {np.median(paced) - graph_in_node:+.1f} ms over the graph call in the node, ")
    print(f"                      {np.median(paced) - np.median(bare):+.1f} ms over the bare call measured alone")
    print(
        f"at {args.rate:g} Hz the node's /diagnostics say: graph call median {in_node.get('inference median (ms)')} ms, "
        f"frames received {in_node.get('frames received')}, published {in_node.get('frames published')}, "
        f"dropped {in_node.get('frames dropped')} (counts since start)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
