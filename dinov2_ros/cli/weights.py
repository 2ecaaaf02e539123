"""`dinov2-ros weights list|fetch|verify`: the released weight files in the local cache."""

from __future__ import annotations

import argparse
import logging
import sys

_LOG = logging.getLogger(__name__)
_TRUST_ON_FIRST_USE = (
    "Meta publishes no sha256 for its files, so none is pinned here. Trust on first use instead: the download "
    "records the file's sha256 in <file>.sha256 beside it (sha256sum format), and later checks compare with that "
    "record. This catches a file that changed or was damaged after its download, not one that was already wrong "
    "when it was first downloaded. A file placed by hand gets its record at its first check."
)
_SHOW_HASHING_BYTES = 200_000_000  # say so before hashing a file that takes a second or more
_REFERENCE_TEXT = {
    "registry": "matches the registry's pinned sha256",
    "recorded": "matches the sha256 recorded at its download",
    "recorded now": "no sha256 was recorded (placed by hand?); recorded it now, later checks compare with it",
    "not recorded": "no sha256 was recorded and the cache is read-only: nothing to compare with",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("weights", help="list, download and verify Meta's released weight files")
    commands = parser.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    cache_help = "cache directory (default: $DINOV2_ROS_CACHE, else $XDG_CACHE_HOME/dinov2_ros)"

    list_parser = commands.add_parser("list", help="every known file, and whether it is cached")
    list_parser.add_argument("--cache-dir", help=cache_help)
    list_parser.set_defaults(func=_list)

    fetch_parser = commands.add_parser(
        "fetch",
        help="download files into the cache (resumes; refuses HTML error pages and truncated files; records "
        "each file's sha256 at download and checks cached files against it)",
        description=_TRUST_ON_FIRST_USE,
    )
    fetch_parser.add_argument(
        "names", nargs="+", metavar="NAME", help="file name from `list`, a backbone (vits14), or dinotxt (its 3 files)"
    )
    fetch_parser.add_argument("--cache-dir", help=cache_help)
    fetch_parser.add_argument("--mirror", help="base URL replacing https://dl.fbaipublicfiles.com/dinov2")
    fetch_parser.set_defaults(func=_fetch)

    verify_parser = commands.add_parser(
        "verify",
        help="re-hash cached files and compare with the sha256 recorded at download; name files that are no "
        "checkpoint (HTML page, empty, folder, truncated)",
        description=_TRUST_ON_FIRST_USE,
    )
    verify_parser.add_argument("names", nargs="*", metavar="NAME", help="files to check (default: all cached)")
    verify_parser.add_argument("--cache-dir", help=cache_help)
    verify_parser.set_defaults(func=_verify)


def _list(args: argparse.Namespace) -> int:
    from dinov2_ros.weights.cache import REGISTRY, cached_path, resolve_cache_dir

    print(f"cache: {resolve_cache_dir(args.cache_dir)}")
    for name, file in REGISTRY.items():
        state = "cached " if cached_path(file, args.cache_dir).is_file() else "missing"
        print(f"{state}  {name:<36}  {file.url}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from dinov2_ros.weights.cache import WeightsError, fetch, weight_files

    failures = 0
    for name in args.names:
        try:
            files = weight_files(name)  # an unknown name raises ValueError
        except ValueError as error:
            _LOG.error("%s", error)
            failures += 1
            continue
        for file in files:
            try:
                path = fetch(file, args.cache_dir, mirror=args.mirror)
            except WeightsError as error:
                _LOG.error("%s", error)
                failures += 1
            else:
                print(f"{file.filename.removesuffix('.pth')}: {path}")
    return 1 if failures else 0


def _verify(args: argparse.Namespace) -> int:
    from dinov2_ros.weights.cache import (
        REGISTRY,
        WeightsError,
        cached_path,
        resolve_cache_dir,
        verify_file,
        weight_files,
    )

    try:
        files = [file for name in args.names for file in weight_files(name)] if args.names else list(REGISTRY.values())
    except ValueError as error:
        _LOG.error("%s", error)
        return 1
    failures = checked = 0
    for file in files:
        path = cached_path(file, args.cache_dir)
        if not path.exists():
            if args.names:
                _LOG.error("%s is not cached (expected at %s); fetch it first", file.filename, path)
                failures += 1
            continue
        if path.is_file() and path.stat().st_size > _SHOW_HASHING_BYTES:
            print(f"hashing {path} ({path.stat().st_size / 1e9:.1f} GB) ...", file=sys.stderr, flush=True)
        try:
            verification = verify_file(path, file)
        except WeightsError as error:
            _LOG.error("FAILED %s", error)
            failures += 1
            continue
        checked += 1
        print(f"ok  {file.filename}  sha256 {verification.sha256}  ({_REFERENCE_TEXT[verification.reference]})")
    if not (checked or failures):
        print(f"nothing to verify: no weight file is cached in {resolve_cache_dir(args.cache_dir)}; "
              "`dinov2-ros weights fetch NAME` downloads one")  # fmt: skip
    return 1 if failures else 0
