"""`dinov2-ros bench`: per-stage and end-to-end latency (median, p99) and FPS of the perception graph.

Stages per call: copy in (camera frames into the reused batch buffer), the graph, copy out (depth to
message bytes). The bare encoder forward on an already-normalised input runs in the same loop with
the same backend settings, and the graph/encoder ratio is printed: the cost of everything around
the encoder. With `--backend tensorrt` the encoder baseline is skipped (it would need its own engine);
with `--backend triton` the graph is the server's model of these settings (`--triton-url`; written by
`dinov2-ros export --triton-repository` with the same options), its time a call's round trip.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from dinov2_ros.cli.model_options import add_model_options, parse_size, settings_from_args
from dinov2_ros.weights.cache import WeightsError

_LOG = logging.getLogger(__name__)
# bench runs without weights on disk unless told otherwise: random weights, asked for explicitly
BENCH_DEFAULTS = {"model.weights": "random", "model.depth_weights": "random"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="latency and FPS of the whole graph vs the bare encoder")
    add_model_options(parser)
    parser.add_argument("--camera", type=parse_size, default=(480, 640), help="camera WIDTHxHEIGHT (640x480)")
    parser.add_argument("--batch", type=int, default=1, help="frames per call (cameras)")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--opset", type=int, default=18)
    parser.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from dinov2_ros.model.factory import perception_graph_for
    from dinov2_ros.runtime.backend_opener import BackendOpener
    from dinov2_ros.tools.latency import time_interleaved

    if args.batch < 1:
        _LOG.error("--batch must be >= 1, got %d", args.batch)
        return 2
    try:
        settings = settings_from_args(args, BENCH_DEFAULTS)
        graph, _ = perception_graph_for(settings, BackendOpener(settings).spec_for(*args.camera))
        with tempfile.TemporaryDirectory() as scratch:
            backend, encoder = _open(args, settings, graph, Path(scratch))
            with backend:
                stages = _stages(args, settings, graph.spec, backend, encoder)
                result = time_interleaved(stages, args.iterations, args.warmup)
    except (ImportError, ValueError, FileNotFoundError, WeightsError, ConnectionError) as error:
        _LOG.error("%s", error)
        return 2
    print(
        f"{graph.spec.key}  backend {settings.backend} {settings.backend_precision}  batch {args.batch}  "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for name, latency in result.items():
        print(f"{name:>14}: {latency}")
    end_to_end = result["end to end"].median_ms
    print(f"{'FPS':>14}: {1e3 * args.batch / end_to_end:8.2f} frames/s (end to end, median)")
    if "bare encoder" in result:
        whole, bare = result["graph"], result["bare encoder"]
        ratios = f"{whole.median_ms / bare.median_ms:8.3f} (medians), {whole.min_ms / bare.min_ms:.3f} (minima)"
        print(f"{'graph/encoder':>14}: {ratios}")
    return 0


def _open(args: argparse.Namespace, settings, graph, scratch: Path):
    """(backend, bare-encoder callable or None) for the chosen backend and precision."""
    from dinov2_ros.model.perception_graph import BareEncoder
    from dinov2_ros.runtime.backends import create_backend

    spec = graph.spec
    shape = (args.batch, 3, spec.input_height, spec.input_width)
    precision = settings.backend_precision
    if settings.backend == "triton":  # the server's model of these settings; no bare encoder runs there
        from dinov2_ros.runtime.backend_opener import BackendOpener

        return BackendOpener(settings).open(*args.camera), None
    if settings.backend == "torch":
        import torch

        backend = create_backend("torch", spec, graph=graph, device=settings.device, precision=precision)
        encoder_module = BareEncoder(graph.backbone, spec.input_height, spec.input_width).to(backend.device)
        x = torch.randn(shape, device=backend.device)
        fp16 = backend.precision == "fp16"

        def encoder():
            with torch.inference_mode(), torch.autocast(backend.device.type, torch.float16, enabled=fp16):
                encoder_module(x)
            if backend.device.type == "cuda":
                torch.cuda.synchronize()

        return backend, encoder
    from dinov2_ros.export.core_export import export_graph

    path = export_graph(graph, scratch / f"{spec.key}.onnx", opset=args.opset)
    if settings.backend == "tensorrt":
        from dinov2_ros.export.engine_build import build_engine
        from dinov2_ros.runtime.backends.tensorrt.loader import EngineLoader
        from dinov2_ros.runtime.backends.tensorrt.runner import TensorRTRunner

        loader = EngineLoader(path, spec, precision, args.batch, scratch / "engines")
        build_engine(loader)
        return TensorRTRunner(loader), None
    import onnxruntime as ort

    from dinov2_ros.tools.latency import export_bare_encoder

    encoder_path = export_bare_encoder(
        graph.backbone, spec.input_height, spec.input_width, scratch / "encoder.onnx", args.opset
    )
    if precision == "int8":
        from dinov2_ros.export.quantize import quantize_graph, quantize_matmuls

        path = quantize_graph(path, path.with_suffix(".int8.onnx"))
        encoder_path = quantize_matmuls(encoder_path, scratch / "encoder.int8.onnx")
    backend = create_backend("onnxruntime", spec, onnx_path=path, device=settings.device, threads=settings.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    session = ort.InferenceSession(str(encoder_path), options, providers=backend.providers)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return backend, lambda: session.run(None, {"x": x})


def _stages(args: argparse.Namespace, settings, spec, backend, encoder) -> dict:
    rng = np.random.default_rng(1)
    frames = [
        rng.integers(0, 256, (spec.camera_height, spec.camera_width, 3), dtype=np.uint8).tobytes()
        for _ in range(args.batch)
    ]
    batch = np.empty((args.batch, spec.camera_height, spec.camera_width, 3), np.uint8)
    inputs = {"images": batch}
    if spec.exemplar:
        prototypes = rng.standard_normal((spec.max_prototypes, spec.embed_dim)).astype(np.float32)
        inputs["prototypes"] = prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True)
        inputs["prototype_classes"] = (np.arange(spec.max_prototypes) % settings.max_classes).astype(np.int32)
    outputs = {}

    def copy_in():
        for row, frame in enumerate(frames):
            batch[row] = np.frombuffer(frame, np.uint8).reshape(batch.shape[1:])

    def run_graph():
        outputs.update(backend.infer(inputs))

    def copy_out():
        return [outputs[name][row].tobytes() for name in ("depth",) if name in outputs for row in range(args.batch)]

    def end_to_end():
        copy_in()
        run_graph()
        copy_out()

    stages = {"copy in": copy_in, "graph": run_graph, "copy out": copy_out, "end to end": end_to_end}
    if encoder is not None:
        stages["bare encoder"] = encoder
    return stages
