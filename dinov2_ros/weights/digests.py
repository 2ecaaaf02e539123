"""sha256 of weight files: computed once per file version, and recorded at download (trust on first use).

Meta publishes no hashes for its files, so the registry cannot pin them. Instead the first download
records the file's sha256 in a sidecar `<file>.sha256` (`sha256sum` format, so `sha256sum -c` checks
it too), and later checks compare against that record: a file that changes after it was recorded
(damaged, replaced, half-overwritten) is caught; a file that was already wrong at the first download
is not.

Hashing a multi-GB checkpoint takes seconds, so `cached_sha256` keeps the digests it computed in an
index file (`sha256-index.json` in the weights cache) keyed by the file's resolved path, size,
modification time (ns) and inode: a file rewritten in any ordinary way gets a new mtime and is hashed
again. A change that keeps all four (bit rot, a tool that restores mtimes) is only seen by a full
re-hash (`sha256_of`, as `dinov2-ros weights verify` does).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from dinov2_ros.atomic_file import atomic_write

INDEX_NAME = "sha256-index.json"
SIDECAR_SUFFIX = ".sha256"
_LOG = logging.getLogger(__name__)


def sha256_of(*paths: Path) -> str:
    """Hex sha256 of the file's bytes (of several files', one after the other), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _version_of(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _read_index(index_file: Path) -> dict[str, dict]:
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):  # absent, unreadable or half-written by an old tool: start afresh
        return {}
    return index if isinstance(index, dict) else {}


def remember_sha256(path: Path, digest: str, index_file: Path) -> None:
    """Store `digest` as the sha256 of the current version of `path` in `index_file` (best effort: an
    unwritable index only costs a re-hash next time)."""
    path = Path(path).resolve()
    index = _read_index(index_file)
    index[str(path)] = {"version": _version_of(path), "sha256": digest}
    try:
        with atomic_write(index_file) as temporary:
            temporary.write_text(json.dumps(index, indent=1, sort_keys=True))
    except OSError as error:
        _LOG.debug("could not update the sha256 index %s: %s", index_file, error)


def cached_sha256(path: Path, index_file: Path) -> str:
    """sha256 of `path`, from `index_file` when this version of the file (size, mtime, inode) was hashed
    before, else computed and stored there."""
    path = Path(path).resolve()
    entry = _read_index(index_file).get(str(path))
    if isinstance(entry, dict) and entry.get("version") == _version_of(path) and "sha256" in entry:
        return entry["sha256"]
    if path.stat().st_size > 1 << 30:
        _LOG.info("computing the sha256 of %s (%.1f GB; once per file version)", path, path.stat().st_size / 1e9)
    digest = sha256_of(path)
    remember_sha256(path, digest, index_file)
    return digest


def sidecar_of(path: Path) -> Path:
    """Where the sha256 recorded for `path` lives: `<path>.sha256`."""
    return Path(path).with_name(Path(path).name + SIDECAR_SUFFIX)


def recorded_sha256(path: Path) -> str | None:
    """The sha256 recorded for `path` at its first download or first check, or None if none was."""
    try:
        text = sidecar_of(path).read_text().split()
    except OSError:
        return None
    return text[0].lower() if text and len(text[0]) == 64 else None


def record_sha256(path: Path, digest: str) -> Path:
    """Write `<path>.sha256` (`<hex>  <name>`) atomically; returns the sidecar's path."""
    sidecar = sidecar_of(path)
    with atomic_write(sidecar) as temporary:
        temporary.write_text(f"{digest}  {Path(path).name}\n")
    return sidecar
