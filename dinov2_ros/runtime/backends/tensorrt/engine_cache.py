"""On-disk cache of serialised TensorRT engines, keyed by everything an engine is tied to.

An engine only runs with the TensorRT version and GPU that built it, for the ONNX bytes, precision and
shapes it was built from; the same GPU model under another driver can fail too (NVIDIA/TensorRT#3829),
so the driver's and CUDA runtime's versions and the SM count are part of the key. Each entry is one file named after the graph and precision, holding a small
header with its EngineKey and then the engine bytes; a stale key or an engine that fails to
deserialise is rebuilt in place, with a log line saying why. Writes go to a temporary file that is
renamed into place, so a crash or a concurrent reader never sees half an engine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dinov2_ros.atomic_file import atomic_write

LOG = logging.getLogger(__name__)

MAGIC = b"D2RENG01"
_HEADER_LENGTH = struct.Struct("<I")
Engine = TypeVar("Engine")


@dataclass(frozen=True)
class EngineKey:
    """What a serialised engine depends on; any difference means the engine must be rebuilt."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    multiprocessors: int  # SM count: one GPU model comes in configurations (Jetson Orin NX 8/16 GB)
    cuda_driver_version: int  # CUDA's encoding, 1000 * major + 10 * minor (cudaDriverGetVersion)
    cuda_runtime_version: int  # cuda-python's CUDA runtime (cudaRuntimeGetVersion)
    precision: str
    shapes: str  # e.g. "images:1x480x640x3/2x480x640x3/4x480x640x3" (min/opt/max of each profile)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    def differences(self, other: EngineKey) -> list[str]:
        """Human-readable fields in which `other` differs from this key."""
        return [
            f"{field.name} {getattr(other, field.name)!r} -> {getattr(self, field.name)!r}"
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(other, field.name)
        ]


class EngineCache:
    """Directory of engine files. `load_or_build` returns a deserialised engine, building it when needed."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory).expanduser()

    def path_for(self, name: str) -> Path:
        return self.directory / f"{name}.engine"

    def load(self, name: str, key: EngineKey, deserialize: Callable[[bytes], Engine]) -> tuple[Engine | None, str]:
        """(the engine stored under `name`, "") when its key equals `key` and it deserialises, else
        (None, why it must be built). `deserialize` turns bytes into an engine and raises (or returns
        None) on failure."""
        path = self.path_for(name)
        cached, reason = self._cached_engine(path, key)
        if cached is None:
            return None, reason
        try:
            engine = deserialize(cached)
            failure = "deserialize returned None"
        except Exception as error:
            engine, failure = None, f"{type(error).__name__}: {error}"
        if engine is None:
            return None, f"it failed to deserialise ({failure})"
        LOG.info("engine cache: reusing %s", path)
        return engine, ""

    def load_or_build(
        self,
        name: str,
        key: EngineKey,
        build: Callable[[], bytes],
        deserialize: Callable[[bytes], Engine],
    ) -> Engine:
        """`load`, else a fresh build (`build` returns serialised engine bytes), stored under `name`."""
        engine, reason = self.load(name, key, deserialize)
        if engine is not None:
            return engine
        path = self.path_for(name)
        LOG.info("engine cache: building %s because %s", path, reason)
        data = build()
        engine = deserialize(data)
        if engine is None:
            raise RuntimeError(f"a freshly built engine for {name} failed to deserialise; see the TensorRT log")
        write_engine_file(path, key, data)
        return engine

    @staticmethod
    def _cached_engine(path: Path, key: EngineKey) -> tuple[bytes | None, str]:
        """(engine bytes, "") when `path` holds an engine for `key`, else (None, why it must be rebuilt)."""
        if not path.is_file():
            return None, "there is no cached engine"
        try:
            stored, data = read_engine_file(path)
        except ValueError as error:
            return None, str(error)
        if stored != key:
            return None, "its key differs: " + "; ".join(key.differences(stored))
        return data, ""


def write_engine_file(path: Path, key: EngineKey, data: bytes) -> None:
    """Atomically write header + engine bytes."""
    header = key.to_json().encode()
    with atomic_write(path) as temporary, open(temporary, "wb") as stream:
        stream.write(MAGIC + _HEADER_LENGTH.pack(len(header)) + header)
        stream.write(data)


def read_engine_file(path: Path) -> tuple[EngineKey, bytes]:
    """Split a cache file into its key and engine bytes; ValueError when it is not a cache file."""
    blob = path.read_bytes()
    start = len(MAGIC) + _HEADER_LENGTH.size
    if not blob.startswith(MAGIC) or len(blob) < start:
        raise ValueError("it is not a dinov2_ros engine cache file (no header)")
    (length,) = _HEADER_LENGTH.unpack_from(blob, len(MAGIC))
    try:
        key = EngineKey(**json.loads(blob[start : start + length]))
    except (ValueError, TypeError) as error:
        raise ValueError(f"its header is unreadable ({error})") from error
    return key, blob[start + length :]
