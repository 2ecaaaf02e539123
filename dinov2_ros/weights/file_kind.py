"""Name a file that cannot be a checkpoint (or a BPE vocabulary) for what it is, from its bytes (no torch).

A failed download leaves files that torch reports with unhelpful unpickling errors: an HTML error or
login page saved under the checkpoint's name, an empty file, a zip archive cut short. Recognised
checkpoint formats: PyTorch's zip format (torch >= 1.6, what Meta ships: starts with `PK\\x03\\x04`,
ends with a zip end-of-central-directory record), PyTorch's legacy pickle format (starts with the
pickle protocol byte 0x80) and safetensors (8-byte little-endian header length, then a JSON header).
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path

_HEAD_BYTES = 4096
_ZIP_LOCAL_HEADER = b"PK\x03\x04"
_ZIP_END_OF_DIRECTORY = b"PK\x05\x06"
_ZIP_TAIL_BYTES = 22 + 0xFFFF  # the end record (22 bytes) plus the longest archive comment
_HTML_START = re.compile(rb"^\s*(<!doctype html|<html|<head|<body|<\?xml|<title|<!--)", re.IGNORECASE)
_HTML_TITLE = re.compile(rb"<title[^>]*>([^<]{1,120})</title>", re.IGNORECASE)
REMEDY = "delete it and fetch again (`dinov2-ros weights fetch`), or fix the path"


def not_a_checkpoint(path: str | os.PathLike[str], remedy: str = REMEDY) -> str | None:
    """Why `path` cannot be a checkpoint (a sentence ending in `remedy`), or None if it may be one.

    None does not promise a loadable file: the format is only recognised, its contents are not read.
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder, not a checkpoint file; pass the checkpoint file inside it"
    if not path.is_file():
        return f"{path} does not exist; fetch it with `dinov2-ros weights fetch` or fix the path"
    size = path.stat().st_size
    if size == 0:
        return f"{path} is empty (0 bytes), not a checkpoint: the download failed; {remedy}"
    with path.open("rb") as stream:
        head = stream.read(_HEAD_BYTES)
        stream.seek(max(0, size - _ZIP_TAIL_BYTES))
        tail = stream.read()
    if _HTML_START.match(head.lstrip(b"\xef\xbb\xbf")):
        title = _HTML_TITLE.search(head)
        shown = f" (titled {title.group(1).decode(errors='replace').strip()!r})" if title else ""
        return f"{path} is an HTML page{shown}, not a checkpoint: the download failed; {remedy}"
    if head.startswith(_ZIP_LOCAL_HEADER):
        if _ZIP_END_OF_DIRECTORY not in tail:
            return (
                f"{path} is a truncated zip archive ({size} bytes, no end-of-archive record): the download "
                f"stopped early; {remedy}"
            )
        return None
    if head.startswith(b"\x80"):  # PyTorch's legacy (pre-1.6) pickle format
        return None
    if len(head) > 8 and head[8:9] == b"{":
        header_length = int.from_bytes(head[:8], "little")
        if 8 + header_length > size:
            return f"{path} is a truncated safetensors file ({size} bytes); {remedy}"
        return None
    return (
        f"{path} is not a PyTorch or safetensors checkpoint (it starts with {head[:16]!r}); it may be another "
        f"kind of file saved under this name; {remedy}"
    )


def not_a_vocabulary(path: str | os.PathLike[str], remedy: str = REMEDY) -> str | None:
    """Why `path` cannot be CLIP's BPE vocabulary (a gzip-compressed text of merges, first line a
    `#version` header), or None. Decompresses the whole file (1.3 MB), so a truncated one is named."""
    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist; fetch it with `dinov2-ros weights fetch` or fix the path"
    with path.open("rb") as stream:
        head = stream.read(_HEAD_BYTES)
    if not head:
        return f"{path} is empty (0 bytes), not a vocabulary: the download failed; {remedy}"
    if _HTML_START.match(head.lstrip(b"\xef\xbb\xbf")):
        return f"{path} is an HTML page, not a vocabulary: the download failed; {remedy}"
    if not head.startswith(b"\x1f\x8b"):
        return f"{path} is not gzip-compressed (it starts with {head[:16]!r}), not CLIP's BPE vocabulary; {remedy}"
    try:
        with gzip.open(path, "rt", encoding="utf-8") as stream:
            first = stream.readline()
            merges = sum(1 for _ in stream)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
        return f"{path} is a damaged or truncated gzip file ({error}); {remedy}"
    if "#version" not in first or merges == 0:
        return f"{path} is gzip-compressed but holds no BPE merges (first line {first[:60]!r}); {remedy}"
    return None


def problem_with(path: str | os.PathLike[str], kind: str, remedy: str = REMEDY) -> str | None:
    """`not_a_checkpoint` or `not_a_vocabulary`, by a WeightFile's `kind`."""
    return not_a_vocabulary(path, remedy) if kind == "bpe vocabulary" else not_a_checkpoint(path, remedy)
