"""Where the node's compiled graphs come from: an exported file in the graph directory, else an export.

Graph files live in `<graph_dir>/<weights tag>/<graph key>.onnx`, so a graph exported from random
weights is never picked up by a node configured with real ones. A node on the TensorRT path with
graphs exported beforehand (`dinov2-ros export`) needs no torch; exporting on first use needs torch
and the weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dinov2_ros.runtime.backend import Backend
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.onnx_export import graph_class_names, load_graph_spec

DETECTORS = ("exemplar", "center", "none")


@dataclass(frozen=True)
class ModelSettings:
    """What the node runs, as its read-only parameters give it."""

    variant: str
    weights: str  # "pretrained", "random" or a checkpoint path; never empty
    depth_weights: str  # "" for no depth head, else as `weights`
    depth_dataset: str
    depth_kind: str
    detector: str
    input_height: int
    input_width: int
    resize: str
    top_k: int
    max_prototypes: int
    max_classes: int
    backend: str
    device: str
    threads: int
    graph_dir: Path
    detector_weights: str = ""  # a `dinov2-ros train-detector` checkpoint, for detector "center"

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError(
                "model.weights is empty: set it to a checkpoint path, 'pretrained' (Meta's released file), "
                "or 'random' (random weights, for tests and demos only)"
            )
        if self.detector not in DETECTORS:
            raise ValueError(f"model.detector must be one of {DETECTORS}, got {self.detector!r}")
        if self.detector == "center" and not self.detector_weights:
            raise ValueError(
                "model.detector is 'center' but model.detector_weights is empty: give the checkpoint written by "
                "`dinov2-ros train-detector`, or use model.detector 'exemplar' (classes taught at run time)"
            )
        if self.detector == "none" and not self.depth_weights:
            raise ValueError(
                "model.detector is 'none' and model.depth_weights is empty: the graph would output nothing"
            )

    @property
    def weights_tag(self) -> str:
        """Names the weights in graph file paths: 'random', 'pretrained' or the checkpoint's file stem."""
        tags = [_tag(self.weights)]
        if self.depth_weights:
            tags.append(f"depth-{self.depth_dataset}-{self.depth_kind}-{_tag(self.depth_weights)}")
        if self.detector == "center":
            tags.append(f"center-{_tag(self.detector_weights)}")
        return "+".join(tags)

    @property
    def uses_random_weights(self) -> bool:
        return "random" in (self.weights, self.depth_weights)

    def describe(self) -> str:
        depth = (
            f"depth head {self.depth_dataset}/{self.depth_kind} weights '{self.depth_weights}'"
            if self.depth_weights
            else "no depth head"
        )
        detector = f"center head '{self.detector_weights}'" if self.detector == "center" else self.detector
        return (
            f"backend {self.backend} ({self.device}), encoder {self.variant} weights '{self.weights}', {depth}, "
            f"detector {detector}, input {self.input_width}x{self.input_height} ({self.resize})"
        )

    def spec_for(self, height: int, width: int, embed_dim: int) -> GraphSpec:
        heads = (("depth",) if self.depth_weights else ()) + ((self.detector,) if self.detector != "none" else ())
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
            embed_dim=embed_dim,
            features=self.detector == "exemplar",
        )


def _tag(weights: str) -> str:
    return weights if weights in ("random", "pretrained") else Path(weights).stem


def exported_graphs(directory: Path, log: logging.Logger) -> list[tuple[Path, GraphSpec]]:
    """Every dinov2_ros graph file in `directory` with its spec; foreign or stale files are skipped."""
    found = []
    for path in sorted(directory.glob("*.onnx")) if directory.is_dir() else ():
        try:
            found.append((path, load_graph_spec(path)))
        except ValueError as error:  # ForeignGraphError is a ValueError
            log.warning("skipping %s: %s", path, error)
    return found


class GraphSource:
    """Opens the backend for a camera resolution, exporting the graph first when none is cached."""

    def __init__(self, settings: ModelSettings, log: logging.Logger | None = None) -> None:
        self.settings = settings
        self.log = log or logging.getLogger(__name__)
        self.directory = settings.graph_dir.expanduser() / settings.weights_tag

    def embed_dim(self, graphs: list[tuple[Path, GraphSpec]] | None = None) -> int:
        """The encoder width: from an exported graph of this variant, else from the model's variant table.

        Graph files come first so that running exported graphs never imports torch. `graphs`: the
        directory's `exported_graphs`, when the caller has already read them.
        """
        if graphs is None:
            graphs = exported_graphs(self.directory, self.log)
        for _, spec in graphs:
            if spec.variant == self.settings.variant:
                return spec.embed_dim
        from dinov2_ros.model.variants import VARIANTS

        if self.settings.variant not in VARIANTS:
            raise ValueError(
                f"model.variant {self.settings.variant!r} is not a released DINOv2 variant ({', '.join(VARIANTS)}) "
                f"and {self.directory} holds no graph exported for it"
            )
        return VARIANTS[self.settings.variant].embed_dim

    def __call__(self, height: int, width: int) -> Backend:
        from dinov2_ros.runtime.factory import create_backend

        s = self.settings
        graphs = exported_graphs(self.directory, self.log)  # reads every file: once per camera size
        wanted = s.spec_for(height, width, self.embed_dim(graphs))
        if s.backend == "torch":
            self.log.info("building the PyTorch graph for %dx%d frames", width, height)
            return create_backend("torch", wanted, graph=self._build_graph(wanted)[0], device=s.device)
        path = next((p for p, spec in graphs if spec == wanted), None)
        if path is None:
            path = self._export(wanted)
        self.log.info("graph for %dx%d frames: %s", width, height, path)
        if s.backend == "onnxruntime":
            return create_backend("onnxruntime", wanted, onnx_path=path, device=s.device, threads=s.threads)
        return create_backend(s.backend, wanted, onnx_path=path, cache_dir=self.directory / "engines")

    def class_names(self) -> tuple[str, ...]:
        """A trained head's class names by id: from an exported graph (no torch), else its checkpoint."""
        for path, spec in exported_graphs(self.directory, self.log):
            names = graph_class_names(path) if spec.detection == "center" else None
            if spec.variant == self.settings.variant and names is not None:
                return names
        return self._center_head(self.settings.top_k)[1]

    def _export(self, spec: GraphSpec) -> Path:
        from dinov2_ros.runtime.onnx_export import export_graph

        path = self.directory / f"{spec.key}.onnx"
        self.log.info(
            "exporting graph '%s' to %s (once per camera size; takes a minute for vits14) ...", spec.key, path
        )
        graph, class_names = self._build_graph(spec)
        export_graph(graph, path, class_names=class_names)
        return path

    def _detection_head(self, spec: GraphSpec):
        """The detection head module for `spec` and, for a trained head, its class names."""
        if spec.exemplar:
            from dinov2_ros.model.exemplar_head import ExemplarHead

            return ExemplarHead(max_classes=self.settings.max_classes, top_k=spec.top_k), None
        if spec.detection == "center":
            return self._center_head(spec.top_k)
        return None, None

    def _center_head(self, top_k: int):
        from dinov2_ros.model.center_head import load_center_head
        from dinov2_ros.perception.prototypes import encoder_name

        s = self.settings
        # train-detector names the encoder by variant and weights and records its input size and resize
        head, info = load_center_head(
            Path(s.detector_weights).expanduser(),
            encoder_name(s.variant, s.weights),
            (s.input_height, s.input_width),
            top_k=top_k,
            expected_resize=s.resize,
        )
        return head, info.class_names

    def _build_graph(self, spec: GraphSpec):
        """The PerceptionGraph for `spec` (imports torch) and a trained head's class names, or None."""
        from dinov2_ros.runtime.factory import build_perception_graph

        s = self.settings
        head, class_names = self._detection_head(spec)
        graph = build_perception_graph(
            spec, s.weights, s.depth_weights or None, s.depth_dataset, s.depth_kind, detection_head=head
        )
        return graph, class_names
