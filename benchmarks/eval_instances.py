"""Instance masks against ground truth: the exemplar detector's masks at the node's default input size.

Synthetic scenes (640x480, tools/scenes/synthetic_scenes.py); vits14 with random weights (asked for:
no weights can be downloaded here, so the figures measure the mask path, not DINOv2's features),
graph at 224x308 as config/perception.yaml sets it, PyTorch backend on the CPU. Each class is taught
from up to three example boxes (as `dinov2/add_class` does), then for held-out scenes every ground
truth part found by a detection of its class (box IoU >= 0.5) is scored by the IoU of the
detection's mask with the part's true mask. Prints per class the mean mask IoU, and the IoU of the
box (filled) for comparison, plus how coarse a patch is in camera pixels.

    .venv/bin/python benchmarks/eval_instances.py
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch

from dinov2_ros.model import create_backbone
from dinov2_ros.model.heads.exemplar import ExemplarHead
from dinov2_ros.model.perception_graph import PerceptionGraph
from dinov2_ros.perception.frame import CameraFrame
from dinov2_ros.perception.frame_pipeline import FramePipeline
from dinov2_ros.perception.prototypes import PrototypeStore
from dinov2_ros.runtime.backends.torch_backend import TorchBackend
from dinov2_ros.runtime.graph_spec import PATCH_SIZE, GraphSpec
from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator


def box_iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=int, nargs=2, default=[224, 308], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--scenes", type=int, default=30, help="held-out scenes")
    args = parser.parse_args()
    torch.set_num_threads(2)
    height, width = args.input
    spec = GraphSpec("vits14", 480, 640, height, width, heads=("exemplar",), top_k=20, max_classes=16, features=True)
    graph = PerceptionGraph(spec, create_backbone("vits14", "random"), None, ExemplarHead(max_classes=16, top_k=20))
    backend = TorchBackend(graph, device="cpu")
    pipeline = FramePipeline(lambda h, w: backend, PrototypeStore("vits14:random", (height, width), 384))
    generator = SyntheticSceneGenerator(0, 640, 480)
    taught: dict[str, int] = defaultdict(int)
    for index in range(12):  # one new example per scene, up to three per class, as the demo teaches
        scene = generator.render(index)
        pipeline.process([CameraFrame("camera", scene.image_rgb)])
        for box, class_id in zip(scene.boxes, scene.class_ids, strict=True):
            name = generator.class_names[class_id]
            if taught[name] < 3:
                pipeline.add_class_from_box("camera", name, box.tolist())
                taught[name] += 1
                break
    masks, boxes, missed = defaultdict(list), defaultdict(list), defaultdict(int)
    for index in range(100, 100 + args.scenes):
        scene = generator.render(index)
        (result,) = pipeline.process([CameraFrame("camera", scene.image_rgb)])
        for box, class_id, truth in zip(scene.boxes, scene.class_ids, scene.masks, strict=True):
            name = generator.class_names[class_id]
            found = [d for d in result.detections if d.label == name and box_iou(d.box, box) >= 0.5]
            if not found:
                missed[name] += 1
                continue
            best = max(found, key=lambda d: box_iou(d.box, box))
            masks[name].append(mask_iou(best.mask, truth))
            filled = np.zeros_like(truth)
            x1, y1, x2, y2 = (round(float(v)) for v in best.box)
            filled[y1:y2, x1:x2] = True
            boxes[name].append(mask_iou(filled, truth))
    print(
        f"vits14 random, input {width}x{height}: a patch is {640 / width * PATCH_SIZE:.0f}x"
        f"{480 / height * PATCH_SIZE:.0f} camera pixels; taught {dict(taught)}"
    )
    for name in generator.class_names:
        if masks[name]:
            print(
                f"  {name:<8} mask IoU {np.mean(masks[name]):.3f} (box as mask {np.mean(boxes[name]):.3f}) over "
                f"{len(masks[name])} found parts, {missed[name]} not found"
            )
        else:
            print(f"  {name:<8} no part found ({missed[name]} not found)")


if __name__ == "__main__":
    main()
