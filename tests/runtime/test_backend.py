"""The Backend interface: every backend refuses bad input before running, with the same message."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_graphs import tiny_spec

from dinov2_ros.runtime.backends import create_backend


@pytest.fixture(params=["onnxruntime", "torch"])
def backend(request, exported):
    spec = tiny_spec()
    graph, path = exported(spec)
    with create_backend(request.param, spec, onnx_path=path, graph=graph, device="cpu") as backend:
        yield backend


def good_inputs(spec, batch: int = 1) -> dict[str, np.ndarray]:
    prototypes = np.eye(spec.max_prototypes, spec.embed_dim, dtype=np.float32)
    return {
        "images": np.zeros((batch, spec.camera_height, spec.camera_width, 3), np.uint8),
        "prototypes": prototypes,
        "prototype_classes": np.arange(spec.max_prototypes, dtype=np.int32),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x: x.pop("prototypes"), r"missing \['prototypes'\], unexpected \[\]"),
        (lambda x: x.update(extra=np.zeros(1)), r"missing \[\], unexpected \['extra'\]"),
        (lambda x: x.update(images=x["images"].astype(np.float32)), r"'images' must be uint8, got float32"),
        (
            lambda x: x.update(images=np.zeros((1, 61, 80, 3), np.uint8)),
            r"'images' must have shape Nx60x80x3, got 1x61x80x3 \(camera",
        ),
        (lambda x: x.update(images=np.zeros((60, 80, 3), np.uint8)), r"must have shape Nx60x80x3, got 60x80x3"),
        (lambda x: x.update(images=np.zeros((0, 60, 80, 3), np.uint8)), r"got 0x60x80x3"),
        (
            lambda x: x.update(prototype_classes=x["prototype_classes"].astype(np.int64)),
            r"'prototype_classes' must be int32, got int64",
        ),
        (
            lambda x: x.update(prototypes=np.zeros((3, 32), np.float32)),
            r"'prototypes' must have shape Nx4x32, got 3x32 \(or 4x32 for every frame alike\)",
        ),
        (lambda x: x.update(images=[[0]]), r"'images' must be a numpy.ndarray, got list"),
    ],
)
def test_bad_inputs_are_refused_with_the_fix(backend, change, message):
    inputs = good_inputs(backend.spec)
    change(inputs)
    with pytest.raises(ValueError, match=message):
        backend.infer(inputs)


def test_good_inputs_run_and_are_timed(backend):
    spec = backend.spec
    inputs = good_inputs(spec, batch=2)
    inputs["images"] = np.asfortranarray(inputs["images"])  # non-contiguous input is accepted
    outputs = backend.infer(inputs)
    assert {name: (a.shape, a.dtype) for name, a in outputs.items()} == {
        t.name: ((2, *t.shape[1:]), t.dtype) for t in spec.output_specs()
    }
    assert backend.last_infer_s > 0


@pytest.mark.parametrize(
    ("kind", "arguments", "message"),
    [
        ("openvino", {}, r"backend must be one of \('onnxruntime', 'tensorrt', 'torch'\)"),
        ("torch", {}, "pass graph="),
        ("onnxruntime", {}, "pass onnx_path"),
        ("onnxruntime", {"threads": -1}, "threads must be >= 0"),
        ("onnxruntime", {"device": "tpu"}, r"device must be one of"),
    ],
)
def test_factory_refuses_bad_choices(exported, kind, arguments, message):
    _, path = exported(tiny_spec())
    if "threads" in arguments or "device" in arguments:
        arguments = arguments | {"onnx_path": path}
    with pytest.raises(ValueError, match=message):
        create_backend(kind, **arguments)


def test_factory_refuses_a_graph_for_another_spec(exported):
    graph, _ = exported(tiny_spec())
    with pytest.raises(ValueError, match="build the graph from this spec"):
        create_backend("torch", tiny_spec(top_k=3), graph=graph)


def test_closed_backend_refuses_to_run(exported):
    spec = tiny_spec()
    _, path = exported(spec)
    with create_backend("onnxruntime", spec, onnx_path=path) as backend:
        pass
    with pytest.raises(RuntimeError, match="backend is closed; create a new one"):
        backend.infer(good_inputs(spec))


def test_a_batch_larger_than_max_batch_runs_in_several_calls_with_the_same_result(backend):
    """Five cameras of one size on an engine built for two frames: three runs, one result."""
    from tiny_graphs import frames

    spec = backend.spec
    inputs = good_inputs(spec) | {"images": frames("random", spec, batch=5)}
    whole = backend.infer(inputs)
    calls = []
    run = backend._infer_impl
    backend._infer_impl = lambda chunk: calls.append(chunk["images"].shape[0]) or run(chunk)
    backend.max_batch = 2
    split = backend.infer(inputs)
    assert calls == [2, 2, 1]
    for name, array in whole.items():
        np.testing.assert_allclose(split[name], array, rtol=1e-5, atol=1e-5, err_msg=name)
