"""Session fixtures for the runtime tests: tiny graphs exported once per GraphSpec (a few seconds each)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_graphs import tiny_graph

from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.onnx_export import export_graph
from dinov2_ros.runtime.perception_graph import PerceptionGraph


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Callable[[GraphSpec], tuple[PerceptionGraph, Path]]:
    """Export (once per spec) the tiny graph for a spec; returns (graph, onnx path)."""
    cache: dict[GraphSpec, tuple[PerceptionGraph, Path]] = {}
    directory = tmp_path_factory.mktemp("onnx")

    def export(spec: GraphSpec) -> tuple[PerceptionGraph, Path]:
        if spec not in cache:
            graph = tiny_graph(spec)
            cache[spec] = graph, export_graph(graph, directory / f"{spec.key}.onnx")
        return cache[spec]

    return export
