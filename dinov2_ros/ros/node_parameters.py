"""Every parameter of the perception node, declared once with its descriptor, read into settings.

Model and backend parameters are read-only (changing them means another graph: restart the node);
thresholds and output options can change at run time (RUNTIME_PARAMETERS); rclpy refuses values
outside a descriptor's range before the node's set-parameters callback sees them. The synthetic
camera declares its parameters with the same `Spec`/`declare`. config/perception.yaml documents each one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from dinov2_ros.ros.graph_source import DETECTORS, ModelSettings

TRANSPORTS = ("raw", "compressed")
BACKENDS = ("onnxruntime", "tensorrt", "torch")


@dataclass(frozen=True)
class Spec:
    """One parameter: default (its type is the parameter's), description, read-only, range, choices."""

    default: Any
    description: str
    read_only: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()


NODE_PARAMETERS: dict[str, Spec] = {
    "cameras": Spec(["camera"], "camera names; with several, each camera's topics live under its name", True),
    "qos.reliable": Spec(False, "subscribe to cameras with reliable QoS instead of best effort (sensor data)", True),
    "model.variant": Spec("vits14", "DINOv2 encoder: vits14, vitb14, vitl14, vitg14 or a *_reg4 variant", True),
    "model.weights": Spec("", "encoder weights: a checkpoint path, 'pretrained', or 'random' (demo/tests)", True),
    "model.depth_weights": Spec("", "depth head weights like model.weights; empty: no depth head", True),
    "model.depth_dataset": Spec(
        "nyu", "depth head training set: nyu (0-10 m) or kitti (0-80 m)", True, choices=("nyu", "kitti")
    ),
    "model.depth_kind": Spec(
        "linear4", "depth head: linear (last block) or linear4 (four blocks)", True, choices=("linear", "linear4")
    ),
    "model.detector": Spec(
        "exemplar",
        "object detector: exemplar (taught by example), center (trained with train-detector) or none",
        True,
        choices=DETECTORS,
    ),
    "model.detector_weights": Spec("", "for model.detector center: the train-detector checkpoint", True),
    "model.input_height": Spec(224, "model input height in pixels, a multiple of 14", True, (14, 1036)),
    "model.input_width": Spec(308, "model input width in pixels, a multiple of 14", True, (14, 1036)),
    "model.resize": Spec(
        "stretch", "camera image to model input: stretch or letterbox", True, choices=("stretch", "letterbox")
    ),
    "model.top_k": Spec(20, "most detections per frame the graph reports", True, (1, 1000)),
    "model.max_prototypes": Spec(64, "prototype slots of the exemplar graph (all classes together)", True, (1, 4096)),
    "model.max_classes": Spec(16, "classes the exemplar head distinguishes", True, (1, 1024)),
    "model.graph_dir": Spec("~/.cache/dinov2_ros/graphs", "exported graphs and TensorRT engine cache", True),
    "backend.kind": Spec("onnxruntime", "inference backend: onnxruntime, tensorrt or torch", True, choices=BACKENDS),
    "backend.device": Spec("auto", "auto, cpu or cuda (onnxruntime and torch)", True, choices=("auto", "cpu", "cuda")),
    "backend.threads": Spec(0, "ONNX Runtime CPU threads; 0 lets it choose", True, (0, 256)),
    "prototypes.file": Spec("", "taught classes: loaded at start when it exists, saved after every change", True),
    "detection.score_threshold": Spec(0.5, "minimum score of a reported detection", range=(0.0, 1.0)),
    "pairing.tolerance_s": Spec(0.0, "largest stamp difference between image and camera_info/depth", range=(0.0, 1.0)),
    "pairing.timeout_s": Spec(1.0, "how long an image waits for its camera_info/depth", range=(0.01, 60.0)),
    "scheduling.wait_for_new_frame": Spec(
        True, "start inference only on a frame that arrived while idle (latency) rather than at once (rate)"
    ),
    "scheduling.batch_wait_s": Spec(
        0.005, "how long a batch waits for every camera's new image with its camera_info", range=(0.0, 1.0)
    ),
    "output.points": Spec(False, "publish dinov2/points (PointCloud2) from the depth output"),
    "output.points_stride": Spec(4, "use every n-th pixel in each direction for dinov2/points", range=(1, 64)),
    "output.debug_max_depth_m": Spec(
        5.0, "depth shown at the end of the colour map in dinov2/debug_image", range=(0.1, 100.0)
    ),
    "diagnostics.period_s": Spec(1.0, "period of /diagnostics messages", True, (0.1, 60.0)),
    "warnings.throttle_s": Spec(
        5.0, "shortest interval between two warnings of one camera and problem", range=(0.0, 3600.0)
    ),
}
CAMERA_PARAMETERS: dict[str, Spec] = {
    "transport": Spec("raw", "image transport: raw (sensor_msgs/Image) or compressed", True, choices=TRANSPORTS),
    "use_depth": Spec(False, "subscribe to an aligned depth image and lift objects with it", True),
}
# the parameters the node applies while running (validated by their descriptors' ranges)
RUNTIME_PARAMETERS = tuple(name for name, spec in NODE_PARAMETERS.items() if not spec.read_only)


def _descriptor(name: str, spec: Spec) -> ParameterDescriptor:
    description = spec.description + (f" ({' | '.join(spec.choices)})" if spec.choices else "")
    descriptor = ParameterDescriptor(name=name, description=description, read_only=spec.read_only)
    if spec.range is not None:
        low, high = spec.range
        if isinstance(spec.default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high))]
        else:
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    return descriptor


def declare(node: Node, name: str, spec: Spec) -> Any:
    """Declare one parameter with its descriptor (description, read-only, range, choices); its value."""
    value = node.declare_parameter(name, spec.default, _descriptor(name, spec)).value
    if spec.choices and value not in spec.choices:
        raise ValueError(f"parameter {name} must be one of {spec.choices}, got {value!r}")
    return value


@dataclass(frozen=True)
class CameraSettings:
    name: str
    transport: str
    use_depth: bool


@dataclass(frozen=True)
class NodeSettings:
    cameras: tuple[CameraSettings, ...]
    reliable: bool
    model: ModelSettings
    prototypes_file: str
    diagnostics_period_s: float


def declare_parameters(node: Node) -> NodeSettings:
    """Declare every parameter on `node` and return the read-only settings; ValueError for bad values."""
    values = {name: declare(node, name, spec) for name, spec in NODE_PARAMETERS.items()}
    names = list(values["cameras"])
    if not names or len(set(names)) != len(names) or not all(_is_topic_token(name) for name in names):
        raise ValueError(f"parameter cameras must list distinct names made of letters, digits and '_', got {names}")
    cameras = tuple(
        CameraSettings(name, *(declare(node, f"{name}.{key}", spec) for key, spec in CAMERA_PARAMETERS.items()))
        for name in names
    )
    for name in ("model.input_height", "model.input_width"):
        if values[name] % 14:
            raise ValueError(f"parameter {name} must be a multiple of 14, got {values[name]}")
    model = ModelSettings(
        variant=values["model.variant"],
        weights=values["model.weights"],
        depth_weights=values["model.depth_weights"],
        depth_dataset=values["model.depth_dataset"],
        depth_kind=values["model.depth_kind"],
        detector=values["model.detector"],
        input_height=values["model.input_height"],
        input_width=values["model.input_width"],
        resize=values["model.resize"],
        top_k=values["model.top_k"],
        max_prototypes=values["model.max_prototypes"],
        max_classes=values["model.max_classes"],
        backend=values["backend.kind"],
        device=values["backend.device"],
        threads=values["backend.threads"],
        graph_dir=Path(values["model.graph_dir"]),
        detector_weights=values["model.detector_weights"],
    )
    return NodeSettings(
        cameras, values["qos.reliable"], model, values["prototypes.file"], values["diagnostics.period_s"]
    )


def _is_topic_token(name: str) -> bool:
    return bool(name) and name[0].isalpha() and all(c.isalnum() or c == "_" for c in name)
