"""The one table of DINOv2 variants: sizes, input facts (patch size, normalisation), released files and
depth-head taps, keyed by name, as timm's pretrained configs carry them.

Imports no torch: the robot process reads it too (a graph's patch grid and normalisation, the names
of the released files a graph was made from).

Sizes and sha256 of the released files are None: Meta publishes no hashes, and the files could not be
downloaded where this table was written. Downloads record their sha256 instead (trust on first use,
see digests.py); a pin set here takes precedence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FfnKind = Literal["mlp", "swiglu"]
PosEmbedRule = Literal["offset", "antialias"]  # see pos_embed.py

BASE_URL = "https://dl.fbaipublicfiles.com/dinov2"
# every released DINOv2 model: 14x14 patches, inputs normalised with ImageNet's per-channel RGB mean
# and std (Meta's dinov2/data/transforms.py, make_normalize_transform); an encoder outside the table
# (a test's tiny one) is taken to share them
PATCH_SIZE = 14
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEPTH_DATASETS: dict[str, tuple[float, float]] = {"nyu": (0.001, 10.0), "kitti": (0.001, 80.0)}
DEPTH_HEAD_KINDS: tuple[str, ...] = ("linear", "linear4")
# Meta's names for head files, e.g. dinov2_vits14_nyu_linear4_head.pth (depth_head_file below)
_HEAD_FILE_NAME = re.compile(
    r"^dinov2_(?P<arch>vit[a-z]\d+(?:_reg\d+)?)_(?P<dataset>[a-z]+)_(?P<kind>[a-z0-9]+)_head\.pth$"
)


def depth_range(dataset: str) -> tuple[float, float]:
    """(min, max) metres a released depth head was trained over on `dataset` ("nyu" or "kitti")."""
    if dataset not in DEPTH_DATASETS:
        raise ValueError(f"depth dataset must be one of {tuple(DEPTH_DATASETS)}, got {dataset!r}")
    return DEPTH_DATASETS[dataset]


@dataclass(frozen=True)
class WeightFile:
    """A released file: where it lives and what it must be (size in bytes, sha256) where known.

    `kind` "checkpoint" (a PyTorch file) or "bpe vocabulary" (CLIP's gzip-compressed BPE merges, which
    dino.txt's tokenizer reads); it decides how a download is recognised as the real thing.
    """

    filename: str
    url: str
    size: int | None = None
    sha256: str | None = None
    kind: str = "checkpoint"


@dataclass(frozen=True)
class BackboneVariant:
    """Architecture of one released backbone and the depth-head taps Meta trained on it."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    ffn: FfnKind
    num_register_tokens: int
    pos_embed_rule: PosEmbedRule
    linear4_taps: tuple[int, ...]
    arch: str  # vits14 for vits14_reg4: the folder and head files are named after it
    patch_size: int = PATCH_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN  # the model input's normalisation, per RGB channel
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def checkpoint(self) -> WeightFile:
        suffix = "_reg4" if self.num_register_tokens else ""
        filename = f"dinov2_{self.arch}{suffix}_pretrain.pth"
        return WeightFile(filename, f"{BASE_URL}/dinov2_{self.arch}/{filename}")

    @property
    def has_depth_heads(self) -> bool:
        """Meta released depth heads only for the backbones without registers."""
        return self.num_register_tokens == 0

    def depth_taps(self, kind: str) -> tuple[int, ...]:
        """Blocks a depth head of `kind` reads: the last for linear, four spread ones for linear4."""
        if kind not in DEPTH_HEAD_KINDS:
            raise ValueError(f"depth head kind must be one of {DEPTH_HEAD_KINDS}, got {kind!r}")
        return (self.depth - 1,) if kind == "linear" else self.linear4_taps

    def depth_head_file(self, dataset: str, kind: str) -> WeightFile:
        """The released head for this backbone, trained on `dataset` ("nyu" or "kitti")."""
        depth_range(dataset)
        self.depth_taps(kind)
        if not self.has_depth_heads:
            raise ValueError(
                f"Meta released no depth heads for {self.name}; use {self.arch} for pretrained depth, "
                "or pass weights='random' or a path to your own head"
            )
        filename = f"dinov2_{self.arch}_{dataset}_{kind}_head.pth"
        return WeightFile(filename, f"{BASE_URL}/dinov2_{self.arch}/{filename}")


def check_head_file_name(file_name: str, backbone: str, dataset: str, kind: str) -> None:
    """Refuse a head file whose name follows Meta's `dinov2_{arch}_{dataset}_{kind}_head.pth` but names
    another backbone, dataset or kind than requested (a vitg14 linear and a vits14 linear4 head both
    read 3072 channels, so shapes alone cannot tell). Files named otherwise pass unchecked.

    Raises ValueError saying what the name promises and what was asked for.
    """
    match = _HEAD_FILE_NAME.match(file_name)
    if match is None:
        return
    named = (match["arch"], match["dataset"], match["kind"])
    if named != (backbone, dataset, kind):
        raise ValueError(
            f"depth head file {file_name} is named as Meta names a {' '.join(named)} head "
            f"(dinov2_{{backbone}}_{{dataset}}_{{kind}}_head.pth), but a {backbone} {dataset} {kind} head was "
            f"requested; use dinov2_{backbone}_{dataset}_{kind}_head.pth, ask for the backbone, dataset and kind "
            "the file was trained for, or rename the file if its name is wrong"
        )


def _pair(
    arch: str, embed_dim: int, depth: int, heads: int, ffn: FfnKind, taps: tuple[int, ...]
) -> tuple[tuple[str, BackboneVariant], ...]:
    """The plain variant and its `_reg4` sibling (same sizes, 4 registers, the other pos-embed rule)."""
    plain = BackboneVariant(arch, embed_dim, depth, heads, ffn, 0, "offset", taps, arch)
    reg = BackboneVariant(f"{arch}_reg4", embed_dim, depth, heads, ffn, 4, "antialias", taps, arch)
    return ((plain.name, plain), (reg.name, reg))


VARIANTS: dict[str, BackboneVariant] = dict(
    _pair("vits14", 384, 12, 6, "mlp", (2, 5, 8, 11))
    + _pair("vitb14", 768, 12, 12, "mlp", (2, 5, 8, 11))
    + _pair("vitl14", 1024, 24, 16, "mlp", (4, 11, 17, 23))
    + _pair("vitg14", 1536, 40, 24, "swiglu", (9, 19, 29, 39))
)


@dataclass(frozen=True)
class DinoTxtRelease:
    """Meta's dino.txt (facebookresearch/dinov2 `dinov2/hub/dinotxt.py`, `dinov2_vitl14_reg4_dinotxt_tet1280d20h24l`):
    the frozen ViT-L/14 reg4 backbone, a vision head of two blocks over its last layer's normed tokens,
    and a causal text transformer; both map into one `embed_dim` space whose first half aligns with
    the class token and second half with the mean of the head's patch tokens. The text tokenizer is
    CLIP's BPE (`vocabulary`, context 77)."""

    name: str = "dinov2_vitl14_reg4_dinotxt_tet1280d20h24l"
    backbone: str = "vitl14_reg4"
    embed_dim: int = 2048
    head_blocks: int = 2
    head_layerscale_init: float = 1e-5  # VisionHead's init_values; the released file replaces it
    text_context: int = 77
    text_vocab_size: int = 49408
    text_dim: int = 1280
    text_heads: int = 20
    text_layers: int = 24
    text_ffn_ratio: float = 4.0

    @property
    def vision_head(self) -> WeightFile:
        filename = f"{self.name}_vision_head.pth"
        return WeightFile(filename, f"{BASE_URL}/dinov2_vitl14/{filename}")

    @property
    def text_encoder(self) -> WeightFile:
        filename = f"{self.name}_text_encoder.pth"
        return WeightFile(filename, f"{BASE_URL}/dinov2_vitl14/{filename}")

    @property
    def vocabulary(self) -> WeightFile:
        """CLIP's BPE merges, as Meta's get_tokenizer downloads them (`thirdparty/`)."""
        filename = "bpe_simple_vocab_16e6.txt.gz"
        return WeightFile(filename, f"{BASE_URL}/thirdparty/{filename}", kind="bpe vocabulary")

    @property
    def files(self) -> tuple[WeightFile, ...]:
        return self.vision_head, self.text_encoder, self.vocabulary


DINOTXT = DinoTxtRelease()


def dinotxt_text_encoder_path(vision_head: Path) -> Path:
    """Where the text encoder that goes with a dino.txt vision head file is: beside it, named as Meta
    names it (`<name>_vision_head.pth` -> `<name>_text_encoder.pth`). ValueError for another name."""
    if not vision_head.name.endswith("_vision_head.pth"):
        raise ValueError(
            f"dino.txt weights {str(vision_head)!r} must be 'pretrained', 'random' or a vision head file named "
            "<name>_vision_head.pth, with <name>_text_encoder.pth beside it (Meta's naming)"
        )
    return vision_head.with_name(vision_head.name.removesuffix("_vision_head.pth") + "_text_encoder.pth")


def dinotxt_text_encoder_beside(vision_head: Path) -> Path:
    """`dinotxt_text_encoder_path`, which must exist: ValueError naming the file that is missing."""
    text = dinotxt_text_encoder_path(vision_head)
    if not vision_head.is_file():
        raise ValueError(f"the dino.txt vision head {vision_head} is not a file; fix model.dinotxt_weights")
    if not text.is_file():
        raise ValueError(f"no text encoder beside the dino.txt vision head {vision_head}: expected {text}")
    return text


def input_normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel of variant `name`'s input (ImageNet's for an encoder outside the table)."""
    variant = VARIANTS.get(name)
    return (variant.mean, variant.std) if variant is not None else (IMAGENET_MEAN, IMAGENET_STD)


def get_variant(name: str) -> BackboneVariant:
    """Look a variant up by name, with the list of names in the error."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(VARIANTS)}") from None
