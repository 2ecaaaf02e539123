"""Makes what the artifact store lacks for a camera size: the graph (composed from the stored core, whose
export needs torch), ONNX Runtime's int8 graph, or TensorRT's engine.

`dinov2-ros export` and `build-engine` run it, and so does the node, in a child process
(runtime/export_process.py), so the graphs are written where the node's BackendOpener looks. A
camera size after the model's first needs no torch: its graph is the stored core joined to the
camera's ends (about 3 s). torch is imported only where a core must be exported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from dinov2_ros.export.camera_graph import DamagedCoreError, compose_camera_graph
from dinov2_ros.export.engine_build import build_engine
from dinov2_ros.export.quantize import quantize_graph, quantize_qdq
from dinov2_ros.runtime.backend_opener import BackendOpener
from dinov2_ros.runtime.backends import Backend
from dinov2_ros.runtime.backends.tensorrt.loader import EngineLoader
from dinov2_ros.runtime.graph_file import CORE_SPEC_KEY, QDQ_PRECISION, graph_files
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.model_settings import ModelSettings

LOG = logging.getLogger(__name__)
Made = TypeVar("Made")


class GraphBuilder:
    """The build half beside `opener` (a BackendOpener of the same settings): `make(height, width)`
    writes every file the backend needs for that size; `open(height, width)` makes them, then opens."""

    def __init__(
        self, settings: ModelSettings, calibration_images: Callable[[], list[np.ndarray]] | None = None
    ) -> None:
        """`calibration_images()` gives the frames TensorRT's int8 graph is calibrated on (the CLI reads
        `backend.calibration`); needed only where that graph must be made."""
        self.opener = BackendOpener(settings)
        self.settings = settings
        self.store = self.opener.store
        self.provenance = self.opener.provenance
        self._calibration_images = calibration_images

    def spec_for(self, height: int, width: int) -> GraphSpec:
        return self.opener.spec_for(height, width)

    def make(self, height: int, width: int, opset: int | None = None, engine: bool = True) -> list[Path]:
        """The stored files the backend needs for `height` x `width` frames, made where missing: the
        fp32 graph (ONNX Runtime int8: the int8 graph; TensorRT: the graph and, with `engine`, the
        engine, built on this machine's GPU). The torch backend runs its graph unstored; for it, the fp32 graph."""
        text = [self.text_encoder_file(opset)] if self.settings.dinotxt_weights else []
        if self.opener.graph_precision == "int8":
            return [self.int8_graph_file(height, width, opset), *text]
        if engine:  # at once without TensorRT or CUDA, not after an export
            self.opener.ensure_backend()
        if self.opener.graph_precision == QDQ_PRECISION:
            paths = [self.qdq_graph_file(height, width, opset)]
        else:
            paths = [self.graph_file(height, width, opset)]
        if self.settings.backend == "tensorrt" and engine:
            paths.append(self.engine(height, width, paths[0]))
        return paths + text

    def text_encoder_file(self, opset: int | None = None) -> Path:
        """The stored dino.txt text encoder graph (with its vocabulary), exported first when the store has
        none: torch, the 2.2 GB text encoder file and CLIP's vocabulary (fetched with the weights)."""
        path = self.opener.find_text_encoder_file()
        if path is None:
            from dinov2_ros.export.core_export import DEFAULT_OPSET
            from dinov2_ros.export.text_encoder_export import export_text_encoder, text_encoder_path
            from dinov2_ros.model.factory import create_text_encoder
            from dinov2_ros.runtime.text_encoder import text_encoder_identity, text_encoder_source
            from dinov2_ros.weights.cache import fetch
            from dinov2_ros.weights.variants import DINOTXT

            identity = text_encoder_identity(self.settings)
            vocabulary = fetch(DINOTXT.vocabulary, progress=False)  # before the 2 GB encoder: fails fast offline
            path = export_text_encoder(
                create_text_encoder(self.settings.dinotxt_weights),
                vocabulary,
                text_encoder_path(self.store.directory, identity),
                identity,
                text_encoder_source(self.settings),
                opset or DEFAULT_OPSET,
            )
        LOG.info("dino.txt text encoder: %s", path)
        return path

    def open(self, height: int, width: int) -> Backend:
        """`make`, then the opener's backend for `height` x `width` frames."""
        self.make(height, width)
        return self.opener.open(height, width)

    def graph_file(self, height: int, width: int, opset: int | None = None) -> Path:
        """The stored fp32 graph for `height` x `width` frames, exported first when the store has none."""
        spec = self.spec_for(height, width)
        path = self.opener.find_graph_file(spec, "fp32")
        if path is None:
            path = self._export(spec, opset)
        LOG.info("graph for %dx%d frames: %s", width, height, path)
        return path

    def int8_graph_file(self, height: int, width: int, opset: int | None = None) -> Path:
        """ONNX Runtime's stored int8 graph for `height` x `width` frames, made when the store has none:
        the int8 core (quantised once from the fp32 core, which is exported first where missing)
        joined to the camera's ends. No fp32 graph of this camera size is written."""
        spec = self.spec_for(height, width)
        path = self.opener.find_graph_file(spec, "int8")
        if path is None:
            start = time.monotonic()
            path = self._make_int8(spec, opset)
            LOG.info("made the int8 graph '%s' in %.0f s", spec.key, time.monotonic() - start)
        LOG.info("int8 graph for %dx%d frames: %s", width, height, path)
        return path

    def qdq_graph_file(self, height: int, width: int, opset: int | None = None) -> Path:
        """TensorRT's stored int8 Q/DQ graph for `height` x `width` frames, calibrated on
        `backend.calibration`; made from the fp32 graph (exported first where missing) when the store
        has none for these frames."""
        spec = self.spec_for(height, width)
        path = self.opener.find_graph_file(spec, QDQ_PRECISION)
        if path is None:
            if self._calibration_images is None:
                raise ValueError("making an int8 Q/DQ graph needs calibration images; GraphBuilder was given none")
            fp32 = self.graph_file(height, width, opset)
            start = time.monotonic()
            images = self._calibration_images()
            calibration = hashlib.sha256(self.opener.calibration.encode()).hexdigest()[:8]  # one file per calibration
            output = self.store.graph_path(spec, self.provenance).with_suffix(f".{QDQ_PRECISION}-{calibration}.onnx")
            path = quantize_qdq(fp32, output, images, calibration=self.opener.calibration)
            LOG.info(
                "made the int8 Q/DQ graph '%s' from %d calibration frames in %.0f s",
                spec.key,
                len(images),
                time.monotonic() - start,
            )
        LOG.info("int8 Q/DQ graph for %dx%d frames: %s", width, height, path)
        return path

    def engine(self, height: int, width: int, graph: Path | None = None) -> Path:
        """The TensorRT engine for `height` x `width` frames in the store's engine cache, built on this
        machine's GPU when the cache lacks it (minutes); its file."""
        s = self.settings
        if graph is None:
            int8 = self.opener.graph_precision == QDQ_PRECISION
            graph = self.qdq_graph_file(height, width) if int8 else self.graph_file(height, width)
        loader = EngineLoader(
            graph, self.spec_for(height, width), s.backend_precision, s.max_batch, self.store.engine_dir, s.opt_batch
        )
        return build_engine(loader)

    def _make_int8(self, spec: GraphSpec, opset: int | None) -> Path:
        """The int8 core joined to the camera's ends; in a store with the camera's fp32 graph but
        without its cores, an int8 copy of that graph."""
        output = self.store.graph_path(spec, self.provenance).with_suffix(".int8.onnx")
        core = self.opener.find_core_file(spec)
        if core is None and (fp32 := self.opener.find_graph_file(spec, "fp32")) is not None:
            return quantize_graph(fp32, output)
        int8_core = self.opener.find_core_file(spec, "int8")
        return self._compose(spec, int8_core, output, lambda: self._int8_core(spec, core, opset), "quantising it again")

    def _int8_core(self, spec: GraphSpec, core: Path | None, opset: int | None) -> Path:
        """Quantise the stored fp32 `core` (exported first where missing or damaged) beside it."""

        def quantized(fp32_core: Path) -> Path:
            return quantize_graph(fp32_core, fp32_core.with_suffix(".int8.onnx"), key=CORE_SPEC_KEY)

        return _from_core(core, quantized, lambda: self._export_core(spec, opset), "exporting it again")

    def _export(self, spec: GraphSpec, opset: int | None) -> Path:
        """Compose the graph for `spec` from the stored core of its model and input size, exporting
        that core first (torch, the weights, 20-30 s for vits14 here) when the store lacks it or
        holds it damaged."""
        path = self.store.graph_path(spec, self.provenance)
        start = time.monotonic()
        core = self.opener.find_core_file(spec)
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
        return _from_core(core, lambda usable: compose_camera_graph(spec, usable, path), remake, remaking)

    def _export_core(self, spec: GraphSpec, opset: int | None) -> Path:
        if importlib.util.find_spec("torch") is None:
            raise ModuleNotFoundError(
                f"{self.store.core_dir} holds no core of these model settings (encoder, heads and input "
                f"size), which a graph for {spec.camera_width}x{spec.camera_height} frames is composed from, and "
                "exporting one needs torch, which is not installed here: on a machine with torch run "
                f"`{self.opener.build_command_line(spec.camera_height, spec.camera_width)}` and copy "
                f"{self.store.directory}, cores/ included, here"
            )
        # torch, the model and the weights: only where a core must be exported
        from dinov2_ros.export.core_export import DEFAULT_OPSET, export_core
        from dinov2_ros.model.factory import perception_graph_for

        graph, class_names = perception_graph_for(self.settings, spec)
        return export_core(
            graph,
            self.store.core_path(spec.core(), self.provenance),
            opset=opset or DEFAULT_OPSET,
            class_names=class_names,
            provenance=self.provenance.to_json(),
        )


def _from_core(core: Path | None, use: Callable[[Path], Made], remake: Callable[[], Path], remaking: str) -> Made:
    """`use(core)`; without a core, or when it is damaged (then deleted, with a warning that says
    `remaking`), `use` of the core `remake()` writes (an export or a quantisation)."""
    if core is not None:
        try:
            return use(core)
        except DamagedCoreError as error:
            LOG.warning("%s: deleted it, %s", error, remaking)
            for file in graph_files(core):
                file.unlink(missing_ok=True)
    return use(remake())
