"""The `triton` backend against a real Triton Inference Server (tests/support/triton_server.py: the
tritonserver nvidia-pytriton bundles, CPU, Python backend running the graph in ONNX Runtime; the NGC
container would use its onnxruntime or tensorrt backend instead): the same outputs as the local ONNX
Runtime backend, frames of different classes batched together, clear refusals, and a server that
goes away and comes back.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from tiny_graphs import frames, inputs_for, tiny_spec

from dinov2_ros.export.triton_repository import write_triton_model
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dinov2_ros.runtime.backends.triton_backend import TritonBackend, TritonUnavailableError, triton_model_name
from dinov2_ros.runtime.graph_file import ForeignGraphError

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    """(spec, graph path, server) with the tiny graph's model in the server's repository."""
    from triton_server import TritonServer

    spec = tiny_spec()
    _, path = exported(spec)
    repository = tmp_path_factory.mktemp("triton_repository")
    write_triton_model(repository, path, max_batch=8, platform="python")
    try:
        server = TritonServer(repository, tmp_path_factory.mktemp("triton_server")).start()
    except RuntimeError as error:
        pytest.skip(f"no Triton test server here: {error}")
    yield spec, path, server
    server.stop()


def test_the_server_gives_what_onnx_runtime_gives_here(served):
    spec, path, server = served
    inputs = inputs_for(spec, frames("structured", spec, batch=3))
    with OnnxRuntimeBackend(path, spec) as local, TritonBackend(spec, server.url, triton_model_name(path)) as remote:
        expected, found = local.infer(inputs), remote.infer(inputs)
        assert remote.max_batch == 8 and remote.same_host, "localhost: the frames went through shared memory"
        remote.same_host = False  # as from another machine: the frames in the gRPC message
        over_grpc = remote.infer(inputs)
    assert set(found) == set(expected)
    for name in expected:
        assert found[name].dtype == expected[name].dtype and found[name].shape == expected[name].shape, name
        np.testing.assert_array_equal(found[name], expected[name], err_msg=name)
        np.testing.assert_array_equal(over_grpc[name], expected[name], err_msg=name)


def test_a_batch_larger_than_the_server_takes_is_sent_in_calls_it_takes(served):
    spec, path, server = served
    inputs = inputs_for(spec, frames("random", spec, batch=11))  # max_batch_size 8: calls of 8 and 3
    with OnnxRuntimeBackend(path, spec) as local, TritonBackend(spec, server.url, triton_model_name(path)) as remote:
        expected, found = local.infer(inputs), remote.infer(inputs)
    for name in expected:
        np.testing.assert_array_equal(found[name], expected[name], err_msg=name)


def test_frames_of_clients_with_other_classes_batched_together_keep_their_own_classes(served):
    """Two frames in one request, each with its own prototypes: what the dynamic batcher makes of two
    nodes' requests. Each frame's detections are those it gets alone."""
    spec, path, server = served
    images = frames("structured", spec, batch=2)
    together = inputs_for(spec, images)
    together["prototype_classes"][1] = -1  # the second client has taught nothing
    with TritonBackend(spec, server.url, triton_model_name(path)) as remote:
        both = remote.infer(together)
        first = remote.infer({name: value[:1] for name, value in together.items()})
        second = remote.infer({name: value[1:] for name, value in together.items()})
    np.testing.assert_array_equal(both["detections"][:1], first["detections"])
    np.testing.assert_array_equal(both["detections"][1:], second["detections"])
    assert (second["detections"][..., 4] == 0).all(), "no classes: no detections"


def test_a_model_the_server_lacks_or_of_other_settings_is_refused_saying_which(served, tmp_path):
    spec, path, server = served
    with pytest.raises(
        TritonUnavailableError, match=rf"no ready model 'missing'.*serves \['{triton_model_name(path)}'\]"
    ):
        TritonBackend(spec, server.url, "missing")
    other = tiny_spec(top_k=3)
    with pytest.raises(ForeignGraphError, match="top_k"):
        TritonBackend(other, server.url, triton_model_name(path))
    with pytest.raises(TritonUnavailableError, match=rf"serves no model .*'{triton_model_name(path)}': top_k 5 -> 3"):
        TritonBackend(other, server.url)  # found by content, as the node does: says why each model is not it


def test_the_model_of_the_settings_is_found_by_its_content(served):
    spec, path, server = served
    with TritonBackend(spec, server.url) as remote:
        assert remote.model_name == triton_model_name(path) and remote.max_batch == 8


def test_a_server_that_goes_away_fails_the_call_clearly_and_serves_again_when_back(served):
    spec, path, server = served
    inputs = inputs_for(spec, frames("structured", spec, batch=1))
    with TritonBackend(spec, server.url, triton_model_name(path), timeout_s=5.0) as remote:
        expected = remote.infer(inputs)
        server.stop()
        with pytest.raises(TritonUnavailableError, match=rf"Triton server {server.url}"):
            remote.infer(inputs)
        server.start()
        np.testing.assert_array_equal(remote.infer(inputs)["detections"], expected["detections"])
        np.testing.assert_array_equal(remote.infer(inputs)["detections"], expected["detections"])
        assert remote.same_host and remote._shared is not None, "shared memory registered anew, not given up"


def test_no_server_at_the_address_is_one_clear_line():
    from triton_server import free_port

    url = f"localhost:{free_port()}"
    with pytest.raises(TritonUnavailableError, match=rf"no Triton server answers at {url}.*backend.triton_url"):
        TritonBackend(tiny_spec(), url, "anything", timeout_s=2.0)


def test_a_server_that_stalls_fails_the_call_after_the_timeout_not_later(served, tmp_path):
    """A model that sleeps 5 s (a stalled server, on a second server here): each call fails after its
    own timeout with the reason, the next one too. (A frozen server, SIGSTOP in an outside trial, also
    held each frame for the shared memory's unregistering; the failed call no longer unregisters.)"""
    from triton_server import TritonServer

    spec, path, _ = served
    repository = tmp_path / "repository"
    model = write_triton_model(repository, path, max_batch=8, platform="python")
    source = (model / "1" / "model.py").read_text()
    (model / "1" / "model.py").write_text(
        source.replace(
            "    def execute(self, requests):\n",
            "    def execute(self, requests):\n        import time\n\n        time.sleep(5)\n",
        )
    )
    server = TritonServer(repository, tmp_path).start()
    try:
        inputs = inputs_for(spec, frames("structured", spec, batch=1))
        with TritonBackend(spec, server.url, triton_model_name(path), timeout_s=1.0) as remote:
            for _ in range(2):  # the second call: after a failed one, with its shared memory released
                start = time.monotonic()
                with pytest.raises(TritonUnavailableError, match="Deadline Exceeded"):
                    remote.infer(inputs)
                assert time.monotonic() - start < 2.5, "one timeout, not two"
    finally:
        server.stop()
