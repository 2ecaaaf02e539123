"""Write a file so that readers (another node, a crashed run's successor) never see half of it."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success it is flushed to disk and renamed
    onto `path` with the permissions a plainly created file gets (0666 less the umask: mkstemp's
    0600 would keep graphs copied to a robot from a node running as another user), on any error it
    is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        yield Path(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a scratch folder beside `path` in which to write `path.name` and the files that go with
    it (an ONNX graph's external data), under the names they will have. On success each is flushed and
    renamed beside `path` (permissions as `atomic_write`), `path` itself last, so a reader that sees
    the new `path` sees its companions too; on any error the folder is removed and `path` is left as it
    was (companions already moved are new files of the same name, written whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield folder
        written = sorted(folder.iterdir(), key=lambda file: file.name == path.name)  # `path` last
        if not written or written[-1].name != path.name:
            raise FileNotFoundError(f"nothing was written as {path.name} in {folder}")
        for file in written:
            with open(file, "rb") as stream:
                os.fsync(stream.fileno())
            os.chmod(file, 0o666 & ~_umask())
            os.replace(file, path.parent / file.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _umask() -> int:
    """The process umask, read from /proc (Linux) rather than set and restored: os.umask would change
    it for the node's other threads for that moment."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
