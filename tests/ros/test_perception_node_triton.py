"""The node with `backend.kind triton` against a real Triton server (tests/support/triton_server.py):
it opens the model of its settings by name and publishes what the local graph gives for the frame."""

from __future__ import annotations

import numpy as np
import pytest
from node_harness import SceneCamera, model_parameters, settings_for, stamp_of
from node_harness import start_node as start_tiny_node
from sensor_msgs.msg import CameraInfo, Image
from tiny_graphs import inputs_for

from dinov2_ros.export.triton_repository import write_triton_model
from dinov2_ros.runtime.backend_opener import BackendOpener
from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]
SECOND = 1_000_000_000


def test_the_node_publishes_through_triton_what_its_graph_gives_here(context, graph_dir, harness, tmp_path):
    from triton_server import TritonServer

    opener = BackendOpener(settings_for(model_parameters(graph_dir)))
    spec = opener.spec_for(120, 160)
    graph = opener.find_graph_file(spec)
    write_triton_model(tmp_path / "repository", graph, max_batch=4, platform="python")
    try:
        server = TritonServer(tmp_path / "repository", tmp_path).start()
    except RuntimeError as error:
        pytest.skip(f"no Triton test server here: {error}")
    try:
        node = start_tiny_node(
            context, graph_dir, "remote", **{"backend.kind": "triton", "backend.triton_url": server.url}
        )
        harness.add_node(node)
        camera = SceneCamera(160, 120)
        image_pub = harness.publisher(Image, "/remote/image")
        info_pub = harness.publisher(CameraInfo, "/remote/camera_info")
        depth = harness.record(Image, "/remote/dinov2/depth/image")
        try:
            for index in range(1, 60):
                _publish(camera, image_pub, info_pub, index)
                if harness.spin_until(lambda: len(depth) >= 2, timeout_s=0.2):
                    break
            assert depth, "depth published through the Triton backend"
            assert stamp_of(depth[-1]) % SECOND == 0
            published = np.frombuffer(depth[-1].data, np.float32).reshape(120, 160)
        finally:
            node.destroy_node()
        with OnnxRuntimeBackend(graph, spec) as local:
            expected = local.infer(inputs_for(spec, camera.scene.image_rgb[None]))["depth"][0]
        np.testing.assert_array_equal(np.nan_to_num(published), np.nan_to_num(np.where(expected > 0, expected, np.nan)))
    finally:
        server.stop()


@pytest.mark.parametrize("size", [{}, {"camera.width": 160, "camera.height": 120}], ids=["learned", "configured"])
def test_a_server_not_up_at_start_is_said_and_tried_again_until_it_serves(
    context, graph_dir, harness, tmp_path, monkeypatch, size
):
    """With the camera size configured the graph is opened at configure: a server not up then must not
    fail the configure (an outside trial's node exited with rc 1), the frames retry as with a learned size."""
    from triton_server import TritonServer

    from dinov2_ros.perception import graph_preparation

    monkeypatch.setattr(graph_preparation, "RETRY_S", 0.5)
    opener = BackendOpener(settings_for(model_parameters(graph_dir)))
    write_triton_model(tmp_path / "repository", opener.find_graph_file(opener.spec_for(120, 160)), 4, "python")
    try:
        server = TritonServer(tmp_path / "repository", tmp_path)
    except RuntimeError as error:
        pytest.skip(f"no Triton test server here: {error}")
    namespace = "late_" + ("configured" if size else "learned")
    node = start_tiny_node(
        context, graph_dir, namespace, **{"backend.kind": "triton", "backend.triton_url": server.url, **size}
    )
    harness.add_node(node)
    camera = SceneCamera(160, 120)
    image_pub = harness.publisher(Image, f"/{namespace}/image")
    info_pub = harness.publisher(CameraInfo, f"/{namespace}/camera_info")
    depth = harness.record(Image, f"/{namespace}/dinov2/depth/image")
    statistics = node.cameras["camera"].statistics

    try:
        index = 1
        while not statistics.rejected["graph failed"] and index < 60:
            _publish(camera, image_pub, info_pub, index)
            harness.spin_until(lambda: False, timeout_s=0.1)
            index += 1
        assert "no Triton server answers at" in statistics.last_rejection
        assert "tried again every 0 s" in statistics.last_rejection and not depth
        server.start()
        for later in range(index, index + 200):
            _publish(camera, image_pub, info_pub, later)
            if harness.spin_until(lambda: bool(depth), timeout_s=0.1):
                break
        assert depth, "once the server is up, the next retry opens the model and frames flow"
    finally:
        node.destroy_node()
        server.stop()


def _publish(camera: SceneCamera, image_pub, info_pub, index: int) -> None:
    """The camera's frame `index` (stamped `index` seconds): its camera_info, then its image."""
    image, info, _ = camera.messages(index * SECOND)
    info_pub.publish(info)
    image_pub.publish(image)
