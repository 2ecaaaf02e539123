"""On-disk cache of serialised TensorRT engines, keyed by everything an engine is tied to, and TensorRT's
timing cache beside them.

An engine only runs with the TensorRT version and GPU that built it, for the ONNX bytes, precision and
shapes it was built from; the same GPU model under another driver can fail too (NVIDIA/TensorRT#3829),
so the driver's version and the SM count are part of the key (cuda-python's own CUDA runtime is not:
TensorRT does not use it). Each entry is one file named after the graph, precision, batch and the
key's digest, so two TensorRT versions or GPUs sharing one directory keep their own engines; it holds a
small header with its EngineKey and then the engine bytes, and an engine that fails to deserialise is
rebuilt in place, with a log line saying why. Writes go to a temporary file that is renamed into
place, so a crash or a concurrent reader never sees half an engine.

The timing cache (`TimingCacheFile`, one per TensorRT version and GPU) keeps the kernel timings of
earlier builds, so a rebuild (another camera size, precision or batch, a re-exported graph) takes
seconds instead of minutes; a file whose header names another TensorRT or GPU is ignored, not given to
TensorRT.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
TIMING_MAGIC = b"D2RTIM01"
TIMING_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability", "multiprocessors")
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
    precision: str
    shapes: str  # e.g. "images:1x480x640x3/2x480x640x3/4x480x640x3" (min/opt/max of each profile)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def digest(self) -> str:
        """12 hex digits of the key's sha256: part of the engine's file name."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

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

    def timing_cache(self, key: EngineKey) -> TimingCacheFile:
        """The timing cache file for `key`'s TensorRT version and GPU."""
        return TimingCacheFile(self.directory, key)

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


class TimingCacheFile:
    """TensorRT's serialised timing cache for one TensorRT version and GPU (`TIMING_FIELDS` of an EngineKey)."""

    def __init__(self, directory: str | os.PathLike, key: EngineKey) -> None:
        self.fields = {name: getattr(key, name) for name in TIMING_FIELDS}
        digest = hashlib.sha256(json.dumps(self.fields, sort_keys=True).encode()).hexdigest()[:12]
        self.path = Path(directory).expanduser() / f"timing-{digest}.cache"

    def read(self) -> bytes:
        """The stored cache, or b"" (TensorRT then starts an empty one) when there is none or it is not
        this TensorRT's and GPU's (logged)."""
        if not self.path.is_file():
            return b""
        try:
            fields, data = _read_keyed_file(self.path, TIMING_MAGIC, "timing cache")
        except ValueError as error:
            LOG.warning("timing cache: ignoring %s: %s", self.path, error)
            return b""
        if fields != self.fields:
            LOG.warning("timing cache: ignoring %s: it is for %s, this build is %s", self.path, fields, self.fields)
            return b""
        LOG.info("timing cache: reusing %s (%d kB)", self.path, len(data) // 1024)
        return data

    def write(self, data: bytes) -> None:
        _write_keyed_file(self.path, TIMING_MAGIC, json.dumps(self.fields, sort_keys=True), data)


def write_engine_file(path: Path, key: EngineKey, data: bytes) -> None:
    """Atomically write header + engine bytes."""
    _write_keyed_file(path, MAGIC, key.to_json(), data)


def read_engine_file(path: Path) -> tuple[EngineKey, bytes]:
    """Split a cache file into its key and engine bytes; ValueError when it is not a cache file."""
    fields, data = _read_keyed_file(path, MAGIC, "engine cache")
    try:
        return EngineKey(**fields), data
    except TypeError as error:
        raise ValueError(f"its header is unreadable ({error})") from error


def _write_keyed_file(path: Path, magic: bytes, header: str, data: bytes) -> None:
    encoded = header.encode()
    with atomic_write(path) as temporary, open(temporary, "wb") as stream:
        stream.write(magic + _HEADER_LENGTH.pack(len(encoded)) + encoded)
        stream.write(data)


def _read_keyed_file(path: Path, magic: bytes, kind: str) -> tuple[dict, bytes]:
    """(header fields, payload) of a file `_write_keyed_file` wrote; ValueError when it is not one."""
    blob = path.read_bytes()
    start = len(magic) + _HEADER_LENGTH.size
    if not blob.startswith(magic) or len(blob) < start:
        raise ValueError(f"it is not a dinov2_ros {kind} file (no header)")
    (length,) = _HEADER_LENGTH.unpack_from(blob, len(magic))
    try:
        fields = json.loads(blob[start : start + length])
    except ValueError as error:
        raise ValueError(f"its header is unreadable ({error})") from error
    if not isinstance(fields, dict):
        raise ValueError("its header is unreadable (not a JSON object)")
    return fields, blob[start + length :]
