"""Graphs over protobuf's 2 GiB (vitg14: 4.5 GB fp32) are written with ONNX external data, and every
step after the export takes them: the core's digest, composing, both quantisations, the fp16 copy,
the engine key and the store's deletion of a damaged core.

The tiny graph stands in for vitg14 by lowering the size above which external data is written to
0 bytes (`camera_graph.EXTERNAL_DATA_ABOVE`); docs/performance.md gives the vitg14 run itself
(scripts/export_vitg14.py: random weights, 4.5 GB, its peak memory).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from tiny_graphs import frames, inputs_for, tiny_graph, tiny_spec

from dinov2_ros.export import camera_graph
from dinov2_ros.export.camera_graph import DamagedCoreError, compose_camera_graph, graph_digest, load_core
from dinov2_ros.export.core_export import export_core
from dinov2_ros.export.mixed_precision import fp16_graph
from dinov2_ros.export.quantize import quantize_graph, quantize_qdq
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dinov2_ros.runtime.graph_file import (
    CORE_DIGEST_KEY,
    CORE_SPEC_KEY,
    external_data_path,
    graph_files,
    graph_sha256,
    load_graph_spec,
    read_metadata,
)
from dinov2_ros.weights.digests import sha256_of

pytestmark = pytest.mark.export


@pytest.fixture(scope="module")
def cores(tmp_path_factory):
    """The tiny core written as one file and with external data; (spec, single, external)."""
    spec = tiny_spec()
    graph = tiny_graph(spec)
    directory = tmp_path_factory.mktemp("external")
    single = export_core(graph, directory / "single" / "core.onnx")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(camera_graph, "EXTERNAL_DATA_ABOVE", 0)
        external = export_core(graph, directory / "external" / "core.onnx")
    return spec, single, external


def _outputs(path, spec):
    with OnnxRuntimeBackend(path, spec) as backend:
        return backend.infer(inputs_for(spec, frames("structured", spec, batch=2)))


def test_a_core_over_the_limit_keeps_its_weights_beside_it_with_the_same_digest(cores):
    spec, single, external = cores
    data = external_data_path(external)
    assert graph_files(external) == [external, data] and graph_files(single) == [single]
    stored = onnx.load(external, load_external_data=False)
    outside = [tensor for tensor in stored.graph.initializer if tensor.data_location == onnx.TensorProto.EXTERNAL]
    assert outside and all(len(tensor.raw_data) <= 1024 for tensor in stored.graph.initializer)
    assert [file.name for file in external.parent.iterdir()] == ["core.onnx", "core.onnx.data"], "no scratch left"
    # the digest is of the graph, not of how it is stored: both files load to the same graph
    assert read_metadata(external)[CORE_DIGEST_KEY] == read_metadata(single)[CORE_DIGEST_KEY]
    model, _ = load_core(external, spec.core())
    assert graph_digest(model, external.parent) == read_metadata(external)[CORE_DIGEST_KEY]


def test_a_graph_composed_from_an_external_core_runs_as_the_single_file_one(cores, tmp_path, monkeypatch):
    spec, single, external = cores
    one_file = compose_camera_graph(spec, single, tmp_path / "single.onnx")
    monkeypatch.setattr(camera_graph, "EXTERNAL_DATA_ABOVE", 0)
    beside = compose_camera_graph(spec, external, tmp_path / "external.onnx")
    assert external_data_path(beside).is_file() and not external_data_path(one_file).exists()
    assert load_graph_spec(beside, expected=spec) == spec  # the metadata is read without the weights
    expected, found = _outputs(one_file, spec), _outputs(beside, spec)
    for name in expected:
        np.testing.assert_array_equal(found[name], expected[name], err_msg=name)


def test_a_damaged_data_file_is_a_damaged_core(cores, tmp_path):
    spec, _, external = cores
    copy = tmp_path / "core.onnx"
    for file in graph_files(external):
        (tmp_path / file.name).write_bytes(file.read_bytes())
    data = bytearray(external_data_path(copy).read_bytes())
    data[len(data) // 2] ^= 0xFF
    external_data_path(copy).write_bytes(bytes(data))
    with pytest.raises(DamagedCoreError, match="damaged"):
        load_core(copy, spec.core())


def test_the_engine_key_hashes_the_data_file_too(cores, tmp_path):
    _, single, external = cores
    assert graph_sha256(single) == sha256_of(single)
    assert graph_sha256(external) == sha256_of(external, external_data_path(external)) != sha256_of(external)


def test_both_int8_graphs_and_the_fp16_copy_are_made_from_an_external_graph(cores, tmp_path, monkeypatch):
    spec, single, external = cores
    calibration = list(frames("structured", spec, batch=4))
    one_file_qdq = quantize_qdq(
        compose_camera_graph(spec, single, tmp_path / "single.onnx"), tmp_path / "1.onnx", calibration
    )
    monkeypatch.setattr(camera_graph, "EXTERNAL_DATA_ABOVE", 0)
    int8_core = quantize_graph(external, tmp_path / "core.int8.onnx", key=CORE_SPEC_KEY)
    assert external_data_path(int8_core).is_file()
    load_core(int8_core, spec.core())  # its digest renewed, over the quantised weights
    graph = compose_camera_graph(spec, external, tmp_path / "graph.onnx")
    qdq = quantize_qdq(graph, tmp_path / "graph.qdq.onnx", calibration)
    assert external_data_path(qdq).is_file()
    expected, found = _outputs(one_file_qdq, spec), _outputs(qdq, spec)
    for name in expected:
        np.testing.assert_array_equal(found[name], expected[name], err_msg=name)
    mixed = fp16_graph(onnx.load(graph), spec, graph)
    assert any(tensor.data_type == onnx.TensorProto.FLOAT16 for tensor in mixed.graph.initializer)
    camera_graph.save_model(mixed, tmp_path / "mixed.onnx")
    assert external_data_path(tmp_path / "mixed.onnx").is_file()
    onnx.checker.check_model(str(tmp_path / "mixed.onnx"), full_check=True)


def test_a_core_without_its_data_file_is_damaged_and_says_what_to_copy(cores, tmp_path):
    spec, _, external = cores
    lonely = tmp_path / "core.onnx"
    lonely.write_bytes(external.read_bytes())
    with pytest.raises(DamagedCoreError, match=r"weights file cannot be read .*copy core\.onnx\.data with it"):
        load_core(lonely, spec.core())
