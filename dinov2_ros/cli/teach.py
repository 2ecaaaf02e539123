"""`dinov2-ros teach`: build a prototype file for the exemplar detector from example images and, with
dino.txt, from parts named in words."""

from __future__ import annotations

import argparse
import logging

_LOG = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "teach",
        help="build a prototype file from example images (a sub-folder per class) and/or text prompts",
        description="Each EXAMPLES/<class>/<image> becomes one prototype of <class>; <stem>.mask.png (non-zero "
        "= part) or <stem>.box.txt ('x1 y1 x2 y2' pixels) beside an image marks the part, otherwise the whole "
        "image is the part. With --dinotxt-weights, each --text adds a prototype from words; a class may mix "
        "both. Use the encoder, weights and input size the node runs.",
    )
    parser.add_argument("examples", nargs="?", help="folder with one sub-folder of example images per class")
    parser.add_argument("--output", required=True, help="prototype file to write (.npz)")
    parser.add_argument("--variant", default="vits14", help="backbone variant the node runs (default: vits14)")
    parser.add_argument("--weights", required=True, help="backbone weights: 'pretrained', 'random' or a checkpoint")
    parser.add_argument("--input-size", type=int, nargs=2, required=True, metavar=("HEIGHT", "WIDTH"),
                        help="model input size of the node's graph (multiples of 14)")  # fmt: skip
    parser.add_argument("--resize", choices=("stretch", "letterbox"), default="stretch", help="the graph's resize")
    parser.add_argument("--max-per-class", type=int, default=8, help="prototypes kept per class (default: 8)")
    parser.add_argument("--append", action="store_true", help="add to an existing --output file instead of replacing")
    parser.add_argument("--dinotxt-weights", default="",
                        help="dino.txt as the node's model.dinotxt_weights ('pretrained', 'random' or a vision head "
                             "file); needs --variant vitl14_reg4")  # fmt: skip
    parser.add_argument("--text", action="append", default=[], metavar="[CLASS=]PROMPT",
                        help="a part named in words, e.g. --text 'blue connector' or --text connector='blue "
                             "connector' (repeatable; needs --dinotxt-weights)")  # fmt: skip
    parser.add_argument("--templates", nargs="+", metavar="TEMPLATE",
                        help="texts a prompt is set into, {} for the prompt (default: 'a photo of a {}.')")  # fmt: skip
    parser.set_defaults(func=_teach)


def _texts(values: list[str]) -> list[tuple[str, str]]:
    """(class name, prompt) of each --text: `CLASS=PROMPT`, or the prompt naming its own class."""
    texts = []
    for value in values:
        name, separator, prompt = value.partition("=")
        name, prompt = (name.strip(), prompt.strip()) if separator else (value.strip(), value.strip())
        if not name or not prompt:
            raise ValueError(f"--text {value!r} must be a prompt or CLASS=PROMPT, both non-empty")
        texts.append((name, prompt))
    return texts


def _teach(args: argparse.Namespace) -> int:
    from dinov2_ros.weights.cache import WeightsError

    try:
        return _teach_classes(args)
    except (ValueError, WeightsError) as error:  # a wrong argument or file, an offline cache: what to do, no traceback
        _LOG.error("%s", error)
        return 2


def _teach_classes(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dinov2_ros.perception.prompt_templates import DEFAULT_TEMPLATES, check_templates
    from dinov2_ros.perception.prototypes import PrototypeStore, teach_from_folder
    from dinov2_ros.weights.identity import encoder_name
    from dinov2_ros.weights.variants import DINOTXT, get_variant

    texts, templates = _texts(args.text), check_templates(args.templates or DEFAULT_TEMPLATES)
    if not (args.examples or texts):
        raise ValueError("give an EXAMPLES folder, --text prompts, or both")
    if texts and not args.dinotxt_weights:
        raise ValueError("--text needs dino.txt: add --dinotxt-weights pretrained (and --variant vitl14_reg4)")
    if args.dinotxt_weights and args.variant != DINOTXT.backbone:
        raise ValueError(
            f"--dinotxt-weights needs --variant {DINOTXT.backbone} (Meta trained dino.txt on it), got --variant {args.variant}"
        )
    encoder = encoder_name(args.variant, args.weights, args.dinotxt_weights)
    if "random" in (args.weights, args.dinotxt_weights):
        _LOG.warning("RANDOM encoder weights: these prototypes only work with a graph of the same random weights")
    extractor = _feature_extractor(args) if args.examples else None
    output = Path(args.output)
    if args.append and output.is_file():
        store = PrototypeStore.load(output, encoder=encoder, input_size=args.input_size)
    else:
        embed_dim = extractor.embed_dim if extractor is not None else get_variant(args.variant).embed_dim
        store = PrototypeStore(encoder, tuple(args.input_size), embed_dim, args.max_per_class)
    counts = teach_from_folder(args.examples, extractor, store) if extractor is not None else {}
    prompts = _prompt_encoder(args.dinotxt_weights, templates) if texts else None
    for name, prompt in texts:
        store.add_prototypes(name, prompts.prototype(prompt)[None], prompt)
        counts[name] = counts.get(name, 0) + 1
    store.save(output)
    for name, count in counts.items():
        said = f", prompts {store.prompts_of(name)}" if store.prompts_of(name) else ""
        _LOG.info("class %r (id %d): %d examples and prompts%s", name, store.class_ids[name], count, said)
    print(f"wrote {output}: {len(store.class_ids)} classes, {store.prototype_count} prototypes, encoder {encoder}")
    return 0


def _feature_extractor(args: argparse.Namespace):
    """The patch features the node's graph computes: the backbone's, or dino.txt's vision head's over them."""
    from dinov2_ros.model import create_backbone
    from dinov2_ros.model.factory import create_dinotxt_vision_head
    from dinov2_ros.tools.training.detector_dataset import PatchFeatureExtractor

    head = create_dinotxt_vision_head(args.dinotxt_weights) if args.dinotxt_weights else None
    return PatchFeatureExtractor(create_backbone(args.variant, args.weights), tuple(args.input_size), args.resize, head)


def _prompt_encoder(dinotxt_weights: str, templates):
    """The torch text encoder of `dinotxt_weights` with CLIP's vocabulary from the weights cache."""
    import torch

    from dinov2_ros.model.factory import create_text_encoder
    from dinov2_ros.perception.clip_tokenizer import ClipTokenizer
    from dinov2_ros.perception.text_prompts import PromptEncoder
    from dinov2_ros.weights.cache import fetch
    from dinov2_ros.weights.variants import DINOTXT

    tokenizer = ClipTokenizer(fetch(DINOTXT.vocabulary))  # before the 2 GB encoder: fails fast offline
    text_encoder = create_text_encoder(dinotxt_weights)

    def encode(rows):
        with torch.inference_mode():
            return text_encoder(torch.from_numpy(rows)).numpy()

    return PromptEncoder(tokenizer, encode, templates)
