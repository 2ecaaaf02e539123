"""The content identity of a `weights` argument: what keys caches of anything computed from the weights.

A name ('pretrained', a file's stem or path, 'random') does not say which weights a cache entry came
from: files get replaced, and before RANDOM_WEIGHTS_SEED 'random' was another network in every
process. Feature caches (`train-detector`, `eval-detector`) and exported graphs key their entries by
`weights_identity(...)` instead. Imports no torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from dinov2_ros.weights.cache import WeightsError, cached_path, resolve_cache_dir
from dinov2_ros.weights.digests import INDEX_NAME, cached_sha256
from dinov2_ros.weights.variants import WeightFile

RANDOM_WEIGHTS_SEED = 0  # `weights="random"` is the network torch draws from this seed (model.random_weights)
RANDOM_WEIGHTS_TAG = f"random-seed{RANDOM_WEIGHTS_SEED}"  # names these weights in caches and checkpoints


def weights_identity(
    weights: str | os.PathLike[str],
    pretrained: WeightFile | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> str:
    """'random-seed0' (RANDOM_WEIGHTS_TAG) for "random", else 'sha256:<64 hex>' of the checkpoint's bytes.

    `weights` as create_backbone/create_depth_head take it: "random", "pretrained" (then `pretrained`
    names the released file, e.g. `get_variant("vits14").checkpoint`, and its copy in the weights cache
    `cache_dir` is hashed: fetch it first) or a checkpoint path. Equal identities mean equal weights
    (for "random": on the same torch build). A file is hashed once per version (path, size, mtime,
    inode); the digest is kept in the weights cache's sha256 index, so later calls cost a stat.

    Raises ValueError for a "pretrained" without `pretrained`, or a path that is not a file;
    WeightsError for a "pretrained" file that is not in the cache yet.
    """
    if weights == "random":
        return RANDOM_WEIGHTS_TAG
    if weights == "pretrained":
        if pretrained is None:
            raise ValueError("weights='pretrained' names no file by itself; pass the WeightFile (variant.checkpoint)")
        path = cached_path(pretrained, cache_dir)
        if not path.is_file():
            raise WeightsError(
                f"{pretrained.filename} is not in the weights cache ({path}); fetch it first "
                f"(`dinov2-ros weights fetch {pretrained.filename.removesuffix('.pth')}`, or create the model)"
            )
    else:
        path = Path(weights)
        if not path.is_file():
            raise ValueError(
                f"weights {str(weights)!r} is neither 'random', 'pretrained' nor a checkpoint file; pass one of those"
            )
    return f"sha256:{cached_sha256(path, resolve_cache_dir(cache_dir) / INDEX_NAME)}"


def encoder_name(variant: str, weights: str, dinotxt_weights: str = "") -> str:
    """How prototype files and detector checkpoints name their encoder: variant and backbone weights tag
    ('pretrained', 'random' or the checkpoint's file stem), e.g. 'vits14:pretrained', and with dino.txt
    its vision head's tag ('vitl14_reg4:pretrained+dinotxt:pretrained'): its patch features live in
    another space. 'random' names one network, the one seeded with RANDOM_WEIGHTS_SEED, in every process."""

    def tag(value: str) -> str:
        return value if value in ("pretrained", "random") else Path(value).stem

    return f"{variant}:{tag(weights)}" + (f"+dinotxt:{tag(dinotxt_weights)}" if dinotxt_weights else "")
