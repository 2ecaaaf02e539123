"""The released weight files: registry, cache directory, fetch with resume, and verification.

Cache directory, first that is set: the `cache_dir` argument, `$DINOV2_ROS_CACHE`,
`$XDG_CACHE_HOME/dinov2_ros`, `~/.cache/dinov2_ros`. A file appears there only after it downloaded
completely (all Content-Length bytes) and passed the registry's size/sha256 checks where known, by an
atomic rename from `<name>.part`. A lock file per download (POSIX `flock`) serialises processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import logging
import os
import sys
import urllib.error
from collections.abc import Iterator
from pathlib import Path

from dinov2_ros.model.download import ProgressBar, download
from dinov2_ros.model.variants import BASE_URL, DEPTH_DATASETS, DEPTH_HEAD_KINDS, VARIANTS, WeightFile

CACHE_ENV = "DINOV2_ROS_CACHE"
_LOG = logging.getLogger(__name__)


class WeightsError(RuntimeError):
    """A weight file that cannot be downloaded, or a downloaded file that fails verification."""


def _build_registry() -> dict[str, WeightFile]:
    files = [variant.checkpoint for variant in VARIANTS.values()]
    files += [
        variant.depth_head_file(dataset, kind)
        for variant in VARIANTS.values()
        if variant.has_depth_heads
        for dataset in DEPTH_DATASETS
        for kind in DEPTH_HEAD_KINDS
    ]
    return {file.filename.removesuffix(".pth"): file for file in files}


REGISTRY: dict[str, WeightFile] = _build_registry()


def get_weight_file(name: str) -> WeightFile:
    """A registry entry by name (`dinov2_vits14_pretrain`) or backbone name (`vits14` -> its checkpoint)."""
    if name in VARIANTS:
        return VARIANTS[name].checkpoint
    try:
        return REGISTRY[name.removesuffix(".pth")]
    except KeyError:
        raise ValueError(
            f"unknown weight file {name!r}; run `dinov2-ros weights list` for the names "
            f"(a backbone name such as 'vits14' also works)"
        ) from None


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: argument, then $DINOV2_ROS_CACHE, then the XDG cache (see module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "dinov2_ros"


def cached_path(file: WeightFile, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where `file` lives in the cache (whether or not it is there yet)."""
    return resolve_cache_dir(cache_dir) / file.filename


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, file: WeightFile, remedy: str = "delete it and fetch it again") -> str:
    """Check size and sha256 against the registry where known; return the file's sha256.

    Raises WeightsError for a truncated (too short), oversized or corrupt (hash mismatch) file.
    """
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        state = "truncated" if size < file.size else "larger than expected"
        raise WeightsError(f"{path} is {state}: {size} bytes, expected {file.size}; {remedy}")
    digest = sha256_of(path)
    if file.sha256 is not None and digest != file.sha256.lower():
        raise WeightsError(f"{path} is corrupt: sha256 {digest}, expected {file.sha256}; {remedy}")
    return digest


def _mirrored_url(file: WeightFile, mirror: str | None) -> str:
    if mirror is None or not file.url.startswith(BASE_URL):
        return file.url
    return mirror.rstrip("/") + file.url[len(BASE_URL) :]


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise downloads of one file across processes: several nodes of a launch may start at once."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch(
    file: WeightFile | str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    mirror: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Path to a verified copy of `file` in the cache, downloading (and resuming) it when missing.

    `mirror` replaces the dl.fbaipublicfiles.com/dinov2 prefix (air-gapped sites). Files are checked
    against what the registry knows (size, sha256); an unknown hash is logged so it can be pinned.
    """
    file = get_weight_file(file) if isinstance(file, str) else file
    target = cached_path(file, cache_dir)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WeightsError(
            f"cannot create the weights cache {target.parent} ({error}); pass cache_dir or set "
            f"${CACHE_ENV} to a writable directory"
        ) from error
    with _exclusive(target.with_name(target.name + ".lock")):
        if target.is_file():
            if file.size is not None or file.sha256 is not None:
                verify_file(target, file)
            return target
        _download_verified(file, _mirrored_url(file, mirror), target, progress, timeout)
    return target


def _download_verified(file: WeightFile, url: str, target: Path, progress: bool, timeout: float) -> None:
    part = target.with_name(target.name + ".part")
    _LOG.info("downloading %s from %s to %s", file.filename, url, target)
    try:
        download(url, part, ProgressBar(file.filename, sys.stderr) if progress else None, timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        raise WeightsError(
            f"could not download {file.filename} from {url} ({reason}); place the file at {target}"
        ) from error
    try:
        digest = verify_file(part, file, remedy=f"the download was deleted; check the source {url}")
    except WeightsError:
        part.unlink()
        raise
    if file.sha256 is None:
        _LOG.warning("%s has no reference sha256 in the registry; downloaded sha256 %s", file.filename, digest)
    os.replace(part, target)
