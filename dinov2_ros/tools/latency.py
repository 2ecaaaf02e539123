"""Latency measurement shared by `dinov2-ros bench` and benchmarks/: timing loops, statistics, and the
bare-encoder baseline graph that the whole perception graph is compared with."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Latency:
    """Summary of one timed stage, in milliseconds."""

    median_ms: float
    p99_ms: float
    min_ms: float  # the least disturbed run: robust when other processes share the cores
    samples: int

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        if not seconds:
            raise ValueError("no timing samples; run at least one iteration")
        ms = np.asarray(seconds) * 1e3
        return cls(float(np.median(ms)), float(np.percentile(ms, 99)), float(ms.min()), len(ms))

    def __str__(self) -> str:
        return f"median {self.median_ms:8.2f} ms  p99 {self.p99_ms:8.2f} ms  min {self.min_ms:8.2f} ms"


def time_interleaved(stages: dict[str, Callable[[], object]], iterations: int, warmup: int = 2) -> dict[str, Latency]:
    """Run every stage once per iteration, in turn, so drift (heat, other load) hits all stages alike."""
    if iterations < 1 or warmup < 0:
        raise ValueError(f"need iterations >= 1 and warmup >= 0, got {iterations} and {warmup}")
    for _ in range(warmup):
        for run in stages.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in stages}
    for iteration in range(iterations):
        for name, run in stages.items():
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
        if (iteration + 1) % max(1, iterations // 5) == 0:
            LOG.info("  %d/%d iterations", iteration + 1, iterations)
    return {name: Latency.of(values) for name, values in samples.items()}


def export_bare_encoder(backbone, input_height: int, input_width: int, path: str | os.PathLike, opset: int) -> Path:
    """Export the encoder alone (normalised float input -> last patch map) with a dynamic batch axis."""
    import torch

    from dinov2_ros.export.camera_graph import quiet_onnx_tools
    from dinov2_ros.export.core_export import MAX_BATCH
    from dinov2_ros.model.perception_graph import BareEncoder

    path = Path(path)
    encoder = BareEncoder(backbone, input_height, input_width).eval()
    example = torch.zeros(2, 3, input_height, input_width)
    with torch.no_grad(), quiet_onnx_tools():
        program = torch.onnx.export(
            encoder,
            (example,),
            input_names=["x"],
            output_names=["patch_map"],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}},
            verbose=False,
        )
    program.save(str(path))
    return path
