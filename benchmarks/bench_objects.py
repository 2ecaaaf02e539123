"""CPU time of the object path: synthetic scenes, the two detection heads, and 3D lifting, with baselines.

Each section times its subjects interleaved with a baseline measured in the same run, so load from
other processes hits both alike: a scene against copying a frame of the same size; the heads (torch
eager and ONNX Runtime, fp32) against the vits14 encoder (random weights, torch eager) that feeds
them, at the same input size; 3D lifting of K detections against the per-frame 16UC1 -> metres
conversion. Prints median and p99 in ms.

    .venv/bin/python benchmarks/bench_objects.py --iters 30
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from dinov2_ros.model import create_backbone
from dinov2_ros.model.heads.center import CenterHead
from dinov2_ros.model.heads.exemplar import ExemplarHead
from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.depth import depth_to_metres
from dinov2_ros.perception.object_lifting import ObjectLifter
from dinov2_ros.tools.latency import Latency, time_interleaved
from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator


def onnx_session(head: torch.nn.Module, inputs: tuple[torch.Tensor, ...]):
    """An ONNX Runtime CPU session of `head` exported as the runtime exports graphs (dynamo, opset 18)."""
    import onnxruntime as ort

    names = [f"input_{i}" for i in range(len(inputs))]
    with tempfile.TemporaryDirectory() as scratch, torch.no_grad():
        path = Path(scratch) / "head.onnx"
        torch.onnx.export(head, inputs, input_names=names, opset_version=18, dynamo=True, verbose=False).save(str(path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def report(title: str, latencies: dict[str, Latency]) -> None:
    print(f"\n{title}")
    for name, latency in latencies.items():
        print(f"  {name:<44} median {latency.median_ms:9.3f} ms   p99 {latency.p99_ms:9.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--input", type=int, nargs=2, default=[476, 644], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--detections", type=int, default=10, help="detections lifted per frame")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.iters} iterations")

    generator = SyntheticSceneGenerator(0, 640, 480)
    frame = generator.render(0)
    counter = iter(range(10**9))
    report(
        "synthetic scene 640x480 (image, depth, masks, 3D truth)",
        time_interleaved(
            {
                "render(index)": lambda: generator.render(next(counter)),
                "baseline: copy one RGB frame and its depth": lambda: (frame.image_rgb.copy(), frame.depth.copy()),
            },
            args.iters * 10,
            args.warmup,
        ),
    )

    height, width = args.input
    encoder = create_backbone("vits14", "random")
    encoder.bake_pos_embed(height, width)
    image = torch.randn(1, 3, height, width)
    with torch.inference_mode():
        patch_map = encoder.get_intermediate_layers(image, [encoder.num_blocks - 1])[0][0]
    prototypes = torch.nn.functional.normalize(torch.randn(64, encoder.embed_dim), dim=1)
    classes = torch.tensor([i // 4 for i in range(40)] + [-1] * 24, dtype=torch.int32)  # 10 classes x 4
    exemplar = ExemplarHead(max_classes=16, top_k=100).eval()
    center = CenterHead(encoder.embed_dim, num_classes=16, hidden_dim=128, top_k=100).eval()
    exemplar_session = onnx_session(exemplar, (patch_map, prototypes, classes))
    center_session = onnx_session(center, (patch_map,))
    exemplar_feed = {"input_0": patch_map.numpy(), "input_1": prototypes.numpy(), "input_2": classes.numpy()}
    center_feed = {"input_0": patch_map.numpy()}
    with torch.inference_mode():
        report(
            f"heads on the vits14 patch map of a {width}x{height} input ({patch_map.shape[2]}x{patch_map.shape[3]} "
            "patches), fp32",
            time_interleaved(
                {
                    "ExemplarHead (64 prototypes, 16 classes, K=100)": lambda: exemplar(patch_map, prototypes, classes),
                    "ExemplarHead, ONNX Runtime": lambda: exemplar_session.run(None, exemplar_feed),
                    "CenterHead (16 classes, hidden 128, K=100)": lambda: center(patch_map),
                    "CenterHead, ONNX Runtime": lambda: center_session.run(None, center_feed),
                    "baseline: vits14 encoder forward (torch)": lambda: encoder.get_intermediate_layers(image, [11]),
                },
                args.iters,
                args.warmup,
            ),
        )

    camera = PinholeCameraModel(generator.K, np.zeros(5), 640, 480)
    depth_mm = np.nan_to_num(frame.depth * 1000).astype(np.uint16)
    scenes = [generator.render(i) for i in range(50)]
    boxes = np.concatenate([s.boxes for s in scenes])[: args.detections]
    masks = np.concatenate([s.masks for s in scenes])[: args.detections]
    depth_m = depth_to_metres(depth_mm, "16UC1")
    lifter = ObjectLifter()
    report(
        f"3D lifting of {len(boxes)} detections at 640x480",
        time_interleaved(
            {
                "lift with masks": lambda: lifter.lift(depth_m, camera, boxes, masks),
                "lift with boxes only": lambda: lifter.lift(depth_m, camera, boxes),
                "baseline: depth_to_metres(16UC1 frame)": lambda: depth_to_metres(depth_mm, "16UC1"),
            },
            args.iters * 3,
            args.warmup,
        ),
    )


if __name__ == "__main__":
    main()
