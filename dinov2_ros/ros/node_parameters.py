"""Every parameter of the perception node, declared once with its descriptor, read into settings.

Model and backend parameters are read-only (changing them means another graph: restart the node);
thresholds and output options can change at run time (RUNTIME_PARAMETERS); rclpy refuses values
outside a descriptor's range before the node's set-parameters callback sees them. The synthetic
camera declares its parameters with the same `Setting`/`declare`; the model and backend
ones come from runtime/model_settings.py, which the CLI reads too. config/perception.yaml documents each one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from dinov2_ros.runtime.model_settings import MODEL_SETTINGS, ModelSettings, Setting

TRANSPORTS = ("raw", "compressed")

NODE_PARAMETERS: dict[str, Setting] = {
    "autostart": Setting(
        True, "the executable configures and activates the node itself; false: a lifecycle manager does", True
    ),
    "cameras": Setting(["camera"], "camera names; with several, each camera's topics live under its name", True),
    **MODEL_SETTINGS,  # model.* and backend.*: declared once for the node and the CLI
    "prototypes.file": Setting("", "taught classes: loaded at start when it exists, saved after every change", True),
    "dinotxt.prompt_templates": Setting(
        ["a photo of a {}."],
        "with dino.txt: the texts a prompt is set into ({} is the prompt); a class's prototype is their mean",
    ),
    "detection.score_threshold": Setting(0.5, "minimum score of a reported detection", range=(0.0, 1.0)),
    "tracking.enabled": Setting(
        True, "objects carry per-camera track ids (ByteTrack); false: ids number each frame's objects", True
    ),
    "tracking.lost_timeout_s": Setting(
        1.0, "how long (s) an unseen part keeps its track id before it expires", True, (0.05, 600.0)
    ),
    "tracking.low_score_threshold": Setting(
        0.1,
        "a tracked part stays published while its score is at least this, below detection.score_threshold",
        True,
        (0.0, 1.0),
    ),
    "depth_completion.enabled": Setting(
        True,
        "with a camera's depth image: fill its holes with the model's depth fitted to it, publish "
        "dinov2/depth/completed/image and lift objects from it",
    ),
    "pairing.tolerance_s": Setting(
        0.0, "largest stamp difference between image and camera_info/depth", range=(0.0, 1.0)
    ),
    "pairing.timeout_s": Setting(1.0, "how long an image waits for its camera_info/depth", range=(0.01, 60.0)),
    "scheduling.wait_for_new_frame": Setting(
        True, "start inference only on a frame that arrived while idle (latency) rather than at once (rate)"
    ),
    "scheduling.batch_wait_s": Setting(
        0.005,
        "how long a batch waits for every camera's new image with its camera_info (at most a quarter of the "
        "recent graph call)",
        range=(0.0, 1.0),
    ),
    "output.points": Setting(False, "publish dinov2/points (PointCloud2) from the depth output"),
    "output.points_stride": Setting(4, "use every n-th pixel in each direction for dinov2/points", range=(1, 64)),
    "output.object_points_stride": Setting(
        2, "use every n-th pixel in each direction for dinov2/objects/points", range=(1, 64)
    ),
    "output.debug_max_depth_m": Setting(
        5.0, "depth shown at the end of the colour map in dinov2/debug/image", range=(0.1, 100.0)
    ),
    "graphs.max_open": Setting(
        4, "most camera sizes with an open graph; a frame of a further size is refused", True, (1, 64)
    ),
    "diagnostics.period_s": Setting(1.0, "period of /diagnostics messages", True, (0.1, 60.0)),
    "warnings.throttle_s": Setting(
        5.0, "shortest interval between two warnings of one camera and problem", range=(0.0, 3600.0)
    ),
}
CAMERA_PARAMETERS: dict[str, Setting] = {
    "transport": Setting("raw", "image transport: raw (sensor_msgs/Image) or compressed", True, choices=TRANSPORTS),
    "use_depth": Setting(False, "subscribe to an aligned depth image and lift objects with it", True),
    "rectified": Setting(
        False, "the image is rectified (image_rect): project with CameraInfo P and no distortion", True
    ),
    "width": Setting(
        0, "image width (pixels) the camera sends; its graph is prepared at configure; 0: learn", True, (0, 16384)
    ),
    "height": Setting(
        0, "image height (pixels) the camera sends; 0 (with width 0): learn from the first frame", True, (0, 16384)
    ),
}
# the parameters the node applies while running (validated by their descriptors' ranges)
RUNTIME_PARAMETERS = tuple(name for name, spec in NODE_PARAMETERS.items() if not spec.read_only)


def _descriptor(name: str, spec: Setting) -> ParameterDescriptor:
    description = spec.description + (f" ({' | '.join(spec.choices)})" if spec.choices else "")
    descriptor = ParameterDescriptor(name=name, description=description, read_only=spec.read_only)
    if spec.range is not None:
        low, high = spec.range
        if isinstance(spec.default, float):
            descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high))]
        else:
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    return descriptor


def declare(node: Node, name: str, spec: Setting) -> Any:
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
    rectified: bool
    width: int = 0  # the expected image size in pixels; 0 and 0: learned from the first frame
    height: int = 0

    @property
    def size(self) -> tuple[int, int] | None:
        """The expected (height, width) in pixels, or None when it is learned from the first frame."""
        return (self.height, self.width) if self.width else None


@dataclass(frozen=True)
class NodeSettings:
    cameras: tuple[CameraSettings, ...]
    model: ModelSettings
    prototypes_file: str
    diagnostics_period_s: float
    autostart: bool = True
    max_open_graphs: int = 4
    tracking: bool = True
    lost_timeout_s: float = 1.0
    low_score_threshold: float = 0.1


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
    for camera in cameras:
        if (camera.width == 0) != (camera.height == 0):
            raise ValueError(
                f"parameters {camera.name}.width and {camera.name}.height are {camera.width} and {camera.height}: "
                "set both to the size the camera sends, or both to 0 to learn it from the first frame"
            )
    model = ModelSettings.from_values({**{name: values[name] for name in MODEL_SETTINGS}, "cameras": names})
    return NodeSettings(
        cameras,
        model,
        values["prototypes.file"],
        values["diagnostics.period_s"],
        values["autostart"],
        values["graphs.max_open"],
        values["tracking.enabled"],
        values["tracking.lost_timeout_s"],
        values["tracking.low_score_threshold"],
    )


def _is_topic_token(name: str) -> bool:
    return bool(name) and name[0].isalpha() and all(c.isalnum() or c == "_" for c in name)
