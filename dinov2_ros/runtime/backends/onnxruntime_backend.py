"""ONNX Runtime backend: the CPU path (CUDA execution provider when onnxruntime-gpu is installed).

`onnxruntime` is imported when a backend is created, so the package imports without it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from dinov2_ros.runtime.backends.base import Backend
from dinov2_ros.runtime.graph_file import load_graph_spec
from dinov2_ros.runtime.graph_spec import GraphSpec

LOG = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


class OnnxRuntimeBackend(Backend):
    """Runs an exported graph in an ONNX Runtime session.

    `device="auto"` uses the CUDA provider when available, else the CPU one. `threads=0` lets ONNX
    Runtime choose (one per physical core). The file's metadata must match `spec` (when given).
    """

    kind = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        spec: GraphSpec | None = None,
        device: str = "auto",
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0 (0 lets ONNX Runtime choose), got {threads}")
        super().__init__(load_graph_spec(onnx_path, expected=spec))
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise ValueError(
                f"device='cuda' needs onnxruntime's CUDAExecutionProvider; available: {available}. "
                "Install onnxruntime-gpu or use device='cpu'"
            )
        use_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # threads spin between the ops of a run (fast) but stop when it returns: a node's post-processing,
        # DDS and the camera driver get the cores back at once instead of competing with idle spinning
        options.add_session_config_entry("session.force_spinning_stop", "1")
        self.session = ort.InferenceSession(str(Path(onnx_path)), options, providers=providers)
        self.providers = self.session.get_providers()
        self.output_names = [output.name for output in self.outputs]
        LOG.info("onnxruntime %s: %s on %s", ort.__version__, Path(onnx_path).name, self.providers[0])

    def _infer_impl(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, inputs), strict=True))

    def close(self) -> None:
        super().close()
        self.session = None
