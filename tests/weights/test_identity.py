"""weights_identity: the seeded random network by its tag, files by the sha256 of their bytes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from dinov2_ros.weights.cache import WeightsError
from dinov2_ros.weights.identity import RANDOM_WEIGHTS_TAG, weights_identity
from dinov2_ros.weights.variants import get_variant


def test_random_is_the_seeded_network() -> None:
    assert weights_identity("random") == RANDOM_WEIGHTS_TAG == "random-seed0"


def test_a_checkpoint_path_is_named_by_its_bytes_not_its_name(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "finetune.pth"
    path.write_bytes(b"first weights")
    first = weights_identity(path, cache_dir=cache_dir)
    assert first == "sha256:" + hashlib.sha256(b"first weights").hexdigest()
    assert weights_identity(str(path), cache_dir=cache_dir) == first
    assert (cache_dir / "sha256-index.json").is_file()  # hashed once per file version
    path.write_bytes(b"other weights")  # same path, same size, a new mtime
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert weights_identity(path, cache_dir=cache_dir) == "sha256:" + hashlib.sha256(b"other weights").hexdigest()
    copy = tmp_path / "renamed.pth"
    copy.write_bytes(b"other weights")
    assert weights_identity(copy, cache_dir=cache_dir) == weights_identity(path, cache_dir=cache_dir)


def test_pretrained_is_the_cached_file_of_the_variant(cache_dir: Path) -> None:
    checkpoint = get_variant("vits14").checkpoint
    with pytest.raises(WeightsError, match=r"dinov2_vits14_pretrain\.pth is not in the weights cache .*fetch it first"):
        weights_identity("pretrained", checkpoint, cache_dir)
    cache_dir.mkdir()
    (cache_dir / checkpoint.filename).write_bytes(b"released weights")
    expected = "sha256:" + hashlib.sha256(b"released weights").hexdigest()
    assert weights_identity("pretrained", checkpoint, cache_dir) == expected
    with pytest.raises(ValueError, match="weights='pretrained' names no file by itself"):
        weights_identity("pretrained")


def test_a_path_that_is_no_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"neither 'random', 'pretrained' nor a checkpoint file"):
        weights_identity(tmp_path / "absent.pth", cache_dir=tmp_path)
