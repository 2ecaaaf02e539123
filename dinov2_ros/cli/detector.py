"""`dinov2-ros train-detector` and `eval-detector`: the trainable detection head on COCO-format data."""

from __future__ import annotations

import argparse
import logging

_LOG = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train-detector",
        help="train the lightweight detection head on frozen encoder features (COCO-format data)",
        description="Encoder features are cached in --cache-dir, so later epochs and runs skip the encoder. "
        "Writes last.pt, best.pt (by validation mAP@[.5:.95]), history.json and training.png to --output.",
    )
    train.add_argument("--train", required=True, help="COCO annotation file of the training images")
    train.add_argument("--train-images", help="folder the training file names are relative to (default: its folder)")
    train.add_argument("--val", help="COCO annotation file of the validation images (for mAP and best.pt)")
    train.add_argument("--val-images", help="folder the validation file names are relative to")
    _encoder_arguments(train)
    train.add_argument("--input-size", type=int, nargs=2, required=True, metavar=("HEIGHT", "WIDTH"),
                       help="model input size (multiples of 14); export the graph at this size")  # fmt: skip
    train.add_argument("--resize", choices=("stretch", "letterbox"), default="stretch", help="the graph's resize")
    train.add_argument("--output", required=True, help="folder for checkpoints, history and plot")
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle schedule)")
    train.add_argument("--hidden-dim", type=int, default=128, help="channels of the head's two 3x3 convolutions")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_train)

    evaluate = subparsers.add_parser(
        "eval-detector", help="COCO mAP@[.5:.95] and mAP@.5 (pycocotools) of a trained head on annotated images"
    )
    evaluate.add_argument("--checkpoint", required=True, help="head checkpoint from train-detector (best.pt)")
    evaluate.add_argument("--annotations", required=True, help="COCO annotation file of the evaluation images")
    evaluate.add_argument("--images", help="folder the file names are relative to (default: the file's folder)")
    evaluate.add_argument("--metrics-json", help="also write the metrics (full precision) to this JSON file")
    _encoder_arguments(evaluate)
    evaluate.set_defaults(func=_evaluate)


def _encoder_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", default="vits14", help="backbone variant (default: vits14)")
    parser.add_argument("--weights", required=True, help="backbone weights: 'pretrained', 'random' or a checkpoint")
    parser.add_argument(
        "--cache-dir",
        help="feature cache folder (default: <output or checkpoint folder>/features); entries are keyed by the "
        "variant, the sha256 of the weights file (or the seeded 'random' network), input size, resize and "
        "the dinov2_ros version",
    )


def _cache_key(variant: str, weights: str) -> str:
    """The feature cache's name for the encoder: variant and the content identity of its weights
    (`weights_identity`: 'random-seed0' or the checkpoint's sha256), so other weights are another cache."""
    from dinov2_ros.weights.identity import weights_identity
    from dinov2_ros.weights.variants import get_variant

    return f"{variant}:{weights_identity(weights, get_variant(variant).checkpoint)}"


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dinov2_ros.model import create_backbone
    from dinov2_ros.tools.training.detector_dataset import load_coco
    from dinov2_ros.tools.training.detector_training import TrainingConfig, train_center_head
    from dinov2_ros.weights.identity import encoder_name

    train = load_coco(args.train, args.train_images)
    validation = load_coco(args.val, args.val_images) if args.val else None
    if args.weights == "random":
        _LOG.warning("RANDOM encoder weights: the head will only work with a graph of the same random weights")
    encoder = encoder_name(args.variant, args.weights)
    config = TrainingConfig(args.epochs, args.batch_size, args.lr, hidden_dim=args.hidden_dim, seed=args.seed)
    backbone = create_backbone(args.variant, args.weights)  # fetches 'pretrained' before it is hashed
    result = train_center_head(
        train,
        validation,
        backbone,
        encoder,
        _cache_key(args.variant, args.weights),
        tuple(args.input_size),
        args.output,
        args.cache_dir or Path(args.output) / "features",
        config,
        args.resize,
    )
    final = result.history[-1]
    summary = (
        f"; last val mAP@[.5:.95] {final['map_50_95']:.3f} mAP@.5 {final['map_50']:.3f}" if "map_50" in final else ""
    )
    print(f"wrote {result.best_checkpoint}, {result.last_checkpoint} and {result.plot}{summary}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dinov2_ros.model import create_backbone
    from dinov2_ros.model.heads.center import load_center_head
    from dinov2_ros.tools.training.detector_dataset import PatchFeatureExtractor, cached_features, load_coco
    from dinov2_ros.tools.training.detector_training import evaluate_head
    from dinov2_ros.weights.identity import encoder_name

    encoder = encoder_name(args.variant, args.weights)
    head, info = load_center_head(args.checkpoint, expected_encoder=encoder)
    dataset = load_coco(args.annotations, args.images)
    if dataset.class_names != info.class_names:
        raise ValueError(
            f"{args.annotations} has classes {dataset.class_names}, the head was trained on {info.class_names}; "
            "evaluate on data with the training categories"
        )
    extractor = PatchFeatureExtractor(create_backbone(args.variant, args.weights), info.input_size, info.resize)
    cache_dir = args.cache_dir or Path(args.checkpoint).parent / "features"
    features = cached_features(dataset, extractor, cache_dir, _cache_key(args.variant, args.weights))
    metrics = evaluate_head(head, features, dataset, extractor)
    print(f"mAP@[.5:.95] {metrics.map_50_95:.4f}  mAP@.5 {metrics.map_50:.4f}  ({len(dataset.images)} images)")
    for name, ap in metrics.per_class_ap.items():
        print(f"  {name:<24} AP@[.5:.95] {ap:.4f}")
    if args.metrics_json:
        import json

        from dinov2_ros.atomic_file import atomic_write

        summary = {"map_50_95": metrics.map_50_95, "map_50": metrics.map_50, "per_class_ap": metrics.per_class_ap}
        with atomic_write(args.metrics_json) as temporary:
            temporary.write_text(json.dumps(summary, indent=1))
    return 0
