"""`dinov2-ros teach`: build a prototype file for the exemplar detector from a folder of example images."""

from __future__ import annotations

import argparse
import logging

_LOG = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "teach",
        help="build a prototype file from example images (a sub-folder per class)",
        description="Each EXAMPLES/<class>/<image> becomes one prototype of <class>; <stem>.mask.png (non-zero "
        "= part) or <stem>.box.txt ('x1 y1 x2 y2' pixels) beside an image marks the part, otherwise the whole "
        "image is the part. Use the encoder, weights and input size the node runs.",
    )
    parser.add_argument("examples", help="folder with one sub-folder of example images per class")
    parser.add_argument("--output", required=True, help="prototype file to write (.npz)")
    parser.add_argument("--variant", default="vits14", help="backbone variant the node runs (default: vits14)")
    parser.add_argument("--weights", required=True, help="backbone weights: 'pretrained', 'random' or a checkpoint")
    parser.add_argument("--input-size", type=int, nargs=2, required=True, metavar=("HEIGHT", "WIDTH"),
                        help="model input size of the node's graph (multiples of 14)")  # fmt: skip
    parser.add_argument("--resize", choices=("stretch", "letterbox"), default="stretch", help="the graph's resize")
    parser.add_argument("--max-per-class", type=int, default=8, help="prototypes kept per class (default: 8)")
    parser.add_argument("--append", action="store_true", help="add to an existing --output file instead of replacing")
    parser.set_defaults(func=_teach)


def _teach(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dinov2_ros.model import create_backbone
    from dinov2_ros.perception.prototypes import PrototypeStore, teach_from_folder
    from dinov2_ros.tools.training.detector_dataset import PatchFeatureExtractor
    from dinov2_ros.weights.identity import encoder_name

    encoder = encoder_name(args.variant, args.weights)
    if args.weights == "random":
        _LOG.warning("RANDOM encoder weights: these prototypes only work with a graph of the same random weights")
    backbone = create_backbone(args.variant, args.weights)
    extractor = PatchFeatureExtractor(backbone, tuple(args.input_size), args.resize)
    output = Path(args.output)
    if args.append and output.is_file():
        store = PrototypeStore.load(output, encoder=encoder, input_size=args.input_size)
    else:
        store = PrototypeStore(encoder, tuple(args.input_size), extractor.embed_dim, args.max_per_class)
    counts = teach_from_folder(args.examples, extractor, store)
    store.save(output)
    for name, count in counts.items():
        _LOG.info("class %r (id %d): %d examples", name, store.class_ids[name], count)
    print(f"wrote {output}: {len(store.class_ids)} classes, {store.prototype_count} prototypes, encoder {encoder}")
    return 0
