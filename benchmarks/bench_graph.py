"""Whole perception graph vs the bare encoder, and the node-side work around it (issue 12, "Performance").

vits14 (random weights) with the linear NYU depth head and the exemplar detection head, 640x480 camera
frames, at 224x224 and 448x448 model input: ONNX Runtime on the CPU in fp32 and int8 (MatMuls) by
default; `--device cuda` runs ONNX Runtime's CUDA provider where onnxruntime-gpu is installed (fp32;
the int8 MatMuls are a CPU kernel), and `--backend torch` the PyTorch graph (fp32, and fp16 autocast
on CUDA), so a GPU machine fills in its column with the same cases. The exemplar head holds 16 taught
classes (64 prototypes): 10 classes taught from patches of the frame itself, so 10 detections are live
(score > 0.5, printed), and 6 from random features. The whole graph and the bare encoder forward
(already-normalised input -> last patch map, copied to the host as the graph's outputs are) run
interleaved in the same loop with the same session options; the ratio of their medians is the graph's
overhead. Node-side work: copy in (message bytes -> reused batch buffer), copy out (depth to message
bytes), decode (detection rows -> boxes and camera-size masks for 10 objects, as FramePipeline does).

    .venv/bin/python benchmarks/bench_graph.py [--sizes 224 448] [--precisions fp32 int8] [--iterations 30]
        [--threads 1] [--backend onnxruntime|torch] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.tools.latency import export_bare_encoder, time_interleaved

LOG = logging.getLogger("bench_graph")
CAMERA = (480, 640)
DECODED_OBJECTS = 10
TAUGHT_CLASSES, LIVE_CLASSES, PROTOTYPES_PER_CLASS = 16, 10, 4


def build(size: int, directory: Path, opset: int, depth_kind: str):
    """Export the whole graph and the bare encoder for one input size; returns (spec, graph path, encoder
    path, graph inputs with the taught prototypes)."""
    from dinov2_ros.export.core_export import export_graph

    spec, graph, inputs = torch_graph(size, depth_kind)
    graph_path = export_graph(graph, directory / f"{spec.key}.onnx", opset=opset)
    encoder_path = export_bare_encoder(graph.backbone, size, size, directory / f"encoder{size}.onnx", opset)
    return spec, graph_path, encoder_path, inputs


def torch_graph(size: int, depth_kind: str):
    """(spec, the PyTorch PerceptionGraph, graph inputs with the taught prototypes) for one input size."""
    from dinov2_ros.model.factory import build_perception_graph
    from dinov2_ros.model.heads.exemplar import ExemplarHead

    spec = GraphSpec("vits14", *CAMERA, size, size, heads=("depth", "exemplar"), top_k=100, max_prototypes=64)
    graph = build_perception_graph(spec, "random", "random", "nyu", depth_kind, ExemplarHead(16, spec.top_k))
    return spec, graph, taught_inputs(graph)


def taught_inputs(graph) -> dict[str, np.ndarray]:
    """A frame and 16 taught classes: 10 from the frame's own patch features (each a confident detection
    with random weights), 6 from random directions (taught, but found nowhere)."""
    import torch
    import torch.nn.functional as F

    spec = graph.spec
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (1, *CAMERA, 3), dtype=np.uint8)
    with torch.no_grad():
        x = graph.preprocess(torch.from_numpy(images))
        patch_map = graph.backbone.get_intermediate_layers(x, (graph.core.last,), norm=True)[0][0]
    features = F.normalize(patch_map[0].flatten(1).T, dim=1).numpy()  # (cells, D)
    rows, cols = patch_map.shape[-2:]
    # LIVE_CLASSES peaks spread over the grid, each taught from its patch and 3 neighbours
    centres = [(rows * (1 + 2 * (i // 5)) // 4, cols * (1 + 2 * (i % 5)) // 10) for i in range(LIVE_CLASSES)]
    taught = [features[r * cols + c + offset] for r, c in centres for offset in (0, 1, cols, cols + 1)]
    random = rng.standard_normal((spec.max_prototypes - len(taught), spec.embed_dim)).astype(np.float32)
    prototypes = np.concatenate([np.stack(taught), random / np.linalg.norm(random, axis=1, keepdims=True)])
    classes = np.arange(spec.max_prototypes) // PROTOTYPES_PER_CLASS
    return {
        "images": images,
        "prototypes": prototypes.astype(np.float32),
        "prototype_classes": classes.astype(np.int32),
    }


def node_side_stages(spec: GraphSpec, outputs: dict[str, np.ndarray], batch: np.ndarray):
    """The per-frame host work of the node, as callables for the timing loop."""
    from dinov2_ros.perception.detection_decoding import camera_to_grid_affine, mask_to_camera

    message = np.random.default_rng(0).integers(0, 256, batch.shape[1:], dtype=np.uint8).tobytes()
    camera_to_grid = camera_to_grid_affine(spec)
    rows = outputs["detections"][0].copy()
    picked = np.arange(DECODED_OBJECTS)
    rows[picked, :4] = [[100, 80, 300, 260]]  # random weights find nothing: decode boxes of a plausible size
    rows[picked, 4] = 0.9
    rows[picked, 5] = 1

    def copy_in():
        batch[0] = np.frombuffer(message, np.uint8).reshape(batch.shape[1:])

    def copy_out():
        return outputs["depth"][0].tobytes()

    def decode():
        keep = np.flatnonzero((rows[:, 4] > 0.5) & (rows[:, 5] >= 0))
        return [mask_to_camera(outputs["masks"][0][i], rows[i, :4], camera_to_grid, CAMERA) for i in keep]

    return {"copy in": copy_in, "copy out": copy_out, "decode": decode}


def run_case(spec, graph_path: Path, encoder_path: Path, inputs, precision: str, args) -> str:
    """ONNX Runtime: the whole graph through OnnxRuntimeBackend against the bare encoder's session."""
    import onnxruntime as ort

    from dinov2_ros.export.quantize import quantize_graph, quantize_matmuls
    from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    if precision == "int8":
        graph_path = quantize_graph(graph_path, graph_path.with_suffix(".int8.onnx"))
        encoder_path = quantize_matmuls(encoder_path, encoder_path.with_suffix(".int8.onnx"))
    backend = OnnxRuntimeBackend(graph_path, spec, device=args.device, threads=args.threads)
    # the backend's options: without force_spinning_stop the encoder's idle threads would spin into
    # the graph's run and bill it for their spinning
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.add_session_config_entry("session.force_spinning_stop", "1")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if args.device == "cuda" else ["CPUExecutionProvider"]
    encoder = ort.InferenceSession(str(encoder_path), options, providers=providers)
    normalised = np.random.default_rng(1).standard_normal((1, 3, spec.input_height, spec.input_width))
    feed = {"x": normalised.astype(np.float32)}
    where = f"ONNX Runtime {'CUDA' if args.device == 'cuda' else 'CPU'}, threads {args.threads or 'auto'}"
    return timed_case(spec, backend, lambda: encoder.run(None, feed), inputs, precision, where, args.iterations)


def run_torch_case(spec, graph, inputs, precision: str, args) -> str:
    """PyTorch: the whole graph through TorchBackend against the bare encoder module, on `args.device`."""
    import torch

    from dinov2_ros.model.perception_graph import BareEncoder
    from dinov2_ros.runtime.backends.torch_backend import TorchBackend

    backend = TorchBackend(graph, device=args.device, precision=precision)
    encoder = BareEncoder(graph.backbone, spec.input_height, spec.input_width).to(backend.device)
    normalised = torch.randn(1, 3, spec.input_height, spec.input_width, device=backend.device)

    def bare_encoder():
        with (
            torch.inference_mode(),
            torch.autocast(backend.device.type, dtype=torch.float16, enabled=precision == "fp16"),
        ):
            return encoder(normalised).float().cpu()  # to the host, as the graph's outputs: the call's end

    where = f"PyTorch {backend.device.type}" + (f", threads {torch.get_num_threads()}" if args.device == "cpu" else "")
    return timed_case(spec, backend, bare_encoder, inputs, precision, where, args.iterations)


def timed_case(spec, backend, bare_encoder, inputs, precision: str, where: str, iterations: int) -> str:
    """Time the whole graph, the bare encoder and the node-side work interleaved; the report's lines."""
    outputs = backend.infer(inputs)
    live = int((outputs["detections"][0, :, 4] > 0.5).sum())
    stages = {
        "whole graph": lambda: backend.infer(inputs),
        "bare encoder": bare_encoder,
        **node_side_stages(spec, outputs, inputs["images"].copy()),
    }
    LOG.info("timing %s %s on %s (%d iterations)", spec.key, precision, where, iterations)
    result = time_interleaved(stages, iterations)
    backend.close()
    node_side = sum(result[name].median_ms for name in ("copy in", "copy out", "decode"))
    ratio = result["whole graph"].median_ms / result["bare encoder"].median_ms
    ratio_min = result["whole graph"].min_ms / result["bare encoder"].min_ms
    lines = [f"{name:>12}: {latency}" for name, latency in result.items()]
    summary = (
        f"{spec.input_height}x{spec.input_width} {precision} ({where}): graph/encoder = {ratio:.3f} (medians), "
        f"{ratio_min:.3f} (minima), "
        f"node-side (copy in + copy out + decode, medians) = {node_side:.3f} ms, "
        f"graph {1e3 / result['whole graph'].median_ms:.1f} FPS"
    )
    header = (
        f"--- {spec.key} {where} {precision}, load average {os.getloadavg()[0]:.2f}, "
        f"{TAUGHT_CLASSES} classes taught, {live} live detections"
    )
    return "\n".join([header, *lines, summary])


# what each backend and device can run (ONNX Runtime's int8 MatMuls are a CPU kernel; fp16 autocast needs CUDA)
PRECISIONS = {
    ("onnxruntime", "cpu"): ("fp32", "int8"),
    ("onnxruntime", "cuda"): ("fp32",),
    ("torch", "cpu"): ("fp32",),
    ("torch", "cuda"): ("fp32", "fp16"),
}


def cuda_problem(backend: str) -> str:
    """Why `backend` cannot run on CUDA here, or "" (checked before minutes of export)."""
    if backend == "torch":
        import torch

        return "" if torch.cuda.is_available() else "--device cuda: this PyTorch sees no CUDA device"
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ""
    return f"--device cuda: ONNX Runtime has no CUDAExecutionProvider here ({ort.get_available_providers()}); install onnxruntime-gpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    parser.add_argument(
        "--precisions", nargs="+", choices=("fp32", "int8", "fp16"), help="default: all the backend runs"
    )
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: one per core)")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--depth-kind", choices=("linear", "linear4"), default="linear")
    parser.add_argument("--backend", choices=("onnxruntime", "torch"), default="onnxruntime")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args(argv)
    runs = PRECISIONS[(args.backend, args.device)]
    precisions = args.precisions or list(runs)
    if unknown := [p for p in precisions if p not in runs]:
        parser.error(
            f"--backend {args.backend} --device {args.device} runs {', '.join(runs)}, not {', '.join(unknown)}"
        )
    if args.device == "cuda" and (problem := cuda_problem(args.backend)):
        parser.error(problem)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summaries = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            if args.backend == "torch":
                spec, graph, inputs = torch_graph(size, args.depth_kind)
                reports = [run_torch_case(spec, graph, inputs, precision, args) for precision in precisions]
            else:
                spec, graph_path, encoder_path, inputs = build(size, Path(scratch), args.opset, args.depth_kind)
                reports = [run_case(spec, graph_path, encoder_path, inputs, p, args) for p in precisions]
            for report in reports:
                print(report, flush=True)
                summaries.append(report.splitlines()[-1])
    print("\nsummary (vits14, depth " + args.depth_kind + " + exemplar head, 640x480 frames, batch 1):")
    print("\n".join(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
