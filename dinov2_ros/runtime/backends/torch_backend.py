"""PyTorch backend: the PerceptionGraph run eagerly, the reference the other backends are checked against.

On CUDA it runs under fp16 autocast by default (LayerNorm and softmax stay fp32, as autocast keeps
them); outputs are always float32 NumPy arrays, like the other backends. It is the one module of
the robot's packages that imports torch and the model: the backend opener imports it only when
backend.kind is torch (the import rules in tests/test_import_rules.py say so).
"""

from __future__ import annotations

import numpy as np
import torch

from dinov2_ros.model.factory import perception_graph_for
from dinov2_ros.runtime.backends.base import Backend
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.model_settings import ModelSettings

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16")


class TorchBackend(Backend):
    """Runs a PerceptionGraph module. `precision="auto"` means fp16 on CUDA and fp32 on CPU."""

    kind = "torch"

    def __init__(self, graph, device: str = "auto", precision: str = "auto") -> None:
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but PyTorch sees no CUDA device; use device='cpu' or a CUDA torch build")
        super().__init__(graph.spec)
        self.device = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision='fp16' needs CUDA; use precision='fp32' on CPU")
        self.precision = precision if precision != "auto" else ("fp16" if self.device.type == "cuda" else "fp32")
        self.graph = graph.eval().to(self.device)
        self.output_names = graph.output_names

    @classmethod
    def for_settings(cls, settings: ModelSettings, spec: GraphSpec) -> TorchBackend:
        """The backend running the PerceptionGraph of the node's `settings` for `spec` (weights loaded now)."""
        graph, _ = perception_graph_for(settings, spec)
        return cls(graph, device=settings.device, precision=settings.backend_precision)

    def _infer_impl(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [torch.from_numpy(inputs[spec.name]).to(self.device) for spec in self.inputs]
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.float16, enabled=self.precision == "fp16"),
        ):
            outputs = self.graph(*tensors)
        return {name: output.float().cpu().numpy() for name, output in zip(self.output_names, outputs, strict=True)}

    def close(self) -> None:
        super().close()
        self.graph = None
