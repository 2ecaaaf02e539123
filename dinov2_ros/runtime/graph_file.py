"""What an ONNX graph file says about itself: the metadata keys dinov2_ros writes, read without parsing
the graph, and the refusal of a file that was not made for the caller.

A graph or core carries its GraphSpec, the package version, its precision and the provenance of its
weights in `metadata_props`; the artifact store and the backends read them here (a few small reads
of the protobuf wire format, not the weights), so the robot needs neither torch nor onnx to choose a file.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

from dinov2_ros import __version__
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.weights.digests import sha256_of

SPEC_KEY = "dinov2_ros.graph_spec"
CORE_SPEC_KEY = "dinov2_ros.core_spec"  # a stored core's GraphSpec (`GraphSpec.core()`), instead of SPEC_KEY
CORE_DIGEST_KEY = "dinov2_ros.core_digest"  # sha256 of a core's graph as written (`graph_digest`)
VERSION_KEY = "dinov2_ros.version"
PRECISION_KEY = "dinov2_ros.precision"
CLASS_NAMES_KEY = "dinov2_ros.class_names"  # JSON list: a trained detection head's class names by id
PROVENANCE_KEY = "dinov2_ros.provenance"  # JSON: what the weights were, by content (artifact_store.Provenance)
CALIBRATION_KEY = "dinov2_ros.calibration"  # a Q/DQ graph's calibration frames (`backend.calibration`)
QDQ_PRECISION = "int8-qdq"  # PRECISION_KEY of a calibrated Q/DQ int8 graph (TensorRT's int8)
EXTERNAL_DATA_SUFFIX = ".data"  # `<graph>.onnx.data`: the weights of a graph over protobuf's 2 GiB (vitg14)


class ForeignGraphError(ValueError):
    """An ONNX file that is not the graph the caller expects (no metadata, other spec or version).

    `fact` is the message without its advice, for a store lookup that goes on to export what is
    missing anyway (its skip line must not tell the user to do it)."""

    def __init__(self, message: str, fact: str | None = None) -> None:
        super().__init__(message)
        self.fact = fact or message


# ModelProto.metadata_props and StringStringEntryProto's key and value (onnx.proto field numbers)
_METADATA_FIELD, _KEY_FIELD, _VALUE_FIELD = 14, 1, 2


_NOT_WHOLE_ONNX = "not a whole ONNX file (truncated, damaged, or another kind of file)"


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata_props of an ONNX file, read from the protobuf wire format without parsing the graph.

    The graph (weights included) is skipped by its length, so reading the spec of a large exported
    graph costs a few small reads instead of parsing hundreds of MB. ValueError if it is not a whole ONNX file.
    """
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        metadata = {}
        for field, value in _protobuf_fields(data, 0, len(data)):
            if field == _METADATA_FIELD:
                entry = dict(_protobuf_fields(data, *value))
                key, text = entry.get(_KEY_FIELD, (0, 0)), entry.get(_VALUE_FIELD, (0, 0))
                metadata[bytes(data[slice(*key)]).decode()] = bytes(data[slice(*text)]).decode()
        return metadata


def _protobuf_fields(data, start: int, end: int) -> Iterator[tuple[int, tuple[int, int]]]:
    """(field number, (start, end) of its bytes) of each length-delimited field in data[start:end]."""
    position = start
    while position < end:
        tag, position = _varint(data, position)
        wire_type = tag & 7
        if wire_type == 0:
            _, position = _varint(data, position)
            continue
        if wire_type == 2:
            length, position = _varint(data, position)
            if position + length > end:
                raise ValueError(f"{_NOT_WHOLE_ONNX}: a protobuf field runs past its end")
            yield tag >> 3, (position, position + length)
            position += length
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"{_NOT_WHOLE_ONNX}: protobuf wire type {wire_type} at byte {position}")


def _varint(data, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError(f"{_NOT_WHOLE_ONNX}: a protobuf varint runs past its end")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def external_data_path(path: str | os.PathLike) -> Path:
    """Where the graph at `path` keeps its weights when it holds them outside itself (ONNX external
    data, `<graph>.onnx.data`: the exporter writes it for graphs whose weights pass 1.5 GiB, as vitg14's
    do, since one protobuf message cannot exceed 2 GiB)."""
    path = Path(path)
    return path.with_name(path.name + EXTERNAL_DATA_SUFFIX)


def graph_files(path: str | os.PathLike) -> list[Path]:
    """The files a graph is made of: `path`, and its external data file where it has one. Copy, hash
    and delete them together."""
    data = external_data_path(path)
    return [Path(path), data] if data.is_file() else [Path(path)]


def graph_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of the graph's files read one after the other (`graph_files`): for a graph without
    external data, the sha256 of its file."""
    return sha256_of(*graph_files(path))


def load_graph_spec(path: str | os.PathLike, expected: GraphSpec | None = None) -> GraphSpec:
    """Read the GraphSpec of an exported file, refusing foreign or stale files with ForeignGraphError."""
    return load_graph_metadata(path, expected)[0]


def load_graph_metadata(
    path: str | os.PathLike, expected: GraphSpec | None = None, key: str = SPEC_KEY
) -> tuple[GraphSpec, dict[str, str]]:
    """`load_graph_spec` and the file's whole metadata_props, from one read of the file.

    `key=CORE_SPEC_KEY` reads a stored core (`export_core`) instead of a camera's graph.
    """
    path = Path(path)
    what = "graph" if key == SPEC_KEY else "core"
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}; create it with `dinov2-ros export`")
    metadata = read_metadata(path)
    if key not in metadata:
        advice = ""
        if CORE_SPEC_KEY in metadata:
            found = "it is the camera-independent core that graphs are composed from (the store keeps cores in cores/)"
        elif SPEC_KEY in metadata:
            found = "it is a camera's graph, not the core that graphs are composed from"
        else:
            found, advice = "it was not exported by dinov2_ros", "; create the graphs with `dinov2-ros export`"
        fact = f"no '{key}' metadata: {found}"
        raise ForeignGraphError(f"{path} has {fact}{advice}", fact)
    version = metadata.get(VERSION_KEY)
    if version != __version__:
        stale = f"exported by dinov2_ros {version}, this is {__version__}"
        raise ForeignGraphError(f"{path} was {stale}; re-export it with `dinov2-ros export`", f"it was {stale}")
    spec = GraphSpec.from_json(metadata[key])
    if expected is not None and spec != expected:
        found, wanted = (spec.key, expected.key) if key == SPEC_KEY else (spec.core_key, expected.core_key)
        raise ForeignGraphError(
            f"{path} holds {what} '{found}' but '{wanted}' was expected; "
            "export the graph for this camera and model with `dinov2-ros export`"
        )
    return spec, metadata


def graph_class_names(path: str | os.PathLike) -> tuple[str, ...] | None:
    """The class names exported with a trained detection head, by class id; None when the file has none."""
    names = read_metadata(path).get(CLASS_NAMES_KEY)
    return None if names is None else tuple(json.loads(names))
