"""Opens the backend for a camera size from the artifact store: what the robot process runs, without
exporting or building anything.

The node and the CLI find their files through the same BackendOpener, so a graph exported beforehand
(`dinov2-ros export`, `build-engine`, with the node's parameter file) is the one the node takes.
What the store lacks for a size is made at build time (`export.graph_builder.GraphBuilder`), which
the node runs as a child process (`build_command`, runtime/export_process.py). Each skipped file is
logged once on this module's logger with its reason (the node forwards it to the ROS log).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from dinov2_ros.runtime.artifact_store import ArtifactStore, mismatches
from dinov2_ros.runtime.backends import Backend, create_backend
from dinov2_ros.runtime.backends.tensorrt.cuda_runtime import import_cudart, require_cuda
from dinov2_ros.runtime.backends.tensorrt.loader import EngineLoader, check_version, import_tensorrt
from dinov2_ros.runtime.backends.tensorrt.runner import TensorRTRunner
from dinov2_ros.runtime.backends.triton_backend import TritonBackend, import_tritonclient
from dinov2_ros.runtime.graph_file import (
    CALIBRATION_KEY,
    CLASS_NAMES_KEY,
    PRECISION_KEY,
    QDQ_PRECISION,
    graph_class_names,
)
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.model_settings import ModelSettings
from dinov2_ros.runtime.provenance import provenance_of
from dinov2_ros.runtime.text_encoder import find_text_encoder, text_encoder_identity, text_encoder_source
from dinov2_ros.weights.cache import WeightsError, fetch
from dinov2_ros.weights.variants import DINOTXT, VARIANTS, get_variant

LOG = logging.getLogger(__name__)

SYNTHETIC_CALIBRATION = "synthetic tabletop scenes"  # backend.calibration "": the CLI renders them
GRAPH_NAMES = {"int8": "int8 graph", QDQ_PRECISION: "int8 Q/DQ graph"}


class MissingArtifactError(FileNotFoundError):
    """The store lacks a file the backend needs for a camera size; the message gives the command that makes it."""


class BackendOpener:
    """`open(height, width)`: the backend for camera frames of that size (pixels), from stored files."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.store = ArtifactStore(settings.graph_dir)
        self.provenance = provenance_of(settings)
        self._embed_dim: int | None = None
        self._skips_logged: set[tuple[str, str]] = set()  # each skipped file once, not per lookup
        self._served_class_names: str | None = None  # triton: CLASS_NAMES_KEY of the model opened last
        if settings.uses_random_weights:
            LOG.warning(
                "RANDOM WEIGHTS were requested (model.weights, depth_weights or dinotxt_weights is 'random'): depth and "
                "objects are meaningless; this is for demos and tests only. Set real checkpoints to perceive."
            )
        for name in self.provenance.unverified:
            LOG.warning(
                "the %s weights %s are not on this machine: a stored graph exported from that path is used "
                "without checking its content",
                name,
                self.provenance.sources[name],
            )

    @property
    def graph_precision(self) -> str:
        """The precision of the stored graph the backend runs: int8 (dynamic) for ONNX Runtime at int8,
        the calibrated Q/DQ graph for TensorRT at int8, else fp32 (TensorRT builds its fp32 and fp16
        engines from the fp32 graph; PyTorch runs no stored graph)."""
        s = self.settings
        if s.backend_precision == "int8":
            return QDQ_PRECISION if s.backend == "tensorrt" else "int8"
        return "fp32"

    @property
    def calibration(self) -> str:
        """What a Q/DQ graph of these settings is calibrated on, as its metadata records it."""
        folder = self.settings.calibration
        return str(Path(folder).expanduser().resolve()) if folder else SYNTHETIC_CALIBRATION

    def embed_dim(self) -> int:
        """The encoder width: from a stored graph or core of this variant, else from the variant table.

        Stored graphs come first, so a custom encoder exported elsewhere runs here. Found once: a
        variant's width does not change, and every spec_for would otherwise re-read the store.
        """
        if self._embed_dim is None:
            self._embed_dim = self._find_embed_dim()
        return self._embed_dim

    def _find_embed_dim(self) -> int:
        for _, spec, _ in [*self.store.graphs(), *self.store.cores()]:
            if spec.variant == self.settings.variant:
                return spec.embed_dim
        if self.settings.variant not in VARIANTS:
            raise ValueError(
                f"model.variant {self.settings.variant!r} is not a released DINOv2 variant ({', '.join(VARIANTS)}) "
                f"and {self.store.directory} holds no graph exported for it"
            )
        return VARIANTS[self.settings.variant].embed_dim

    def spec_for(self, height: int, width: int) -> GraphSpec:
        return self.settings.spec_for(height, width, self.embed_dim())

    def find_graph_file(self, spec: GraphSpec, precision: str | None = None) -> Path | None:
        """The stored graph for `spec` (in the backend's precision unless `precision`; a Q/DQ graph
        calibrated on `calibration`), or None."""
        precision = precision or self.graph_precision
        required = {CALIBRATION_KEY: self.calibration} if precision == QDQ_PRECISION else {}
        return self.logged(*self.store.find(spec, self.provenance, precision, required))

    def find_core_file(self, spec: GraphSpec, precision: str = "fp32") -> Path | None:
        """The stored core `spec`'s graph is composed from, or None."""
        return self.logged(*self.store.find_core(spec.core(), self.provenance, precision), kind="core")

    def find_text_encoder_file(self) -> Path | None:
        """The stored dino.txt text encoder graph of these settings (its vocabulary beside it), or None."""
        return self.logged(
            *find_text_encoder(self.store.directory, text_encoder_identity(self.settings)), "text encoder"
        )

    def logged(self, path: Path | None, skipped: list[tuple[Path, str]], kind: str = "graph") -> Path | None:
        """`path`, after logging each skipped file with its reason (once per file and reason)."""
        for other, reason in skipped:
            name = other.name if kind == "graph" else f"{other.parent.name}/{other.name}"
            if (name, reason) not in self._skips_logged:
                self._skips_logged.add((name, reason))
                LOG.info("artifact store: skipping %s %s: %s", kind, name, reason)
        return path

    def missing(self, height: int, width: int) -> str:
        """What the store lacks for opening the backend of `height` x `width` frames, or "".

        The torch backend runs its graph unstored and lacks nothing. ImportError (no `tensorrt`) or
        CudaUnavailableError for a TensorRT backend that cannot run here, at once.
        """
        if self.settings.dinotxt_weights and self.find_text_encoder_file() is None:
            return "the dino.txt text encoder graph"  # run here on ONNX Runtime, whatever the backend
        if self.settings.backend in ("torch", "triton"):  # triton: the server holds the graph
            return ""
        spec = self.spec_for(height, width)
        graph = self.find_graph_file(spec)
        if graph is None:
            return f"the {self.graph_precision} graph '{spec.key}'"
        if self.settings.backend == "tensorrt":
            loader = self._engine_loader(graph, spec)
            _, reason = loader.cache.load(loader.name, loader.key(), loader.runtime().deserialize_cuda_engine)
            if reason:
                return f"the TensorRT engine {loader.name} ({reason})"
        return ""

    def build_command(self, height: int, width: int, global_options: Sequence[str] = ("--log-levels",)) -> list[str]:
        """The command (argv) that makes what the store lacks for `height` x `width` frames: `dinov2-ros
        export` (graphs), or `build-engine` (the TensorRT engine, exporting its graph first), with the
        `dinov2-ros` options `global_options` before the subcommand."""
        return [sys.executable, "-m", "dinov2_ros.cli", *global_options, *self._build_arguments(height, width)]

    def build_command_line(self, height: int, width: int) -> str:
        """`build_command` as a user types it (`dinov2-ros export ...`), for messages."""
        return "dinov2-ros " + shlex.join(self._build_arguments(height, width))

    def _build_arguments(self, height: int, width: int) -> list[str]:
        command = "build-engine" if self.settings.backend == "tensorrt" else "export"
        return [command, *self.settings.cli_options(), "--camera", f"{width}x{height}"]

    def stored(self) -> list[Path]:
        """The stored graphs and cores of these settings, for any camera size and precision."""
        s = self.settings
        graphs = [
            (path, spec, metadata, s.spec_for(spec.camera_height, spec.camera_width, spec.embed_dim))
            for path, spec, metadata in self.store.graphs()
        ]
        cores = [
            (path, spec, metadata, s.spec_for(spec.input_height, spec.input_width, spec.embed_dim).core())
            for path, spec, metadata in self.store.cores()
        ]
        return [
            path
            for path, spec, metadata, wanted in graphs + cores
            if not mismatches(spec, metadata, wanted, self.provenance, metadata.get(PRECISION_KEY, ""))
        ]

    def class_names(self) -> tuple[str, ...] | None:
        """A trained head's class names by id, from a stored graph or core of these settings (with the
        triton backend: the served model opened last); None when there is none yet (the export writes
        them from the head's checkpoint)."""
        if self.settings.backend == "triton":
            return None if self._served_class_names is None else tuple(json.loads(self._served_class_names))
        return next((names for path in self.stored() if (names := graph_class_names(path)) is not None), None)

    def ensure_weights(self) -> None:
        """Make sure what the graphs are made from is here before the node goes active: nothing when the
        store holds a graph or core of these settings (a robot with a copied store needs no weights,
        unless the torch backend runs them), else each weights file: "pretrained" is downloaded into the
        weights cache now, a path must exist. WeightsError or FileNotFoundError in one line saying what
        to do, so an offline robot is refused at configure instead of running without output."""
        s = self.settings
        wanted = []
        # triton: the server has the vision graphs' weights; a copied store has its graphs
        if not (s.backend == "triton" or (s.backend != "torch" and self.stored())):
            wanted.append(("model.weights", s.weights, lambda: get_variant(s.variant).checkpoint))
            if s.depth_weights:
                depth = lambda: get_variant(s.variant).depth_head_file(s.depth_dataset, s.depth_kind)  # noqa: E731
                wanted.append(("model.depth_weights", s.depth_weights, depth))
            if s.detector == "center":
                wanted.append(("model.detector_weights", s.detector_weights, None))
            if s.dinotxt_weights:
                wanted.append(("model.dinotxt_weights", s.dinotxt_weights, lambda: DINOTXT.vision_head))
        # the text encoder runs here whatever the backend: its graph, or what it is exported from
        if s.dinotxt_weights and self.find_text_encoder_file() is None:
            text_weights = text_encoder_source(s)  # 'pretrained', 'random' or the file beside the vision head
            wanted.append(("model.dinotxt_weights (text encoder)", text_weights, lambda: DINOTXT.text_encoder))
            wanted.append(("dino.txt's vocabulary", "pretrained", lambda: DINOTXT.vocabulary))  # whatever the weights
        problems: list[tuple[str, Exception]] = []  # every missing file in the one line, not the first only
        for name, weights, release in wanted:
            try:
                if weights == "pretrained":
                    fetch(release(), progress=False)
                elif weights != "random" and not Path(weights).expanduser().is_file():
                    raise FileNotFoundError(
                        f"{name} {weights!r} is not a file, and {self.store.directory} holds no graph made from it: "
                        "give the checkpoint's path, or copy the artifact store exported elsewhere here"
                    )
            except (WeightsError, FileNotFoundError) as error:
                problems.append((name, error))
        if len(problems) == 1:
            raise problems[0][1]
        if problems:
            raise type(problems[0][1])("; and ".join(f"{name}: {error}" for name, error in problems))

    def ensure_backend(self) -> None:
        """ImportError or CudaUnavailableError, in one line, when the configured backend cannot run on this
        machine (no `tensorrt`, no cuda-python, no NVIDIA driver or GPU), at configure, whether or not
        a camera size is known yet; nothing for the other backends, which open with the first graph."""
        if self.settings.backend == "tensorrt":
            check_version(import_tensorrt().__version__)
            require_cuda(import_cudart())
        if self.settings.backend == "triton":
            import_tritonclient()

    def open(self, height: int, width: int) -> Backend:
        """The ready backend for `height` x `width` frames. MissingArtifactError naming the command that
        makes what the store lacks; what the backend raises otherwise (no `tensorrt`, no CUDA device)."""
        s = self.settings
        spec = self.spec_for(height, width)
        if s.backend == "torch":
            # the robot's one import of torch and the model, for backend.kind torch only
            from dinov2_ros.runtime.backends.torch_backend import TorchBackend

            LOG.info("building the PyTorch graph for %dx%d frames", width, height)
            return TorchBackend.for_settings(s, spec)
        if s.backend == "triton":
            backend = TritonBackend(spec, s.triton_url, provenance=self.provenance, precision=self.graph_precision)
            self._served_class_names = backend.metadata.get(CLASS_NAMES_KEY)  # the server's copy of the graph's
            LOG.info("Triton model for %dx%d frames: '%s' at %s", width, height, backend.model_name, s.triton_url)
            return backend
        graph = self.find_graph_file(spec)
        if graph is None:
            raise MissingArtifactError(
                f"{self.store.directory} holds no {self.graph_precision} graph for {width}x{height} frames "
                f"('{spec.key}'); make it with `{self.build_command_line(height, width)}`"
            )
        LOG.info("%s for %dx%d frames: %s", GRAPH_NAMES.get(self.graph_precision, "graph"), width, height, graph)
        if s.backend == "onnxruntime":
            return create_backend("onnxruntime", spec, onnx_path=graph, device=s.device, threads=s.threads)
        return TensorRTRunner(self._engine_loader(graph, spec))

    def _engine_loader(self, graph: Path, spec: GraphSpec) -> EngineLoader:
        s = self.settings
        return EngineLoader(graph, spec, s.backend_precision, s.max_batch, self.store.engine_dir, s.opt_batch)
