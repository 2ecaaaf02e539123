"""HTTP download into a `.part` file that resumes with a Range request after an interruption."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

ProgressFn = Callable[[int, int | None], None]
CHUNK_BYTES = 1 << 20


class ProgressBar:
    """A one-line byte counter on a stream, redrawn at most every `interval` seconds."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, interval: float = 0.2) -> None:
        self.label = label
        self.stream = stream
        self.interval = interval
        self._last_draw = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        text = f"{done / 1e6:.1f} MB"
        if total:
            text = f"{done / 1e6:.1f} / {total / 1e6:.1f} MB ({100 * done // total}%)"
        self.stream.write(f"\r{self.label}: {text}" + ("\n" if finished else ""))
        self.stream.flush()


def download(url: str, part_path: Path, progress: ProgressFn | None = None, timeout: float = 30.0) -> None:
    """Fetch `url` into `part_path`, continuing from the bytes already there when the server allows.

    Raises urllib.error.URLError/OSError on network failure; the partial file stays for the next try.
    """
    offset = part_path.stat().st_size if part_path.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left to send: the partial file is complete
            return
        raise
    with response:
        if offset and response.status != 206:  # the server ignored Range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        done = offset
        with part_path.open("ab" if offset else "wb") as out:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    if total is not None and done < total:
        raise urllib.error.URLError(f"connection closed after {done} of {total} bytes")
