"""Helpers for the node tests: tiny graphs in the node's graph directory, parameter files, camera
messages, a test node that publishes and records, and the node in a subprocess.

The graphs are the real exported perception graph (tiny DINOv2 encoder with explicitly random
weights, linear depth head, exemplar head) run by ONNX Runtime; nothing is faked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
import torch
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from dinov2_ros.model import DinoVisionTransformer, LinearDepthHead
from dinov2_ros.model.heads.exemplar import ExemplarHead
from dinov2_ros.model.perception_graph import PerceptionGraph
from dinov2_ros.ros.image_conversion import array_to_image
from dinov2_ros.runtime.artifact_store import ArtifactStore
from dinov2_ros.runtime.model_settings import ModelSettings
from dinov2_ros.runtime.provenance import provenance_of
from dinov2_ros.tools.demo.synthetic_camera_node import camera_info_for
from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator

REPO = Path(__file__).resolve().parents[2]
# camera sizes (height, width) the node tests use, per tiny encoder (the graph_dir fixture exports them)
GRAPH_SIZES = {"tiny": [(120, 160), (96, 128)], "slow": [(480, 640)]}
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)

# two encoders: "tiny" (fast, most tests) and "slow" (about 75 ms a frame on a quiet 2-core machine:
# three 40 Hz camera periods, so the camera outruns it even when best-effort DDS loses some frames)
ENCODERS = {
    "tiny": dict(embed_dim=32, depth=2, input=(112, 112), taps=(0, 1)),
    "slow": dict(embed_dim=128, depth=8, input=(336, 448), taps=(6, 7)),
}


def model_parameters(graph_dir: Path, encoder: str = "tiny") -> dict[str, object]:
    """Node parameters that select a tiny encoder's exported graphs, random weights asked for explicitly."""
    config = ENCODERS[encoder]
    return {
        "model.variant": encoder,
        "model.weights": "random",
        "model.depth_weights": "random",
        "model.depth_kind": "linear",
        "model.input_height": config["input"][0],
        "model.input_width": config["input"][1],
        "model.top_k": 8,
        "model.max_prototypes": 8,
        "model.max_classes": 4,
        "model.graph_dir": str(graph_dir),
        "backend.threads": 1,
    }


def settings_for(parameters: dict[str, object]) -> ModelSettings:
    """The node's ModelSettings for these parameters, as declare_parameters reads them."""
    return ModelSettings.from_values({name: value for name, value in parameters.items() if name != "prototypes.file"})


def store_graph(graph: PerceptionGraph, settings: ModelSettings, class_names=None) -> Path:
    """Export `graph` into the artifact store of `settings`, named and stamped as the node expects."""
    from dinov2_ros.export.core_export import export_graph

    provenance = provenance_of(settings)
    path = ArtifactStore(settings.graph_dir).graph_path(graph.spec, provenance)
    return export_graph(graph.eval(), path, check=False, class_names=class_names, provenance=provenance.to_json())


def export_tiny_graphs(graph_dir: Path, encoder: str, sizes: list[tuple[int, int]]) -> None:
    """Export `encoder`'s graph for each (height, width) where the node looks for it."""
    config = ENCODERS[encoder]
    settings = settings_for(model_parameters(graph_dir, encoder))
    for height, width in sizes:
        spec = settings.spec_for(height, width, config["embed_dim"])
        torch.manual_seed(0)
        backbone = DinoVisionTransformer(config["embed_dim"], config["depth"], 2, img_size=112)
        backbone.init_weights()
        depth_head = LinearDepthHead(config["embed_dim"], config["taps"], 0.001, 10.0)
        store_graph(PerceptionGraph(spec, backbone, depth_head, ExemplarHead(max_classes=4, top_k=8)), settings)


def export_tiny_center_graph(graph_dir: Path, checkpoint: Path, class_names: tuple[str, ...], size) -> dict:
    """A trained-head checkpoint as `dinov2-ros train-detector` writes it (random weights, asked for),
    and the tiny encoder's graph with that head where the node looks for it; the node's parameters."""
    from dinov2_ros.model.heads.center import CenterHead, CenterHeadInfo, save_center_head

    config = ENCODERS["tiny"]
    torch.manual_seed(0)
    head = CenterHead(config["embed_dim"], len(class_names), hidden_dim=8, top_k=8)
    info = CenterHeadInfo("tiny:random", config["input"], "stretch", class_names, config["embed_dim"], 8)
    save_center_head(checkpoint, head, info)
    parameters = model_parameters(graph_dir) | {"model.detector": "center", "model.detector_weights": str(checkpoint)}
    settings = settings_for(parameters)
    spec = settings.spec_for(*size, config["embed_dim"])
    backbone = DinoVisionTransformer(config["embed_dim"], config["depth"], 2, img_size=112)
    backbone.init_weights()
    depth_head = LinearDepthHead(config["embed_dim"], config["taps"], 0.001, 10.0)
    store_graph(PerceptionGraph(spec, backbone, depth_head, head.eval()), settings, class_names)
    return parameters


def export_tiny_dinotxt_graphs(graph_dir: Path, sizes: list[tuple[int, int]]) -> dict[str, object]:
    """The tiny encoder with dino.txt's vision head (random weights, asked for) for each (height, width),
    and the tiny text encoder graph with its vocabulary, where the node looks for them; the node's
    parameters."""
    from tiny_graphs import tiny_text_encoder, tiny_vision_head, write_tiny_vocabulary

    from dinov2_ros.export.text_encoder_export import export_text_encoder, text_encoder_path
    from dinov2_ros.runtime.text_encoder import text_encoder_identity

    config = ENCODERS["tiny"]
    parameters = model_parameters(graph_dir) | {"model.dinotxt_weights": "random"}
    settings = settings_for(parameters)
    for size in sizes:
        spec = settings.spec_for(*size, config["embed_dim"])
        torch.manual_seed(0)
        backbone = DinoVisionTransformer(config["embed_dim"], config["depth"], 2, img_size=112)
        backbone.init_weights()
        depth_head = LinearDepthHead(config["embed_dim"], config["taps"], 0.001, 10.0)
        head = ExemplarHead(max_classes=4, top_k=8)
        store_graph(PerceptionGraph(spec, backbone, depth_head, head, tiny_vision_head()), settings)
    identity = text_encoder_identity(settings)
    vocabulary = write_tiny_vocabulary(graph_dir / "vocabulary.txt.gz")
    export_text_encoder(tiny_text_encoder(), vocabulary, text_encoder_path(graph_dir, identity), identity)
    return parameters


def write_parameters(path: Path, values: dict[str, object]) -> Path:
    """A ROS 2 parameter file applying `values` to every node."""
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
    return path


class SceneCamera:
    """Synthetic scenes as the messages of one camera: image, camera_info and aligned depth."""

    def __init__(self, width: int, height: int, frame_id: str = "camera_optical_frame", seed: int = 3) -> None:
        self.generator = SyntheticSceneGenerator(seed, width, height)
        self.scene = self.generator.render(0)
        self.width, self.height, self.frame_id = width, height, frame_id

    def header(self, stamp_ns: int) -> Header:
        header = Header(frame_id=self.frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return header

    def messages(self, stamp_ns: int):
        header = self.header(stamp_ns)
        return (
            array_to_image(self.scene.image_rgb, "rgb8", header),
            camera_info_for(self.generator.K, self.width, self.height, header),
            array_to_image(self.scene.depth, "32FC1", header),
        )


class Harness:
    """A test node on its own executor: publishes camera messages and records what arrives."""

    def __init__(self, context, name: str = "test_harness") -> None:
        self.context = context
        self.node = rclpy.create_node(name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = defaultdict(list)
        self.arrival_ns: dict[str, list[int]] = defaultdict(list)

    def add_node(self, node) -> None:
        self.executor.add_node(node)

    def publisher(self, msg_type, topic: str, qos: QoSProfile = RELIABLE):
        return self.node.create_publisher(msg_type, topic, qos)

    def record(self, msg_type, topic: str, qos: QoSProfile = RELIABLE) -> list:
        def store(msg) -> None:
            self.received[topic].append(msg)
            self.arrival_ns[topic].append(time.time_ns())

        self.node.create_subscription(msg_type, topic, store, qos)
        return self.received[topic]

    def spin_until(self, done: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def call(self, client, request, timeout_s: float = 10.0):
        """`request` to `client`'s service, spinning until the response (asserted to come)."""
        assert client.wait_for_service(timeout_sec=timeout_s), client.srv_name
        future = client.call_async(request)
        assert self.spin_until(future.done, timeout_s), f"no response from {client.srv_name}"
        return future.result()

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def reliable_inputs(namespace: str, cameras: list[str]) -> dict[str, str]:
    """The node parameters that make its camera subscriptions reliable, through rclpy's standard QoS
    overrides (`qos_overrides.<topic>.subscription.reliability`): the test publishers are reliable,
    so no frame is lost to best effort on a busy machine."""
    prefixes = [f"/{namespace}" if namespace else ""]
    if len(cameras) > 1:
        prefixes = [f"{prefixes[0]}/{camera}" for camera in cameras]
    topics = ("image", "image/compressed", "camera_info", "depth/image")
    return {
        f"qos_overrides.{prefix}/{topic}.subscription.reliability": "reliable"
        for prefix in prefixes
        for topic in topics
    }


def start_node(
    context, graph_dir: Path, namespace: str = "", encoder: str = "tiny", reliable: bool = False, **overrides
):
    """perception_node in this process on the session's graphs of `encoder`, with `overrides` (and,
    with `reliable`, reliable camera subscriptions), configured and active as the executable brings
    itself up (autostart); destroyed if that fails."""
    from dinov2_ros.ros.node_main import started
    from dinov2_ros.ros.perception_node import PerceptionNode

    values = model_parameters(graph_dir, encoder) | overrides
    if reliable:
        values |= reliable_inputs(namespace, list(values.get("cameras", ["camera"])))
    parameters = [Parameter(name, value=value) for name, value in values.items()]
    return started(PerceptionNode(context=context, namespace=namespace, parameter_overrides=parameters))


def start_node_process(
    arguments: list[str], log_path: Path, python_path: tuple[Path, ...] = (), env: dict[str, str] | None = None
) -> subprocess.Popen:
    """perception_node in its own process (and process group, as a terminal or launch starts it) with
    the venv's python (the ROS wheels re-exec it once); `python_path` folders come before the
    repository on its module path; `env` adds to the environment."""
    log = log_path.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "dinov2_ros.ros.perception_node", "--ros-args", *arguments],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (*python_path, REPO))), **(env or {})},
        start_new_session=True,
    )


def process_group(process: subprocess.Popen) -> list[int]:
    """The pids still alive in `process`'s process group and among its children (Linux /proc)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            state, parent, group = fields[0], int(fields[1]), int(fields[2])
            if state != "Z" and (group == process.pid or parent == process.pid):
                alive.append(int(entry.name))
    return alive


def stop_node_process(process: subprocess.Popen) -> int:
    process.send_signal(2)  # SIGINT, like Ctrl-C
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def pixels(msg) -> np.ndarray:
    channels = {"rgb8": 3, "32FC1": 1}[msg.encoding]
    dtype = np.float32 if msg.encoding == "32FC1" else np.uint8
    return np.frombuffer(msg.data, dtype).reshape(msg.height, msg.width, channels).squeeze()
