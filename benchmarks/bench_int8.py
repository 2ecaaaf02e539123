"""int8 against fp32 (ONNX Runtime CPU): the encoder's speed-up, and what the quantisation costs in features
and depth on the synthetic scenes (issue 12, target 2).

vits14 (random weights), 640x480 frames, 224x224 and 448x448 model input, `runtime.quantize` as
`dinov2-ros export --precision int8` writes it. The fp32 and int8 bare encoders run interleaved in one
loop (the speed-up is the ratio of their medians); features are the encoder's last patch map on the
preprocessed scenes (cosine per patch, int8 to fp32), depth the whole graph's camera-size output
(absolute difference per pixel).

    .venv/bin/python benchmarks/bench_int8.py [--sizes 224 448] [--scenes 8] [--iterations 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_graph import build

from dinov2_ros.tools.latency import time_interleaved

LOG = logging.getLogger("bench_int8")


def session(path: Path):
    """An ONNX Runtime session with the backend's options, so neither run bills the other for spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def scene_frames(count: int) -> np.ndarray:
    from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator

    generator = SyntheticSceneGenerator(seed=12)
    return np.stack([generator.render(index).image_rgb for index in range(count)])


def run_size(size: int, directory: Path, scenes: int, iterations: int) -> str:
    import torch

    from dinov2_ros.export.quantize import quantize_graph, quantize_matmuls
    from dinov2_ros.model.camera_ends import Preprocess

    spec, graph_path, encoder_path, inputs = build(size, directory, 18, "linear")
    encoders = {"fp32": session(encoder_path)}
    encoders["int8"] = session(quantize_matmuls(encoder_path, encoder_path.with_suffix(".int8.onnx")))
    graphs = {
        "fp32": session(graph_path),
        "int8": session(quantize_graph(graph_path, graph_path.with_suffix(".int8.onnx"))),
    }
    frames = scene_frames(scenes)
    with torch.no_grad():
        normalised = Preprocess(spec)(torch.from_numpy(frames)).numpy()
    cosines, depth_errors = [], []
    for frame, x in zip(frames, normalised, strict=True):
        fp32, int8 = (encoders[name].run(None, {"x": x[None]})[0][0].reshape(spec.embed_dim, -1) for name in encoders)
        cosines.append((fp32 * int8).sum(0) / np.linalg.norm(fp32, axis=0) / np.linalg.norm(int8, axis=0))
        feeds = {**inputs, "images": frame[None]}
        depth = [graphs[name].run(["depth"], feeds)[0] for name in graphs]
        depth_errors.append(np.abs(depth[1] - depth[0]).ravel())
    cosines, depth_errors = np.concatenate(cosines), np.concatenate(depth_errors) * 1e3
    LOG.info("timing the fp32 and int8 encoders at %dx%d (%d iterations)", size, size, iterations)
    x = normalised[:1]
    result = time_interleaved({name: (lambda s=s: s.run(None, {"x": x})) for name, s in encoders.items()}, iterations)
    lines = [f"--- {size}x{size}, load average {os.getloadavg()[0]:.2f}"]
    lines += [f"{name:>5} encoder: {latency}" for name, latency in result.items()]
    return "\n".join(
        [
            *lines,
            f"{size}x{size}: int8 encoder speed-up {result['fp32'].median_ms / result['int8'].median_ms:.2f}x (medians), "
            f"{result['fp32'].min_ms / result['int8'].min_ms:.2f}x (minima); patch cosine to fp32 mean "
            f"{cosines.mean():.6f}, min {cosines.min():.6f}; depth |int8 - fp32| median {np.median(depth_errors):.2f} mm, "
            f"max {depth_errors.max():.2f} mm ({scenes} scenes)",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summaries = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            report = run_size(size, Path(scratch), args.scenes, args.iterations)
            print(report, flush=True)
            summaries.append(report.splitlines()[-1])
    print("\nsummary (vits14 random weights, ONNX Runtime CPU, batch 1):")
    print("\n".join(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
