"""Fixtures for the node tests: the tiny graphs, exported once per session, and a fresh rclpy context."""

from __future__ import annotations

import pytest
import rclpy
from node_harness import Harness, export_tiny_graphs

# camera sizes (height, width) the node tests use, per tiny encoder
GRAPH_SIZES = {"tiny": [(120, 160), (96, 128)], "slow": [(480, 640)]}


@pytest.fixture(scope="session")
def graph_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("node_graphs")
    for encoder, sizes in GRAPH_SIZES.items():
        export_tiny_graphs(directory, encoder, sizes)
    return directory


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


@pytest.fixture
def harness(context):
    """A test node on its own executor (node_harness.Harness), closed after the test."""
    harness = Harness(context)
    yield harness
    harness.close()
