"""The two int8 graphs against fp32 (ONNX Runtime CPU): the encoder's speed-up, and what quantisation
costs in features, depth and detections on the synthetic scenes.

vits14 (random weights), 640x480 frames, 224x224 and 448x448 model input. "int8" is the dynamic
graph `dinov2-ros export --precision int8` writes for ONNX Runtime (`export.quantize.quantize_graph`);
"qdq" the calibrated Q/DQ graph for TensorRT (`quantize_qdq`), calibrated on other scenes than those
measured. The bare encoders run interleaved in one loop (a speed-up is the ratio of medians);
features are the encoder's last patch map on the preprocessed scenes (cosine per patch, to fp32),
depth the whole graph's camera-size output (absolute difference per pixel), detections the whole
graph's rows above score 0.5 (class and box equal to fp32's, boxes within 1 px).

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

from dinov2_ros.runtime.backends.base import per_frame
from dinov2_ros.tools.latency import time_interleaved

LOG = logging.getLogger("bench_int8")


def session(path: Path):
    """An ONNX Runtime session with the backend's options, so neither run bills the other for spinning."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


QUANTISED = ("int8", "qdq")
CALIBRATION_SCENES = 16


def scene_frames(count: int, first: int = 0) -> np.ndarray:
    from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator

    generator = SyntheticSceneGenerator(seed=12)
    return np.stack([generator.render(index).image_rgb for index in range(first, first + count)])


def run_size(size: int, directory: Path, scenes: int, iterations: int) -> str:
    import torch

    from dinov2_ros.export.quantize import quantize_graph, quantize_matmuls, quantize_matmuls_qdq, quantize_qdq
    from dinov2_ros.model.camera_ends import Preprocess

    spec, graph_path, encoder_path, inputs = build(size, directory, 18, "linear")
    frames, calibration = scene_frames(scenes), scene_frames(CALIBRATION_SCENES, first=1000)
    with torch.no_grad():
        normalised = Preprocess(spec)(torch.from_numpy(frames)).numpy()
        calibration_inputs = Preprocess(spec)(torch.from_numpy(calibration)).numpy()
    encoders = {"fp32": session(encoder_path)}
    encoders["int8"] = session(quantize_matmuls(encoder_path, encoder_path.with_suffix(".int8.onnx")))
    qdq_encoder = quantize_matmuls_qdq(
        encoder_path, encoder_path.with_suffix(".qdq.onnx"), [{"x": x[None]} for x in calibration_inputs]
    )
    encoders["qdq"] = session(qdq_encoder)
    graphs = {
        "fp32": session(graph_path),
        "int8": session(quantize_graph(graph_path, graph_path.with_suffix(".int8.onnx"))),
        "qdq": session(quantize_qdq(graph_path, graph_path.with_suffix(".qdq.onnx"), calibration)),
    }
    cosines = {name: [] for name in QUANTISED}
    depth_errors = {name: [] for name in QUANTISED}
    detections = {name: [0, 0] for name in QUANTISED}  # (rows alike, fp32 rows)
    for frame, x in zip(frames, normalised, strict=True):
        fp32 = encoders["fp32"].run(None, {"x": x[None]})[0][0].reshape(spec.embed_dim, -1)
        feeds = per_frame(spec.input_specs(), {**inputs, "images": frame[None]})  # prototypes per frame
        reference = dict(zip(("depth", "detections"), graphs["fp32"].run(["depth", "detections"], feeds), strict=True))
        for name in QUANTISED:
            got = encoders[name].run(None, {"x": x[None]})[0][0].reshape(spec.embed_dim, -1)
            cosines[name].append((fp32 * got).sum(0) / np.linalg.norm(fp32, axis=0) / np.linalg.norm(got, axis=0))
            depth, rows = graphs[name].run(["depth", "detections"], feeds)
            depth_errors[name].append(np.abs(depth - reference["depth"]).ravel())
            alike, total = rows_alike(reference["detections"][0], rows[0])
            detections[name][0] += alike
            detections[name][1] += total
    LOG.info("timing the fp32 and int8 encoders at %dx%d (%d iterations)", size, size, iterations)
    x = normalised[:1]
    result = time_interleaved({name: (lambda s=s: s.run(None, {"x": x})) for name, s in encoders.items()}, iterations)
    lines = [f"--- {size}x{size}, load average {os.getloadavg()[0]:.2f}"]
    lines += [f"{name:>5} encoder: {latency}" for name, latency in result.items()]
    for name in QUANTISED:
        cosine, errors = np.concatenate(cosines[name]), np.concatenate(depth_errors[name]) * 1e3
        alike, total = detections[name]
        lines.append(
            f"{size}x{size} {name}: encoder speed-up {result['fp32'].median_ms / result[name].median_ms:.2f}x "
            f"(medians), {result['fp32'].min_ms / result[name].min_ms:.2f}x (minima); patch cosine to fp32 mean "
            f"{cosine.mean():.6f}, min {cosine.min():.6f}; depth |{name} - fp32| median {np.median(errors):.2f} mm, "
            f"max {errors.max():.2f} mm; detections alike {alike}/{total} ({scenes} scenes)"
        )
    return "\n".join(lines)


def rows_alike(reference: np.ndarray, rows: np.ndarray, threshold: float = 0.5) -> tuple[int, int]:
    """(fp32 detections above `threshold` that the other graph has too: same class, box within 1 px;
    fp32 detections above it)."""
    wanted = reference[reference[:, 4] >= threshold]
    found = rows[rows[:, 4] >= threshold]
    alike = sum(any(r[5] == f[5] and np.abs(r[:4] - f[:4]).max() <= 1.0 for f in found) for r in wanted)
    return int(alike), len(wanted)


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
            summaries += report.splitlines()[-len(QUANTISED) :]
    print("\nsummary (vits14 random weights, ONNX Runtime CPU, batch 1):")
    print("\n".join(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
