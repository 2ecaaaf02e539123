"""The model and backend settings, declared once for the node and the CLI.

Each entry of MODEL_SETTINGS is one read-only parameter of perception_node (`model.variant`,
`backend.kind`, ...) and one option of `dinov2-ros export | build-engine | bench` (`--variant`,
`--backend`, ...), with one default, description, range and list of choices. Both read the same ROS 2
parameter file (`config/perception.yaml`; the CLI's `--params-file`), so a graph exported on a
workstation is the graph the node looks for. ModelSettings is what the values resolve to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.weights.variants import DINOTXT, VARIANTS

BACKENDS = ("onnxruntime", "tensorrt", "torch", "triton")
DETECTORS = ("exemplar", "center", "none")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
# what each backend can run; "auto" is the first
BACKEND_PRECISIONS = {
    "tensorrt": ("fp16", "fp32", "int8"),
    "onnxruntime": ("fp32", "int8"),
    "torch": ("fp32", "fp16"),
    "triton": ("fp32", "int8"),  # the stored graph the server's model repository was written from
}
DEFAULT_GRAPH_DIR = "~/.cache/dinov2_ros/graphs"
_GROUPS = ("model.", "backend.")


@dataclass(frozen=True)
class Setting:
    """One parameter: default (its type is the parameter's), description, read-only, range, choices.

    `field` names the ModelSettings field a model or backend setting fills (empty for node-only ones).
    """

    default: Any
    description: str
    read_only: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    field: str = ""

    @property
    def flag(self) -> str:
        """The CLI option of a model setting: `--` and its field with dashes (`--depth-weights`)."""
        return "--" + self.field.replace("_", "-")


def _model(field: str, default: Any, description: str, range=None, choices: tuple[str, ...] = ()) -> Setting:
    return Setting(default, description, True, range, choices, field)


MODEL_SETTINGS: dict[str, Setting] = {
    "model.variant": _model("variant", "vits14", "DINOv2 encoder: vits14, vitb14, vitl14, vitg14 or a *_reg4 variant"),
    "model.weights": _model(
        "weights", "", "encoder weights: a checkpoint path, 'pretrained', or 'random' (demo/tests)"
    ),
    "model.depth_weights": _model("depth_weights", "", "depth head weights like model.weights; empty: no depth head"),
    "model.depth_dataset": _model(
        "depth_dataset", "nyu", "depth head training set: nyu (0-10 m) or kitti (0-80 m)", choices=("nyu", "kitti")
    ),
    "model.depth_kind": _model(
        "depth_kind",
        "linear4",
        "depth head: linear (last block) or linear4 (four blocks)",
        choices=("linear", "linear4"),
    ),
    "model.detector": _model(
        "detector",
        "exemplar",
        "object detector: exemplar (taught by example), center (trained with train-detector) or none",
        choices=DETECTORS,
    ),
    "model.detector_weights": _model(
        "detector_weights", "", "for model.detector center: the train-detector checkpoint"
    ),
    "model.dinotxt_weights": _model(
        "dinotxt_weights",
        "",
        "dino.txt (classes named in words; model.variant vitl14_reg4, detector exemplar): 'pretrained', 'random' "
        "or a <name>_vision_head.pth with <name>_text_encoder.pth beside it; empty: off",
    ),
    "model.input_height": _model("input_height", 224, "model input height in pixels, a multiple of 14", (14, 1036)),
    "model.input_width": _model("input_width", 308, "model input width in pixels, a multiple of 14", (14, 1036)),
    "model.resize": _model(
        "resize", "stretch", "camera image to model input: stretch or letterbox", choices=("stretch", "letterbox")
    ),
    "model.top_k": _model("top_k", 20, "most detections per frame the graph reports", (1, 1000)),
    "model.max_prototypes": _model(
        "max_prototypes", 64, "prototype slots of the exemplar graph (all classes together)", (1, 4096)
    ),
    "model.max_classes": _model("max_classes", 16, "classes the exemplar head distinguishes", (1, 1024)),
    "model.graph_dir": _model("graph_dir", DEFAULT_GRAPH_DIR, "artifact store: exported graphs and TensorRT engines"),
    "backend.kind": _model("backend", "onnxruntime", "inference backend", choices=BACKENDS),
    "backend.device": _model(
        "device", "auto", "auto, cpu or cuda (onnxruntime and torch)", choices=("auto", "cpu", "cuda")
    ),
    "backend.precision": _model(
        "precision",
        "auto",
        "auto (tensorrt fp16, else fp32), fp32, fp16 (tensorrt, torch on cuda) or int8 (onnxruntime, tensorrt)",
        choices=PRECISIONS,
    ),
    "backend.max_batch": _model(
        "max_batch", 4, "most frames per TensorRT engine call; larger batches run in several calls", (1, 64)
    ),
    "backend.opt_batch": _model(
        "opt_batch", 0, "frames per call TensorRT tunes its engine for; 0: one per camera (cameras)", (0, 64)
    ),
    "backend.threads": _model("threads", 0, "ONNX Runtime CPU threads; 0 lets it choose", (0, 256)),
    "backend.calibration": _model(
        "calibration", "", "TensorRT int8: a folder of the cell's frames to calibrate on; empty: synthetic scenes"
    ),
    "backend.triton_url": _model(
        "triton_url", "localhost:8001", "backend.kind triton: the Triton Inference Server's gRPC address (host:port)"
    ),
}


@dataclass(frozen=True)
class ModelSettings:
    """What the node runs and the CLI exports: the values of MODEL_SETTINGS, checked together."""

    variant: str
    weights: str  # "pretrained", "random" or a checkpoint path; never empty
    depth_weights: str  # "" for no depth head, else as `weights`
    depth_dataset: str
    depth_kind: str
    detector: str
    detector_weights: str  # a `dinov2-ros train-detector` checkpoint, for detector "center"
    dinotxt_weights: str  # "" (no dino.txt), "pretrained", "random" or a vision head file
    input_height: int
    input_width: int
    resize: str
    top_k: int
    max_prototypes: int
    max_classes: int
    graph_dir: Path
    backend: str
    device: str
    precision: str
    max_batch: int
    opt_batch: int  # 0 in a parameter file: resolved to the number of cameras by from_values
    threads: int
    calibration: str  # TensorRT int8's calibration frames: a folder, or "" for the synthetic scenes
    triton_url: str = "localhost:8001"  # backend.kind triton: the server's gRPC host:port

    def cli_options(self) -> list[str]:
        """These settings as `dinov2-ros` options (`--variant vits14 --weights ...`), every one spelt out."""
        return [
            option
            for setting in MODEL_SETTINGS.values()
            for option in (setting.flag, str(getattr(self, setting.field)))
        ]

    def __post_init__(self) -> None:
        for name, setting in MODEL_SETTINGS.items():
            value = getattr(self, setting.field)
            if setting.choices and value not in setting.choices:
                raise ValueError(f"{name} must be one of {setting.choices}, got {value!r}")
            if setting.range is not None and not setting.range[0] <= value <= setting.range[1]:
                raise ValueError(f"{name} must be in [{setting.range[0]}, {setting.range[1]}], got {value}")
        if not self.weights:
            raise ValueError(
                "model.weights is empty: set it to a checkpoint path, 'pretrained' (Meta's released file), "
                "or 'random' (random weights, for tests and demos only): the launch argument weights:=..., "
                "-p model.weights:=... with ros2 run, or --weights for dinov2-ros"
            )
        for name in ("input_height", "input_width"):
            if getattr(self, name) % 14:
                raise ValueError(f"model.{name} must be a multiple of 14, got {getattr(self, name)}")
        if self.detector == "center" and not self.detector_weights:
            raise ValueError(
                "model.detector is 'center' but model.detector_weights is empty: give the checkpoint written by "
                "`dinov2-ros train-detector`, or use model.detector 'exemplar' (classes taught at run time)"
            )
        if self.dinotxt_weights and self.detector != "exemplar":
            raise ValueError(
                f"model.dinotxt_weights is set but model.detector is {self.detector!r}: text prompts become "
                "prototypes of the exemplar detector; set model.detector to exemplar, or clear model.dinotxt_weights"
            )
        if self.dinotxt_weights and self.variant in VARIANTS and self.variant != DINOTXT.backbone:
            raise ValueError(
                f"model.dinotxt_weights is set but model.variant is {self.variant!r}: Meta trained dino.txt on "
                f"{DINOTXT.backbone}; set model.variant to {DINOTXT.backbone}, or clear model.dinotxt_weights"
            )
        if self.detector == "none" and not self.depth_weights:
            raise ValueError(
                "model.detector is 'none' and model.depth_weights is empty: the graph would output nothing"
            )
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"backend.opt_batch must be in [1, backend.max_batch = {self.max_batch}] (0 in a parameter file: "
                f"one per camera), got {self.opt_batch}"
            )
        allowed = BACKEND_PRECISIONS[self.backend]
        if self.precision != "auto" and self.precision not in allowed:
            raise ValueError(
                f"backend.precision {self.precision!r} is not available with backend.kind {self.backend!r}; "
                f"use one of {('auto', *allowed)}"
            )
        host, _, port = self.triton_url.rpartition(":")
        if not host or "/" in self.triton_url or not port.isdigit():
            raise ValueError(
                f"backend.triton_url must be the server's gRPC address as host:port (e.g. localhost:8001; no "
                f"scheme, Triton's gRPC port, not its HTTP port 8000), got {self.triton_url!r}"
            )
        object.__setattr__(self, "graph_dir", Path(self.graph_dir).expanduser())

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> ModelSettings:
        """Settings from parameter values by name (`model.variant`, ...); MODEL_SETTINGS defaults fill gaps.

        `backend.opt_batch` 0 becomes the number of names in the node's `cameras` (one when absent),
        at most `backend.max_batch`. Other parameters (the node's own) are ignored; an unknown
        `model.*` or `backend.*` name is a ValueError, so a misspelt setting in a parameter file is
        not silently dropped.
        """
        unknown = sorted(name for name in values if name.startswith(_GROUPS) and name not in MODEL_SETTINGS)
        if unknown:
            raise ValueError(f"unknown model settings {unknown}; known: {sorted(MODEL_SETTINGS)}")
        fields = {s.field: values.get(name, s.default) for name, s in MODEL_SETTINGS.items()}
        if fields["opt_batch"] == 0:
            fields["opt_batch"] = min(len(values.get("cameras") or ["camera"]), fields["max_batch"])
        return cls(**fields)

    def replace(self, **changes: Any) -> ModelSettings:
        return dataclasses.replace(self, **changes)

    @property
    def backend_precision(self) -> str:
        """The precision the backend runs: `precision`, with "auto" resolved for the backend."""
        return BACKEND_PRECISIONS[self.backend][0] if self.precision == "auto" else self.precision

    @property
    def uses_random_weights(self) -> bool:
        return "random" in (self.weights, self.depth_weights, self.dinotxt_weights)

    def describe(self) -> str:
        depth = (
            f"depth head {self.depth_dataset}/{self.depth_kind} weights '{self.depth_weights}'"
            if self.depth_weights
            else "no depth head"
        )
        detector = f"center head '{self.detector_weights}'" if self.detector == "center" else self.detector
        if self.dinotxt_weights:
            detector += f" on dino.txt '{self.dinotxt_weights}'"
        return (
            f"backend {self.backend} (precision {self.backend_precision}, device {self.device}), encoder {self.variant} weights "
            f"'{self.weights}', {depth}, detector {detector}, input {self.input_width}x{self.input_height} "
            f"({self.resize})"
        )

    def spec_for(self, height: int, width: int, embed_dim: int) -> GraphSpec:
        """The GraphSpec of the graph for camera frames of `height` x `width` pixels."""
        heads = (("depth",) if self.depth_weights else ()) + ((self.detector,) if self.detector != "none" else ())
        exemplar = self.detector == "exemplar"
        return GraphSpec(
            variant=self.variant,
            camera_height=height,
            camera_width=width,
            input_height=self.input_height,
            input_width=self.input_width,
            resize=self.resize,
            heads=heads,
            top_k=self.top_k,
            max_prototypes=self.max_prototypes,
            max_classes=self.max_classes if exemplar else 0,
            embed_dim=embed_dim,
            features=exemplar,
            dinotxt=bool(self.dinotxt_weights),
        )


def read_parameter_file(path: str | Path, node_name: str = "dinov2") -> dict[str, Any]:
    """The parameters a ROS 2 parameter file gives the node `node_name`, by dotted name.

    Sections apply in the order ROS 2 applies them: `/**` first, then the node's own (`name` or
    `/namespace/name`, matched on the last part). Nested mappings flatten to dotted names, as
    rcl's YAML parser does (`model: {variant: x}` is `model.variant`). ValueError for a file that is
    not a parameter file.
    """
    import yaml

    path = Path(path).expanduser()
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read the parameter file {path}: {error}") from error
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a ROS 2 parameter file: expected `/**: {{ros__parameters: ...}}`")
    values: dict[str, Any] = {}
    sections = sorted(document.items(), key=lambda item: item[0] != "/**")
    for key, section in sections:
        if key != "/**" and str(key).strip("/").split("/")[-1] != node_name:
            continue
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
            raise ValueError(f"{path}: section {key!r} has no `ros__parameters` mapping")
        values.update(_flatten(section["ros__parameters"]))
    return values


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
