"""Turns ModelSettings into a ready backend per camera size: a stored graph, else an export, then the engine.

The node and the CLI (`dinov2-ros export`, `build-engine`) both go through GraphSource, so a graph
exported beforehand is the one the node takes. Running stored graphs on ONNX Runtime or TensorRT
imports no torch; exporting needs torch and the weights. Progress and every skipped artifact, with
its reason, are logged on this module's logger (the node forwards it to the ROS log).
"""

from __future__ import annotations

import importlib.util
import logging
import shlex
import time
from pathlib import Path

from dinov2_ros import __version__
from dinov2_ros.model.content_identity import weights_identity
from dinov2_ros.runtime.artifact_store import UNVERIFIED, ArtifactStore, Provenance, mismatches
from dinov2_ros.runtime.backend import Backend
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.model_settings import ModelSettings
from dinov2_ros.runtime.onnx_export import graph_class_names

LOG = logging.getLogger(__name__)


def provenance_of(settings: ModelSettings) -> Provenance:
    """What the graphs of `settings` are made from, by content.

    A checkpoint file is its sha256 (`model.content_identity.weights_identity`, cached per file
    version); "pretrained" is the name of Meta's released file, whose URL never serves other bytes,
    so a robot without the file still finds its graph; "random" is the seeded network. A checkpoint
    path that is not on this machine is UNVERIFIED (matched by the path it was exported from).
    """
    from dinov2_ros.model.variants import get_variant

    def identity(weights: str, pretrained) -> str:
        if weights == "pretrained":
            return f"pretrained:{pretrained().filename}"
        if weights != "random" and not Path(weights).expanduser().is_file():
            return UNVERIFIED
        return weights_identity(Path(weights).expanduser() if weights != "random" else weights)

    s = settings
    identities, sources = {"backbone": "", "depth": "", "detector": ""}, {}
    identities["backbone"] = identity(s.weights, lambda: get_variant(s.variant).checkpoint)
    sources["backbone"] = _source(s.weights)
    if s.depth_weights:
        file = identity(s.depth_weights, lambda: get_variant(s.variant).depth_head_file(s.depth_dataset, s.depth_kind))
        identities["depth"] = file if file == UNVERIFIED else f"{s.depth_dataset}/{s.depth_kind}/{file}"
        sources["depth"] = _source(s.depth_weights)
    if s.detector == "center":
        identities["detector"] = identity(s.detector_weights, None)
        sources["detector"] = _source(s.detector_weights)
    return Provenance(**identities, exporter=f"dinov2_ros {__version__}", sources=sources)


def _source(weights: str) -> str:
    return weights if weights in ("random", "pretrained") else str(Path(weights).expanduser().resolve())


class GraphSource:
    """Opens the backend for a camera resolution (`source(height, width)`), exporting first when needed."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.store = ArtifactStore(settings.graph_dir)
        self.provenance = provenance_of(settings)
        self._embed_dim: int | None = None
        self._skips_logged: set[tuple[str, str]] = set()  # each skipped file once, not per lookup
        for name in self.provenance.unverified:
            LOG.warning(
                "the %s weights %s are not on this machine: a stored graph exported from that path is used "
                "without checking its content",
                name,
                self.provenance.sources[name],
            )

    def embed_dim(self) -> int:
        """The encoder width: from a stored graph or core of this variant, else from the model's variant table.

        Stored graphs come first so that running them never imports torch. Found once: a variant's
        width does not change, and every spec_for would otherwise re-read the store.
        """
        if self._embed_dim is None:
            self._embed_dim = self._find_embed_dim()
        return self._embed_dim

    def _find_embed_dim(self) -> int:
        for _, spec, _ in [*self.store.graphs(), *self.store.cores()]:
            if spec.variant == self.settings.variant:
                return spec.embed_dim
        from dinov2_ros.model.variants import VARIANTS

        if self.settings.variant not in VARIANTS:
            raise ValueError(
                f"model.variant {self.settings.variant!r} is not a released DINOv2 variant ({', '.join(VARIANTS)}) "
                f"and {self.store.directory} holds no graph exported for it"
            )
        return VARIANTS[self.settings.variant].embed_dim

    def spec_for(self, height: int, width: int) -> GraphSpec:
        return self.settings.spec_for(height, width, self.embed_dim())

    def __call__(self, height: int, width: int) -> Backend:
        from dinov2_ros.runtime.factory import create_backend

        s = self.settings
        spec = self.spec_for(height, width)
        precision = s.backend_precision
        if s.backend == "torch":
            LOG.info("building the PyTorch graph for %dx%d frames", width, height)
            return create_backend("torch", spec, graph=self.build_graph(spec)[0], device=s.device, precision=precision)
        if s.backend == "tensorrt":  # fail at once without TensorRT or CUDA, not after a minute's export
            from dinov2_ros.runtime.cuda_runtime import import_cudart, require_cuda
            from dinov2_ros.runtime.tensorrt_build import import_tensorrt

            import_tensorrt()
            require_cuda(import_cudart())
        if s.backend == "onnxruntime":
            path = self.int8_graph(height, width) if precision == "int8" else self.graph(height, width)
            return create_backend("onnxruntime", spec, onnx_path=path, device=s.device, threads=s.threads)
        return create_backend(
            "tensorrt",
            spec,
            onnx_path=self.graph(height, width),
            precision=precision,
            max_batch=s.max_batch,
            cache_dir=self.store.engine_dir,
        )

    def graph(self, height: int, width: int, opset: int | None = None) -> Path:
        """The stored fp32 graph for `height` x `width` frames, exported first when the store has none."""
        spec = self.spec_for(height, width)
        path = self._find(spec, "fp32")
        if path is None:
            path = self._export(spec, opset)
        LOG.info("graph for %dx%d frames: %s", width, height, path)
        return path

    def int8_graph(self, height: int, width: int, opset: int | None = None) -> Path:
        """ONNX Runtime's stored int8 graph for `height` x `width` frames, made when the store has none:
        the int8 core (quantised once from the fp32 core, which is exported first where missing)
        joined to the camera's ends. No fp32 graph of this camera size is written."""
        spec = self.spec_for(height, width)
        path = self._find(spec, "int8")
        if path is None:
            start = time.monotonic()
            path = self._make_int8(spec, opset)
            LOG.info("made the int8 graph '%s' in %.0f s", spec.key, time.monotonic() - start)
        LOG.info("int8 graph for %dx%d frames: %s", width, height, path)
        return path

    def artifacts(self, height: int, width: int, opset: int | None = None) -> list[Path]:
        """The stored files the backend needs for `height` x `width` frames, made where missing.

        The fp32 graph, or for ONNX Runtime at precision int8 the int8 graph. TensorRT engines are
        built by opening the backend (`dinov2-ros build-engine`), on the GPU that will run them.
        """
        if self._runs_int8():
            return [self.int8_graph(height, width, opset)]
        return [self.graph(height, width, opset)]

    def needs_export(self, height: int, width: int) -> bool:
        """Whether opening the backend for `height` x `width` frames would first write a graph to the
        store (an export, which needs torch or a stored core, or ONNX Runtime's int8 graph). False when
        the store holds it, and for the torch backend, which runs its graph unstored."""
        if self.settings.backend == "torch":
            return False
        return self._find(self.spec_for(height, width), "int8" if self._runs_int8() else "fp32") is None

    def _runs_int8(self) -> bool:
        return self.settings.backend == "onnxruntime" and self.settings.backend_precision == "int8"

    def class_names(self) -> tuple[str, ...]:
        """A trained head's class names by id: from a stored graph of this head (no torch), else its checkpoint."""
        for path, spec, metadata in self.store.graphs():
            wanted = self.settings.spec_for(spec.camera_height, spec.camera_width, spec.embed_dim)
            if not mismatches(spec, metadata, wanted, self.provenance):
                names = graph_class_names(path)
                if names is not None:
                    return names
        return self._center_head(self.settings.top_k)[1]

    def _find(self, spec: GraphSpec, precision: str) -> Path | None:
        return self._logged(*self.store.find(spec, self.provenance, precision))

    def _logged(self, path: Path | None, skipped: list[tuple[Path, str]], kind: str = "graph") -> Path | None:
        for other, reason in skipped:
            name = other.name if kind == "graph" else f"{other.parent.name}/{other.name}"
            if (name, reason) not in self._skips_logged:
                self._skips_logged.add((name, reason))
                LOG.info("artifact store: skipping %s %s: %s", kind, name, reason)
        return path

    def _make_int8(self, spec: GraphSpec, opset: int | None) -> Path:
        """The int8 core joined to the camera's ends; in a store with the camera's fp32 graph but
        without its cores, an int8 copy of that graph."""
        from dinov2_ros.runtime.quantize import quantize_graph

        output = self.store.graph_path(spec, self.provenance).with_suffix(".int8.onnx")
        core = self._find_core(spec)
        if core is None and (fp32 := self._find(spec, "fp32")) is not None:
            return quantize_graph(fp32, output)
        int8_core = self._find_core(spec, "int8")
        return self._compose(spec, int8_core, output, lambda: self._int8_core(spec, core, opset), "quantising it again")

    def _int8_core(self, spec: GraphSpec, core: Path | None, opset: int | None) -> Path:
        """Quantise the stored fp32 `core` (exported first where missing or damaged) beside it."""
        from dinov2_ros.runtime.onnx_export import CORE_SPEC_KEY
        from dinov2_ros.runtime.quantize import quantize_graph

        def quantized(fp32_core: Path) -> Path:
            return quantize_graph(fp32_core, fp32_core.with_suffix(".int8.onnx"), key=CORE_SPEC_KEY)

        return self._from_core(core, quantized, lambda: self._export_core(spec, opset), "exporting it again")

    def _find_core(self, spec: GraphSpec, precision: str = "fp32") -> Path | None:
        return self._logged(*self.store.find_core(spec.core(), self.provenance, precision), "core")

    def _export(self, spec: GraphSpec, opset: int | None) -> Path:
        """Compose the graph for `spec` from the stored core of its model and input size, exporting
        that core first (torch, the weights, 20-30 s for vits14 here) when the store lacks it or
        holds it damaged."""
        path = self.store.graph_path(spec, self.provenance)
        start = time.monotonic()
        core = self._find_core(spec)
        if core is not None:
            LOG.info(
                "export: the stored core %s and the ends of %dx%d frames (no torch needed) ...",
                core.name,
                spec.camera_width,
                spec.camera_height,
            )
        self._compose(spec, core, path, lambda: self._export_core(spec, opset), "exporting it again")
        LOG.info("exported '%s' in %.0f s", spec.key, time.monotonic() - start)
        return path

    def _compose(self, spec: GraphSpec, core: Path | None, path: Path, remake, remaking: str) -> Path:
        """`compose_camera_graph` from `core`; without one, or when it is damaged (then deleted), from
        the core `remake()` writes."""
        from dinov2_ros.runtime.onnx_export import compose_camera_graph

        return self._from_core(core, lambda usable: compose_camera_graph(spec, usable, path), remake, remaking)

    @staticmethod
    def _from_core(core: Path | None, use, remake, remaking: str):
        """`use(core)`; without a core, or when it is damaged (then deleted, with a warning that says
        `remaking`), `use` of the core `remake()` writes (an export or a quantisation)."""
        from dinov2_ros.runtime.onnx_export import DamagedCoreError

        if core is not None:
            try:
                return use(core)
            except DamagedCoreError as error:
                LOG.warning("%s: deleted it, %s", error, remaking)
                core.unlink(missing_ok=True)
        return use(remake())

    def _export_core(self, spec: GraphSpec, opset: int | None) -> Path:
        from dinov2_ros.runtime.onnx_export import DEFAULT_OPSET, export_core

        if importlib.util.find_spec("torch") is None:
            raise ModuleNotFoundError(
                f"{self.store.core_dir} holds no core of these model settings (encoder, heads and input "
                f"size), which a graph for {spec.camera_width}x{spec.camera_height} frames is composed from, and "
                "exporting one needs torch, which is not installed here: on a machine with torch run "
                f"`{self.export_command(spec)}` and copy {self.store.directory}, cores/ included, here"
            )
        graph, class_names = self.build_graph(spec)
        return export_core(
            graph,
            self.store.core_path(spec.core(), self.provenance),
            opset=opset or DEFAULT_OPSET,
            class_names=class_names,
            provenance=self.provenance.to_json(),
        )

    def export_command(self, spec: GraphSpec) -> str:
        """The `dinov2-ros export` command line that writes the graph for `spec` with these settings."""
        options = " ".join(shlex.quote(option) for option in self.settings.cli_options())
        return f"dinov2-ros export {options} --camera {spec.camera_width}x{spec.camera_height}"

    def _detection_head(self, spec: GraphSpec):
        """The detection head module for `spec` and, for a trained head, its class names."""
        if spec.exemplar:
            from dinov2_ros.model.exemplar_head import ExemplarHead

            return ExemplarHead(max_classes=spec.max_classes, top_k=spec.top_k), None
        if spec.detection == "center":
            return self._center_head(spec.top_k)
        return None, None

    def _center_head(self, top_k: int):
        from dinov2_ros.model.center_head import load_center_head
        from dinov2_ros.model.content_identity import encoder_name

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

    def build_graph(self, spec: GraphSpec):
        """The PerceptionGraph for `spec` (imports torch) and a trained head's class names, or None."""
        from dinov2_ros.runtime.factory import build_perception_graph

        s = self.settings
        head, class_names = self._detection_head(spec)
        graph = build_perception_graph(
            spec, s.weights, s.depth_weights or None, s.depth_dataset, s.depth_kind, detection_head=head
        )
        return graph, class_names
