"""Engine cache: key, reuse, rebuild on corrupt/foreign/stale files, atomic replacement.

TensorRT cannot run here (no GPU), so the cache is driven by a stand-in builder: `build` returns
bytes and `deserialize` accepts only bytes that builder produced, as TensorRT's runtime rejects
engines from another build. The cache logic under test is the real one.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading

import pytest
from tensorrt_modules import engine_key as key
from tiny_graphs import tiny_spec

from dinov2_ros.runtime.backends.tensorrt.engine_cache import (
    EngineCache,
    TimingCacheFile,
    read_engine_file,
    write_engine_file,
)
from dinov2_ros.runtime.backends.tensorrt.loader import shapes_signature
from dinov2_ros.weights.cache import sha256_of

ENGINE_PREFIX = b"stand-in engine:"


class StandInBuilder:
    """Counts builds; `deserialize` refuses anything it did not build (raises, like a version mismatch)."""

    def __init__(self) -> None:
        self.builds = 0

    def build(self) -> bytes:
        self.builds += 1
        return ENGINE_PREFIX + str(self.builds).encode() * 1000

    def deserialize(self, data: bytes) -> str:
        if not data.startswith(ENGINE_PREFIX):
            raise RuntimeError("Serialization assertion failed: version tag mismatch")
        return data.decode()


# a header written before the key held the CUDA driver and runtime versions and the SM count
OLD_HEADER = json.dumps(
    {
        "onnx_sha256": "ab" * 32,
        "tensorrt_version": "10.12.0",
        "gpu_name": "NVIDIA Jetson AGX Orin",
        "compute_capability": "8.7",
        "precision": "fp16",
        "shapes": "images:1x480x640x3/4x480x640x3/4x480x640x3",
    }
).encode()


def test_key_from_file_and_spec(tmp_path):
    onnx_file = tmp_path / "graph.onnx"
    onnx_file.write_bytes(b"abc")
    assert sha256_of(onnx_file) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    spec = tiny_spec()
    assert shapes_signature(spec, max_batch=4) == (
        "images:1x60x80x3/4x60x80x3/4x60x80x3;prototypes:1x4x32/4x4x32/4x4x32;prototype_classes:1x4/4x4/4x4"
    )
    assert shapes_signature(spec, max_batch=4, opt_batch=2).startswith("images:1x60x80x3/2x60x80x3/4x60x80x3;")
    with pytest.raises(ValueError, match="opt_batch 5 and max_batch 4"):
        shapes_signature(spec, max_batch=4, opt_batch=5)
    assert key().differences(key(gpu_name="NVIDIA H100")) == ["gpu_name 'NVIDIA H100' -> 'NVIDIA Jetson AGX Orin'"]


def test_first_use_builds_then_reuses(tmp_path, caplog):
    cache, builder = EngineCache(tmp_path), StandInBuilder()
    with caplog.at_level(logging.INFO):
        first = cache.load_or_build("graph-fp16", key(), builder.build, builder.deserialize)
        second = cache.load_or_build("graph-fp16", key(), builder.build, builder.deserialize)
    assert builder.builds == 1 and first == second
    assert "because there is no cached engine" in caplog.text and "reusing" in caplog.text
    stored_key, data = read_engine_file(cache.path_for("graph-fp16"))
    assert stored_key == key() and data.startswith(ENGINE_PREFIX)


@pytest.mark.parametrize(
    ("changed", "reason"),
    [
        ({"tensorrt_version": "10.13.0"}, "tensorrt_version '10.12.0' -> '10.13.0'"),
        ({"onnx_sha256": "cd" * 32}, "onnx_sha256"),
        ({"gpu_name": "NVIDIA H100", "compute_capability": "9.0"}, "compute_capability '8.7' -> '9.0'"),
        ({"precision": "fp32"}, "precision 'fp16' -> 'fp32'"),
        ({"multiprocessors": 8}, "multiprocessors 16 -> 8"),
        ({"cuda_driver_version": 12080}, "cuda_driver_version 12060 -> 12080"),
        ({"shapes": "images:1x480x640x3/8x480x640x3/8x480x640x3"}, "shapes"),
    ],
)
def test_key_mismatch_rebuilds_and_says_why(tmp_path, caplog, changed, reason):
    cache, builder = EngineCache(tmp_path), StandInBuilder()
    cache.load_or_build("graph", key(), builder.build, builder.deserialize)
    with caplog.at_level(logging.INFO):
        cache.load_or_build("graph", key(**changed), builder.build, builder.deserialize)
    assert builder.builds == 2
    assert "its key differs" in caplog.text and reason in caplog.text
    assert read_engine_file(cache.path_for("graph"))[0] == key(**changed)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a dinov2_ros engine cache file"),
        (b"\x00\x01 a TensorRT engine from trtexec", "not a dinov2_ros engine cache file"),
        (b"D2RENG01\x05\x00\x00\x00{bad}", "header is unreadable"),
        (b"D2RENG01" + struct.pack("<I", len(OLD_HEADER)) + OLD_HEADER + b"engine", "header is unreadable"),
    ],
)
def test_foreign_or_corrupt_file_is_rebuilt(tmp_path, caplog, content, reason):
    cache, builder = EngineCache(tmp_path), StandInBuilder()
    cache.path_for("graph").write_bytes(content)
    with caplog.at_level(logging.INFO):
        engine = cache.load_or_build("graph", key(), builder.build, builder.deserialize)
    assert builder.builds == 1 and engine.startswith(ENGINE_PREFIX.decode())
    assert reason in caplog.text


def test_engine_that_fails_to_deserialise_is_rebuilt(tmp_path, caplog):
    cache, builder = EngineCache(tmp_path), StandInBuilder()
    write_engine_file(cache.path_for("graph"), key(), b"engine from another TensorRT build")
    with caplog.at_level(logging.INFO):
        cache.load_or_build("graph", key(), builder.build, builder.deserialize)
    assert builder.builds == 1
    assert "failed to deserialise (RuntimeError: Serialization assertion failed" in caplog.text


def test_replacement_is_atomic(tmp_path, monkeypatch):
    """A reader sees the old or the new file, never a partial one; a failed write leaves the old file.

    The failure is injected into os.replace: a full disk cannot be produced here.
    """
    path = tmp_path / "graph.engine"
    write_engine_file(path, key(), b"old" * 100_000)
    seen = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            seen.append(read_engine_file(path)[1][:3])

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(20):
        write_engine_file(path, key(), b"new" * 100_000)
        write_engine_file(path, key(), b"old" * 100_000)
    stop.set()
    thread.join()
    assert set(seen) <= {b"old", b"new"} and seen

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_engine_file(path, key(), b"half")
    assert read_engine_file(path)[1] == b"old" * 100_000
    assert [p.name for p in tmp_path.iterdir()] == ["graph.engine"]  # no temporary file left behind


def test_timing_cache_is_reused_only_by_its_tensorrt_and_gpu(tmp_path, caplog):
    """The file of one TensorRT version and GPU: read back by the same, b"" (an empty cache) for another
    or for a damaged file, with a warning; never handed to TensorRT as if it were its own."""
    timing = TimingCacheFile(tmp_path, key())
    assert timing.read() == b"", "none yet"
    timing.write(b"kernel timings")
    with caplog.at_level(logging.INFO):
        assert TimingCacheFile(tmp_path, key(precision="fp32", onnx_sha256="cd" * 32)).read() == b"kernel timings"
    assert "timing cache: reusing" in caplog.text
    other = TimingCacheFile(tmp_path, key(tensorrt_version="10.16.0"))
    assert other.path != timing.path and other.read() == b""
    other.path.write_bytes(timing.path.read_bytes())  # a foreign file under this name (copied by hand)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert other.read() == b""
    assert "it is for" in caplog.text and "10.12.0" in caplog.text
    timing.path.write_bytes(b"D2RTIM01 truncated")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert timing.read() == b""
    assert "ignoring" in caplog.text
