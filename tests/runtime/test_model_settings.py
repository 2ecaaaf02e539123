"""ModelSettings refuse values that cannot work, saying what is expected, before anything runs."""

from __future__ import annotations

import pytest

from dinov2_ros.runtime.model_settings import ModelSettings


@pytest.mark.parametrize("url", ["http://gpu-server:8001", "gpu-server", "gpu-server:grpc", ":8001"])
def test_a_triton_url_that_is_not_host_and_port_is_refused_saying_the_form(url):
    """An outside trial's wrong addresses (a scheme, no port) were only found when the node first called."""
    with pytest.raises(ValueError, match=r"backend.triton_url must be the server's gRPC address as host:port"):
        ModelSettings.from_values({"model.weights": "random", "backend.kind": "triton", "backend.triton_url": url})


@pytest.mark.parametrize("url", ["localhost:8001", "10.0.0.7:18001", "gpu-server.cell.local:8001", "[::1]:8001"])
def test_host_and_port_are_taken(url):
    settings = ModelSettings.from_values(
        {"model.weights": "random", "backend.kind": "triton", "backend.triton_url": url}
    )
    assert settings.triton_url == url
