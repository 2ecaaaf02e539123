"""How far the fp16 copy for strongly typed TensorRT builds is from the fp32 graph, in ONNX Runtime on the CPU.

Takes a graph written by `dinov2-ros export`, makes the mixed-precision copy the TensorRT fp16 build
parses on TensorRT >= 10.12 (`mixed_precision.fp16_graph`), runs both in ONNX Runtime's CPU provider
on the same frames (gradients and a bright square per frame, prototypes from the fp32 graph's own
features so the exemplar head detects something), and prints the largest error of each output. It
also prints the TensorRT restrictions each graph breaks per version (`tensorrt_compat`), none expected.
A TensorRT engine can differ further (other kernels); compare it on the GPU.

    .venv/bin/python benchmarks/fp16_graph_error.py GRAPH.onnx [--batch 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
import onnxruntime as ort

from dinov2_ros.export.mixed_precision import fp16_graph
from dinov2_ros.export.tensorrt_compat import graph_violations
from dinov2_ros.runtime.backends.base import per_frame
from dinov2_ros.runtime.graph_file import load_graph_spec

VERSIONS = ("10.3.0", "10.12.0", "10.16.0", "11.4.0")


def structured_frames(batch: int, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    frames = np.zeros((batch, height, width, 3), np.uint8)
    frames[..., 0], frames[..., 1] = x * 255 // width, y * 255 // height
    for index in range(batch):
        top, left = height // 8 + 20 * index, width // 8 + 30 * index
        frames[index, top : top + height // 4, left : left + width // 4] = (230, 40, 180)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graph", help="fp32 graph from `dinov2-ros export`")
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    spec = load_graph_spec(args.graph)
    model = onnx.load(args.graph)
    start = time.perf_counter()
    mixed = fp16_graph(model, spec)
    print(f"fp16 copy made in {time.perf_counter() - start:.2f} s ({mixed.ByteSize() / 1e6:.1f} MB)")
    for name, graph in (("fp32", model), ("fp16", mixed)):
        for version in VERSIONS:
            print(f"{name} graph, TensorRT {version}: {graph_violations(graph, version) or 'no violations'}")
    sessions = {
        name: ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        for name, graph in (("fp32", model), ("fp16", mixed))
    }
    inputs = {"images": structured_frames(args.batch, spec.camera_height, spec.camera_width)}
    output_names = [output.name for output in model.graph.output]
    if spec.exemplar:
        probe = {
            "prototypes": np.eye(spec.max_prototypes, spec.embed_dim, dtype=np.float32),
            "prototype_classes": np.full(spec.max_prototypes, -1, np.int32),
        }
        probe_inputs = per_frame(spec.input_specs(), inputs | probe)
        features = dict(zip(output_names, sessions["fp32"].run(None, probe_inputs), strict=True))["features"]
        tokens = features[0].reshape(spec.embed_dim, -1).T  # a few patch tokens of frame 0 as prototypes
        picked = tokens[np.linspace(0, len(tokens) - 1, spec.max_prototypes).astype(int)]
        inputs["prototypes"] = (picked / np.linalg.norm(picked, axis=1, keepdims=True)).astype(np.float32)
        inputs["prototype_classes"] = (np.arange(spec.max_prototypes) % 4).astype(np.int32)
    inputs = per_frame(spec.input_specs(), inputs)  # the graph takes prototypes per frame
    outputs = {name: dict(zip(output_names, s.run(None, inputs), strict=True)) for name, s in sessions.items()}
    both = None  # detection rows both graphs fill with the same class: where scores and masks compare
    if spec.detection:
        reference, got = outputs["fp32"]["detections"], outputs["fp16"]["detections"]
        both = (reference[..., 4] > 0) & (got[..., 4] > 0) & (reference[..., 5] == got[..., 5])
        counts = {name: (out["detections"][..., 4] > 0).sum(axis=1).tolist() for name, out in outputs.items()}
        error = np.abs(got[..., 4] - reference[..., 4])[both].max(initial=0.0)
        print(f"detections per frame: {counts}; {both.sum()} rows alike, their score max abs error {error:.2e}")
    for name in output_names:
        reference, got = outputs["fp32"][name], outputs["fp16"][name]
        if name == "detections":
            continue
        if name == "masks":
            reference, got = reference[both], got[both]
            name = "masks (rows alike)"
        error = np.abs(got - reference)
        print(
            f"{name}: max abs error {error.max():.2e}, mean {error.mean():.2e} "
            f"(fp32 values span {reference.min():.3g} .. {reference.max():.3g})"
        )


if __name__ == "__main__":
    main()
