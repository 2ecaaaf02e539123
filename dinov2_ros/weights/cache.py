"""The released weight files: registry, cache directory, fetch with resume, and verification.

Cache directory, first that is set: the `cache_dir` argument, `$DINOV2_ROS_CACHE`,
`$XDG_CACHE_HOME/dinov2_ros`, `~/.cache/dinov2_ros`. A file appears there only after it downloaded
completely (all Content-Length bytes), was recognised as a checkpoint (not an HTML error page, see
file_kind.py) and passed the registry's size/sha256 pins where known, by an atomic rename from
`<name>.part`. A lock file per download (POSIX `flock`) serialises processes.

Meta publishes no hashes, so the registry pins none. Trust on first use instead (digests.py): the
download records the file's sha256 in `<name>.sha256`, and later checks compare against that record.
`fetch` of a cached file compares the digest of its current version (re-hashed only when its size,
mtime or inode changed); `verify_file(..., rehash=True)` reads the whole file.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import logging
import os
import sys
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dinov2_ros.weights.digests import (
    INDEX_NAME,
    cached_sha256,
    record_sha256,
    recorded_sha256,
    remember_sha256,
    sha256_of,
    sidecar_of,
)
from dinov2_ros.weights.download import ProgressBar, download
from dinov2_ros.weights.file_kind import problem_with
from dinov2_ros.weights.variants import BASE_URL, DEPTH_DATASETS, DEPTH_HEAD_KINDS, DINOTXT, VARIANTS, WeightFile

CACHE_ENV = "DINOV2_ROS_CACHE"
# a site's own copy of dl.fbaipublicfiles.com/dinov2 (air-gapped cells): replaces that prefix in downloads
MIRROR_ENV = "DINOV2_ROS_WEIGHTS_MIRROR"
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
    files += DINOTXT.files
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
            f"(a backbone name such as 'vits14', or 'dinotxt' for dino.txt's files, also works)"
        ) from None


def weight_files(name: str) -> tuple[WeightFile, ...]:
    """The files a name stands for: `dinotxt` (or its release name) -> dino.txt's vision head, text encoder
    and vocabulary; anything else -> `get_weight_file(name)`."""
    if name in ("dinotxt", DINOTXT.name):
        return DINOTXT.files
    return (get_weight_file(name),)


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


def _check_kind_and_size(path: Path, file: WeightFile, remedy: str) -> None:
    problem = problem_with(path, file.kind, remedy)
    if problem is not None:
        raise WeightsError(problem)
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        state = "truncated" if size < file.size else "larger than expected"
        raise WeightsError(f"{path} is {state}: {size} bytes, expected {file.size}; {remedy}")


def _check_pin(path: Path, digest: str, file: WeightFile, remedy: str) -> None:
    if file.sha256 is not None and digest != file.sha256.lower():
        raise WeightsError(f"{path} is corrupt: sha256 {digest}, expected {file.sha256}; {remedy}")


@dataclass(frozen=True)
class Verification:
    """The outcome of a check: the file's sha256 and what it was compared with."""

    sha256: str
    # "registry" (a pin), "recorded" (the sidecar of its first download or check), "recorded now" (first
    # check), "not recorded" (no record, and none could be written: nothing to compare with)
    reference: str


def verify_file(
    path: Path, file: WeightFile, remedy: str = "delete it and fetch it again", *, rehash: bool = True
) -> Verification:
    """Check that `path` is a checkpoint file, its size and sha256 against the registry's pins where
    known, else its sha256 against the one recorded at its first download (`<path>.sha256`); with no
    record yet (a file placed by hand), record it now: trust on first use.

    `rehash=False` reuses the digest of an unchanged file version (size, mtime, inode) from the
    cache's sha256 index. Raises WeightsError for a file that is no checkpoint (HTML page, empty,
    folder, truncated zip), truncated or oversized, or whose sha256 differs from the pin or record.
    """
    _check_kind_and_size(path, file, remedy)
    index = path.parent / INDEX_NAME
    if rehash:
        digest = sha256_of(path)
        remember_sha256(path, digest, index)
    else:
        digest = cached_sha256(path, index)
    if file.sha256 is not None:
        _check_pin(path, digest, file, remedy)
        return Verification(digest, "registry")
    recorded = recorded_sha256(path)
    if recorded is None:
        try:
            record_sha256(path, digest)
        except OSError as error:  # a read-only cache (e.g. a shared mount) still serves its files
            _LOG.warning("cannot record the sha256 of %s in %s (%s)", path, sidecar_of(path), error)
            return Verification(digest, "not recorded")
        return Verification(digest, "recorded now")
    if digest != recorded:
        raise WeightsError(
            f"{path} changed since its sha256 was recorded at download: sha256 {digest}, recorded {recorded} "
            f"in {sidecar_of(path)}; {remedy}"
        )
    return Verification(digest, "recorded")


def _mirrored_url(file: WeightFile, mirror: str | None) -> str:
    if mirror is None or not file.url.startswith(BASE_URL):
        return file.url
    return mirror.rstrip("/") + file.url[len(BASE_URL) :]


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise downloads of one file across processes (several nodes of a launch may start at once);
    the lock file is removed when done. A process that locked a file another one then removed takes
    the new one instead (the inode check), so two never hold the lock at once."""
    while True:
        handle = lock_path.open("a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        handle.close()


def fetch(
    file: WeightFile | str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    mirror: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Path to a verified copy of `file` in the cache, downloading (and resuming) it when missing.

    `mirror` (default: $DINOV2_ROS_WEIGHTS_MIRROR) replaces the dl.fbaipublicfiles.com/dinov2 prefix
    (air-gapped sites). A download is
    checked against the registry's pins where known and its sha256 recorded (`<name>.sha256`); a cached
    file is checked against that record (see the module docstring). Raises WeightsError.
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
        if target.exists():
            verification = verify_file(target, file, rehash=False)
            if verification.reference == "recorded now":
                _LOG.warning(
                    "%s has no recorded sha256 (placed by hand?); recorded %s now and will check against it",
                    target, verification.sha256,
                )  # fmt: skip
            return target
        _download_verified(file, _mirrored_url(file, mirror or os.environ.get(MIRROR_ENV)), target, progress, timeout)
    return target


def _download_verified(file: WeightFile, url: str, target: Path, progress: bool, timeout: float) -> None:
    part = target.with_name(target.name + ".part")
    _LOG.info("downloading %s from %s to %s", file.filename, url, target)
    try:
        download(url, part, ProgressBar(file.filename, sys.stderr) if progress else None, timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        raise WeightsError(
            f"could not download {file.filename} from {url} ({reason}); place the file at {target} (copy it from "
            f"a machine with network, where `dinov2-ros weights fetch {file.filename.removesuffix('.pth')}` puts it "
            f"in the weights cache), or set ${MIRROR_ENV} to a site mirror of {BASE_URL}"
        ) from error
    remedy = f"the download was deleted; check the source {url}"
    try:
        _check_kind_and_size(part, file, remedy)
        digest = sha256_of(part)
        _check_pin(part, digest, file, remedy)
    except WeightsError:
        part.unlink()
        raise
    record_sha256(target, digest)
    os.replace(part, target)
    remember_sha256(target, digest, target.parent / INDEX_NAME)
    _LOG.info(
        "%s: sha256 %s, recorded in %s (Meta publishes no hashes to pin)", file.filename, digest, sidecar_of(target)
    )
