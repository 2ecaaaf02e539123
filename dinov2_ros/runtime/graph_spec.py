"""What one compiled perception graph is: model variant, camera and model-input sizes, heads, top-K.

A GraphSpec fixes every static shape of the exported graph, so it names the ONNX file and keys the
engine cache. It also owns the exact camera <-> model-input mapping that the graph applies, so that
the in-graph maths and the NumPy reference in the tests come from one place.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from dinov2_ros.weights.variants import PATCH_SIZE, input_normalisation

# fields added after graphs were first stored, with the value an older graph has (from_json)
_LATER_FIELDS = ("dinotxt",)
CORE_INPUT = "model_input"  # the core's input (PerceptionCore): the normalised model input, float (N, 3, h, w)
RESIZE_MODES = ("stretch", "letterbox")
DETECTION_HEADS = ("exemplar", "center")
HEADS = ("depth", *DETECTION_HEADS)


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one graph input or output; `None` marks the dynamic batch axis."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class ResizeMapping:
    """The affine map from camera pixels to model-input pixels, `u_in = scale * u_cam + offset`.

    Coordinates are continuous with pixel edges on integers (pixel i covers [i, i+1)), the convention
    of half-pixel bilinear resizing, so boxes map exactly in both directions. The camera image is
    resized to `content_height x content_width` and placed at `(offset_y, offset_x)` in the model input.
    """

    scale_x: float
    scale_y: float
    offset_x: int
    offset_y: int
    content_width: int
    content_height: int

    def camera_to_input(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) camera (x, y) points to model-input pixels."""
        xy = np.asarray(xy, dtype=np.float64)
        return xy * (self.scale_x, self.scale_y) + (self.offset_x, self.offset_y)

    def input_to_camera(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) model-input (x, y) points back to camera pixels."""
        xy = np.asarray(xy, dtype=np.float64)
        return (xy - (self.offset_x, self.offset_y)) / (self.scale_x, self.scale_y)


@dataclass(frozen=True)
class GraphSpec:
    """Static description of one perception graph (see docs/architecture.md for its inputs and outputs)."""

    variant: str
    camera_height: int
    camera_width: int
    input_height: int
    input_width: int
    resize: str = "stretch"
    heads: tuple[str, ...] = ("depth",)
    top_k: int = 100
    max_prototypes: int = 64
    max_classes: int = 16  # class ids the exemplar head reports; 0 (canonical) without it
    embed_dim: int = 384
    features: bool = False
    # the patch features (exemplar head, features output) are dino.txt's vision head tokens, the space
    # where text prompts are prototypes too (model/dinotxt.py); the depth head still reads the backbone
    dinotxt: bool = False

    def __post_init__(self) -> None:
        for name in ("camera_height", "camera_width", "input_height", "input_width", "top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"GraphSpec.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("input_height", "input_width"):
            value = getattr(self, name)
            if value % PATCH_SIZE:
                lower = value // PATCH_SIZE * PATCH_SIZE
                raise ValueError(
                    f"GraphSpec.{name} must be a multiple of {PATCH_SIZE}, got {value}; "
                    f"use {max(lower, PATCH_SIZE)} or {lower + PATCH_SIZE}"
                )
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"GraphSpec.resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        unknown = [head for head in self.heads if head not in HEADS]
        if unknown:
            raise ValueError(f"GraphSpec.heads may contain {HEADS}, got unknown {unknown}")
        if sum(head in DETECTION_HEADS for head in self.heads) > 1:
            raise ValueError(f"GraphSpec.heads may hold one detection head of {DETECTION_HEADS}, got {self.heads}")
        if self.exemplar and (self.max_prototypes < 1 or self.max_classes < 1):
            raise ValueError(
                "GraphSpec.max_prototypes and max_classes must be >= 1 with the exemplar head, got "
                f"{self.max_prototypes} and {self.max_classes}"
            )
        if not (self.heads or self.features):
            raise ValueError("GraphSpec has no output: give at least one head or features=True")
        if self.dinotxt and not (self.exemplar or self.features):
            raise ValueError(
                "GraphSpec.dinotxt changes the patch features: it needs the exemplar head or features=True"
            )
        # canonical order and values, so equal graphs have equal keys
        object.__setattr__(self, "heads", tuple(head for head in HEADS if head in self.heads))
        if not self.exemplar:
            object.__setattr__(self, "max_classes", 0)

    @property
    def depth(self) -> bool:
        return "depth" in self.heads

    @property
    def detection(self) -> str | None:
        """The detection head's name, or None when the graph has none."""
        return next((head for head in self.heads if head in DETECTION_HEADS), None)

    @property
    def exemplar(self) -> bool:
        return self.detection == "exemplar"

    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per RGB channel the graph normalises its input with: the variant's (weights.variants)."""
        return input_normalisation(self.variant)

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (h, w) of the model input."""
        return self.input_height // PATCH_SIZE, self.input_width // PATCH_SIZE

    @property
    def key(self) -> str:
        """A stable, file-name-safe string naming this graph (ONNX files, engine cache entries)."""
        return self._key(camera=True)

    @property
    def core_key(self) -> str:
        """`key` of this graph's core (`core()`): without the camera size and resize mode, which the
        core does not depend on, so a core's file never reads as a camera's graph."""
        return "core-" + self._key(camera=False)

    def _key(self, camera: bool) -> str:
        heads = "+".join(self.heads) or "none"
        parts = [self.variant]
        if camera:
            parts.append(f"cam{self.camera_width}x{self.camera_height}")
        parts.append(f"in{self.input_width}x{self.input_height}")
        if camera:
            parts.append(self.resize)
        parts += [heads, f"d{self.embed_dim}"]
        if self.detection:
            parts.append(f"k{self.top_k}")
        if self.exemplar:
            parts += [f"p{self.max_prototypes}", f"c{self.max_classes}"]
        if self.features:
            parts.append("feat")
        if self.dinotxt:
            parts.append("dinotxt")
        return "-".join(parts)

    def differences(self, other: GraphSpec) -> list[str]:
        """Readable `field other -> self` for each field in which `other` differs from this spec."""
        return [
            f"{field.name} {getattr(other, field.name)!r} -> {getattr(self, field.name)!r}"
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(other, field.name)
        ]

    def mapping(self) -> ResizeMapping:
        """The exact camera -> model-input mapping the graph applies."""
        if self.resize == "stretch":
            return ResizeMapping(
                scale_x=self.input_width / self.camera_width,
                scale_y=self.input_height / self.camera_height,
                offset_x=0,
                offset_y=0,
                content_width=self.input_width,
                content_height=self.input_height,
            )
        scale = min(self.input_width / self.camera_width, self.input_height / self.camera_height)
        content_width = min(self.input_width, max(1, round(self.camera_width * scale)))
        content_height = min(self.input_height, max(1, round(self.camera_height * scale)))
        return ResizeMapping(
            scale_x=content_width / self.camera_width,
            scale_y=content_height / self.camera_height,
            offset_x=(self.input_width - content_width) // 2,
            offset_y=(self.input_height - content_height) // 2,
            content_width=content_width,
            content_height=content_height,
        )

    def input_specs(self) -> tuple[TensorSpec, ...]:
        specs = [TensorSpec("images", np.dtype(np.uint8), (None, self.camera_height, self.camera_width, 3))]
        if self.exemplar:
            specs += [
                # per frame, so one batch may hold frames of different classes (PER_FRAME_INPUTS)
                TensorSpec("prototypes", np.dtype(np.float32), (None, self.max_prototypes, self.embed_dim)),
                TensorSpec("prototype_classes", np.dtype(np.int32), (None, self.max_prototypes)),
            ]
        return tuple(specs)

    def output_specs(self) -> tuple[TensorSpec, ...]:
        h, w = self.grid
        specs = []
        if self.depth:
            specs.append(TensorSpec("depth", np.dtype(np.float32), (None, self.camera_height, self.camera_width)))
        if self.detection:
            specs += [
                TensorSpec("detections", np.dtype(np.float32), (None, self.top_k, 6)),
                TensorSpec("masks", np.dtype(np.float32), (None, self.top_k, h, w)),
            ]
        if self.features:
            specs.append(TensorSpec("features", np.dtype(np.float32), (None, self.embed_dim, h, w)))
        return tuple(specs)

    def core(self) -> GraphSpec:
        """The spec of this graph's camera-independent core (`PerceptionCore`): the same model and input
        size for a camera that delivers model-input frames. The graphs of every camera size and
        resize mode share it, so it keys the stored core they are composed from."""
        return dataclasses.replace(
            self, camera_height=self.input_height, camera_width=self.input_width, resize="stretch"
        )

    def core_output_specs(self) -> tuple[TensorSpec, ...]:
        """The core's outputs, in model-input pixels (see `PerceptionCore`)."""
        h, w = self.grid
        specs = []
        if self.depth:
            specs.append(
                TensorSpec("input_depth", np.dtype(np.float32), (None, 1, self.input_height, self.input_width))
            )
        if self.detection:
            specs += [
                TensorSpec("input_boxes", np.dtype(np.float32), (None, self.top_k, 4)),
                TensorSpec("scores", np.dtype(np.float32), (None, self.top_k)),
                TensorSpec("classes", np.dtype(np.float32), (None, self.top_k)),
                TensorSpec("masks", np.dtype(np.float32), (None, self.top_k, h, w)),
            ]
        if self.features:
            specs.append(TensorSpec("features", np.dtype(np.float32), (None, self.embed_dim, h, w)))
        return tuple(specs)

    def core_output_names(self) -> tuple[str, ...]:
        return tuple(output.name for output in self.core_output_specs())

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GraphSpec:
        """Parse `to_json` output (of this version, or of an older one without the later fields, which
        take their defaults); raises ValueError naming the problem for anything else."""
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"GraphSpec JSON is not valid JSON ({error}); re-export the graph") from error
        expected = {field.name for field in dataclasses.fields(cls)}
        if isinstance(fields, dict):
            fields = {name: False for name in _LATER_FIELDS} | fields
        if not isinstance(fields, dict) or set(fields) != expected:
            found = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
            raise ValueError(f"GraphSpec JSON must have the fields {sorted(expected)}, found {found}")
        fields["heads"] = tuple(fields["heads"])
        return cls(**fields)
