"""`dinov2-ros export`: write the perception graph for one camera resolution to ONNX (optionally int8 too).

The graph options (`add_graph_arguments`, `graph_from_args`) are shared with `dinov2-ros bench`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

_LOG = logging.getLogger(__name__)


def parse_size(text: str) -> tuple[int, int]:
    """ "640x480" (width x height) -> (height, width)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"width and height must be >= 1, got {text!r}")
    return height, width


def add_graph_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that pick the model and the graph: variant, weights, sizes, resize mode and heads."""
    from dinov2_ros.model.variants import DEPTH_DATASETS, DEPTH_HEAD_KINDS
    from dinov2_ros.runtime.graph_spec import HEADS, RESIZE_MODES

    parser.add_argument("--variant", default="vits14", help="backbone: vits14, vitb14, vitl14, vitg14 (+ _reg4)")
    parser.add_argument("--weights", default="pretrained", help="'pretrained', 'random' or a checkpoint path")
    parser.add_argument("--camera", type=parse_size, default=(480, 640), help="camera WIDTHxHEIGHT (640x480)")
    parser.add_argument(
        "--input", type=parse_size, default=(448, 448), help="model input WIDTHxHEIGHT, multiples of 14"
    )
    parser.add_argument("--resize", choices=RESIZE_MODES, default="stretch")
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=["depth", "exemplar"])
    parser.add_argument("--depth-weights", default="pretrained", help="'pretrained', 'random' or a path")
    parser.add_argument("--depth-dataset", choices=tuple(DEPTH_DATASETS), default="nyu")
    parser.add_argument("--depth-kind", choices=DEPTH_HEAD_KINDS, default="linear")
    parser.add_argument("--center-head", type=Path, help="checkpoint from `dinov2-ros train-detector`")
    parser.add_argument("--top-k", type=int, default=100, help="detection rows per frame")
    parser.add_argument("--max-prototypes", type=int, default=64, help="prototype slots of the exemplar head")
    parser.add_argument("--max-classes", type=int, default=16, help="class ids the exemplar head can report")
    parser.add_argument("--features", action="store_true", help="also output the patch features (teaching)")


def graph_from_args(args: argparse.Namespace):
    """The PerceptionGraph the options describe, and a trained head's class names (or None); imports torch."""
    from dinov2_ros.model.variants import get_variant
    from dinov2_ros.runtime.factory import build_perception_graph
    from dinov2_ros.runtime.graph_spec import GraphSpec

    spec = GraphSpec(
        variant=args.variant,
        camera_height=args.camera[0],
        camera_width=args.camera[1],
        input_height=args.input[0],
        input_width=args.input[1],
        resize=args.resize,
        heads=tuple(args.heads),
        top_k=args.top_k,
        max_prototypes=args.max_prototypes,
        embed_dim=get_variant(args.variant).embed_dim,
        features=args.features,
    )
    head, class_names = None, None
    if spec.exemplar:
        from dinov2_ros.model.exemplar_head import ExemplarHead

        head = ExemplarHead(max_classes=args.max_classes, top_k=spec.top_k)
    elif spec.detection == "center":
        from dinov2_ros.model.center_head import load_center_head
        from dinov2_ros.perception.prototypes import encoder_name

        if args.center_head is None:
            raise ValueError("--heads center needs --center-head PATH (train one with `dinov2-ros train-detector`)")
        # train-detector names the encoder by variant and weights, and records the resize it trained with
        head, info = load_center_head(
            args.center_head,
            encoder_name(args.variant, args.weights),
            args.input,
            top_k=spec.top_k,
            expected_resize=spec.resize,
        )
        class_names = info.class_names
    depth_weights = args.depth_weights if spec.depth else None
    graph = build_perception_graph(spec, args.weights, depth_weights, args.depth_dataset, args.depth_kind, head)
    return graph, class_names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export the perception graph for one camera size to ONNX")
    add_graph_arguments(parser)
    parser.add_argument("--output-dir", type=Path, default=Path("artifacts/graphs"), help="where to write")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17)")
    parser.add_argument("--int8", action="store_true", help="also write a MatMul-int8 copy for ONNX Runtime on CPU")
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from dinov2_ros.runtime.onnx_export import export_graph

    try:
        graph, class_names = graph_from_args(args)
    except ValueError as error:
        _LOG.error("%s", error)
        return 2
    path = export_graph(graph, args.output_dir / f"{graph.spec.key}.onnx", opset=args.opset, class_names=class_names)
    print(path)
    if args.int8:
        from dinov2_ros.runtime.quantize import quantize_graph

        print(quantize_graph(path, path.with_suffix(".int8.onnx")))
    return 0
