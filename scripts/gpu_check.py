"""GPU check for a machine with an NVIDIA GPU and PyTorch CUDA.

Runs the whole perception graph (vits14, linear depth head, exemplar head, features; 640x480 frames at
448x448 model input) in PyTorch on CUDA in fp32 (TF32 off) and in fp16 autocast, batch 1 and 4, and
prints one summary line per case: fp16-vs-fp32 error of every output and the latency of both.
Where `tensorrt` is installed it then builds the node's TensorRT engines, fp32, fp16 and int8 (from
the calibrated Q/DQ graph, synthetic calibration frames), as `dinov2-ros build-engine` does into a
scratch store, and prints each one's error against ONNX Runtime's fp32 graph and its latency; without
`tensorrt` it says SKIP for those. Without CUDA it prints SKIP and exits 0.

    .venv/bin/python scripts/gpu_check.py [--weights random|pretrained|PATH] [--iterations 50]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from dinov2_ros.tools.latency import Latency, time_interleaved


def structured_frames(batch: int, height: int, width: int) -> np.ndarray:
    """Gradients plus a bright square per frame (random weights still see edges and a blob)."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.zeros((batch, height, width, 3), np.uint8)
    frames[..., 0], frames[..., 1] = x * 255 // width, y * 255 // height
    for index in range(batch):
        top, left = 60 + 40 * index, 80 + 60 * index
        frames[index, top : top + 120, left : left + 160] = (230, 40, 180)
    return frames


def timed(backend, inputs: dict[str, np.ndarray], iterations: int) -> tuple[dict[str, np.ndarray], Latency]:
    """(outputs, latency); each infer copies results to the host, so it is synchronous."""
    outputs = backend.infer(inputs)
    latency = time_interleaved({"infer": lambda: backend.infer(inputs)}, iterations, warmup=3)["infer"]
    return outputs, latency


def compare(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], embed_dim: int) -> str:
    depth = np.abs(got["depth"] - reference["depth"])
    a = reference["features"].transpose(0, 2, 3, 1).reshape(-1, embed_dim)
    b = got["features"].transpose(0, 2, 3, 1).reshape(-1, embed_dim)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    scores = np.abs(got["detections"][..., 4] - reference["detections"][..., 4]).max()
    masks = np.abs(got["masks"] - reference["masks"]).max()
    return (
        f"depth max|d| {depth.max():.4f} m (median {np.median(depth):.5f}), feature cosine min {cosine.min():.5f}, "
        f"score max|d| {scores:.4f}, mask logit max|d| {masks:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random", help="backbone and depth-head weights: random, pretrained, path")
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(f"SKIP: PyTorch {torch.__version__} sees no CUDA device; run this on a machine with an NVIDIA GPU")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False  # a true fp32 reference
    torch.backends.cudnn.allow_tf32 = False

    from dinov2_ros.model.factory import build_perception_graph
    from dinov2_ros.model.heads.exemplar import ExemplarHead
    from dinov2_ros.runtime.backends.torch_backend import TorchBackend
    from dinov2_ros.runtime.graph_spec import GraphSpec

    spec = GraphSpec(
        "vits14",
        480,
        640,
        448,
        448,
        heads=("depth", "exemplar"),
        top_k=100,
        max_prototypes=64,
        embed_dim=384,
        features=True,
    )
    graph = build_perception_graph(spec, args.weights, args.weights, "nyu", "linear", ExemplarHead(16, spec.top_k))
    fp32 = TorchBackend(graph, device="cuda", precision="fp32")
    fp16 = TorchBackend(graph, device="cuda", precision="fp16")
    print(f"{torch.cuda.get_device_name()} torch {torch.__version__}: {spec.key}, weights {args.weights}")
    rng = np.random.default_rng(0)
    for batch in (1, 4):
        frames = structured_frames(batch, spec.camera_height, spec.camera_width)
        # teach prototypes from the fp32 features of the frames, so the detection head has objects to find
        probe = {
            "images": frames,
            "prototypes": np.eye(spec.max_prototypes, spec.embed_dim, dtype=np.float32),
            "prototype_classes": np.full(spec.max_prototypes, -1, np.int32),
        }
        tokens = fp32.infer(probe)["features"][0].reshape(spec.embed_dim, -1).T
        picked = tokens[rng.choice(len(tokens), spec.max_prototypes, replace=False)]
        inputs = {
            "images": frames,
            "prototypes": (picked / np.linalg.norm(picked, axis=1, keepdims=True)).astype(np.float32),
            "prototype_classes": (np.arange(spec.max_prototypes) % 16).astype(np.int32),
        }
        reference, fp32_time = timed(fp32, inputs, args.iterations)
        got, fp16_time = timed(fp16, inputs, args.iterations)
        print(
            f"batch {batch}: fp16 vs fp32 {compare(reference, got, spec.embed_dim)}; "
            f"fp32 median {fp32_time.median_ms:.2f} ms p99 {fp32_time.p99_ms:.2f}; "
            f"fp16 median {fp16_time.median_ms:.2f} ms p99 {fp16_time.p99_ms:.2f}; "
            f"speed-up {fp32_time.median_ms / fp16_time.median_ms:.2f}x; "
            f"{1e3 * batch / fp16_time.median_ms:.1f} frames/s fp16",
            flush=True,
        )
    tensorrt_engines(args.weights, args.iterations, inputs)
    return 0


def tensorrt_engines(weights: str, iterations: int, inputs: dict[str, np.ndarray]) -> None:
    """fp32, fp16 and int8 TensorRT engines of the node's graph (448x448 input) against ONNX Runtime's
    fp32 graph on the same batch: errors and latency, one line each."""
    import importlib.util
    import tempfile

    if importlib.util.find_spec("tensorrt") is None:
        print("SKIP TensorRT engines: the `tensorrt` Python package is not installed here")
        return
    from dinov2_ros.cli.calibration import calibration_images
    from dinov2_ros.export.graph_builder import GraphBuilder
    from dinov2_ros.runtime.model_settings import ModelSettings

    height, width = inputs["images"].shape[1:3]
    with tempfile.TemporaryDirectory() as store:
        values = {
            "model.weights": weights,
            "model.depth_weights": weights,
            "model.depth_kind": "linear",
            "model.input_height": 448,
            "model.input_width": 448,
            "model.top_k": 100,
            "model.graph_dir": store,
            "backend.max_batch": len(inputs["images"]),
        }
        reference_builder = GraphBuilder(ModelSettings.from_values({**values, "backend.kind": "onnxruntime"}))
        with reference_builder.open(height, width) as onnxruntime:
            reference = onnxruntime.infer(inputs)
        embed_dim = reference["features"].shape[1]
        for precision in ("fp32", "fp16", "int8"):
            settings = ModelSettings.from_values({**values, "backend.kind": "tensorrt", "backend.precision": precision})
            builder = GraphBuilder(settings, lambda: calibration_images(""))
            try:
                with builder.open(height, width) as engine:
                    got, latency = timed(engine, inputs, iterations)
            except Exception as error:  # one engine failing must not hide the others' lines
                print(f"TensorRT {precision}: FAILED {type(error).__name__}: {error}", flush=True)
                continue
            print(
                f"TensorRT {precision} vs ONNX Runtime fp32, batch {len(inputs['images'])}: "
                f"{compare(reference, got, embed_dim)}; median {latency.median_ms:.2f} ms p99 {latency.p99_ms:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
