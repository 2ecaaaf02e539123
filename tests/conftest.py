"""Test-session settings shared by every layer's tests, and the lanes.

DDS traffic stays on this machine and in a domain of its own, so concurrent test runs (CI, a
developer's shell) never see each other's topics, and Fast DDS gets the package's large-image
profile; the weights cache is the session's own. Set before anything initialises rclpy; child
processes inherit it.

Lanes: a test that uses DDS, starts a subprocess or exports a graph is marked `dds`, `subprocess` or
`export` (by the fixtures it uses, or by its module); `scripts/run_tests.sh --fast` leaves those out.
In the fast lane (DINOV2_ROS_FAST_LANE=1) a test that reaches one of them unmarked fails, so the
marks stay true.
"""

import os
import random
import sys
import tempfile
from pathlib import Path

import pytest

from dinov2_ros.ros.dds_profile import PROFILE_FILE, profile_environment

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# camera-sized frames over shared memory, as the launch files set it up for users
os.environ.update(profile_environment(Path(__file__).parents[1] / "config" / PROFILE_FILE, os.environ))

# Outside a sourced ROS install, the virtualenv is the ament prefix: the ROS wheels and the local
# vision_msgs build install their share/ folders into it.
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)

# The weights cache (downloads, recorded hashes, the sha256 index of checkpoint files) of a test
# session is its own, so tests never write into the user's ~/.cache/dinov2_ros.
os.environ["DINOV2_ROS_CACHE"] = tempfile.mkdtemp(prefix="dinov2_ros_test_cache_")


FAST_LANE = os.environ.get("DINOV2_ROS_FAST_LANE") == "1"
LANE_MARKS = ("dds", "subprocess", "export")
# fixtures that bring DDS, a subprocess or an exported graph with them
FIXTURE_MARKS = {
    "context": "dds",
    "harness": "dds",
    "graph_dir": "export",
    "exported": "export",
    "small_vits14_settings": "export",
    "colcon_install": "subprocess",
    "graph_files": "export",  # tests/perception/test_frame_pipeline.py
    "graph": "export",  # tests/export/test_tensorrt_compat.py
    "probe": "subprocess",  # tests/runtime/test_cuda_runtime.py
}


def pytest_configure(config):
    for mark, what in zip(LANE_MARKS, ("uses DDS (rclpy)", "starts a subprocess", "exports a graph"), strict=True):
        config.addinivalue_line("markers", f"{mark}: {what}; left out of the fast lane (run_tests.sh --fast)")
    if FAST_LANE:
        _guard_the_fast_lane()


def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture in item.fixturenames:
            if fixture in FIXTURE_MARKS:
                item.add_marker(FIXTURE_MARKS[fixture])


_running = ["(collection)"]  # the test being set up or run, for the fast lane's refusals


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _running[0] = item.nodeid


def _guard_the_fast_lane() -> None:
    """Fail a test that reaches DDS, a subprocess or an export without its mark (fixtures of any
    scope included): the fast lane leaves out only what is marked."""
    import subprocess

    import rclpy
    import torch

    def refuse(what: str, mark: str):
        def refused(*args, **kwargs):
            raise RuntimeError(f"{_running[0]} {what} but is not marked `{mark}`: mark it (tests/conftest.py)")

        return refused

    patch = pytest.MonkeyPatch()
    patch.setattr(subprocess, "Popen", refuse("starts a subprocess", "subprocess"))
    patch.setattr(rclpy, "init", refuse("initialises rclpy (DDS)", "dds"))
    patch.setattr(torch.onnx, "export", refuse("exports a graph", "export"))


@pytest.fixture
def http_server():
    """A real HTTP server on 127.0.0.1 in a thread; tests put bytes in `server.files[path]`."""
    from http_server import serving

    with serving() as server:
        yield server


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Export (once per spec) the tiny graph of a GraphSpec; returns (graph, onnx path)."""
    from tiny_graphs import tiny_graph

    from dinov2_ros.export.core_export import export_graph

    cache = {}
    directory = tmp_path_factory.mktemp("onnx")

    def export(spec):
        if spec not in cache:
            graph = tiny_graph(spec)
            cache[spec] = graph, export_graph(graph, directory / f"{spec.key}.onnx")
        return cache[spec]

    return export


@pytest.fixture(scope="session")
def graph_dir(tmp_path_factory):
    """The node tests' artifact store: the tiny encoders' graphs for the camera sizes they use."""
    from node_harness import GRAPH_SIZES, export_tiny_graphs

    directory = tmp_path_factory.mktemp("node_graphs")
    for encoder, sizes in GRAPH_SIZES.items():
        export_tiny_graphs(directory, encoder, sizes)
    return directory


@pytest.fixture
def context():
    """A fresh rclpy context, shut down after the test."""
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


@pytest.fixture
def harness(context):
    """A test node on its own executor (node_harness.Harness), closed after the test."""
    from node_harness import Harness

    harness = Harness(context)
    yield harness
    harness.close()


@pytest.fixture
def small_vits14_settings(tmp_path):
    """ModelSettings of the real vits14 with random weights (asked for) at a 70x56 input, 8 detections
    and 4 prototypes: a graph of the released architecture small enough to export in a test, stored
    in tmp_path. (Imported here: the module's settings above come before the package reads them.)"""
    from dinov2_ros.runtime.model_settings import ModelSettings

    return ModelSettings.from_values(
        {
            "model.weights": "random",
            "model.depth_weights": "random",
            "model.input_height": 56,
            "model.input_width": 70,
            "model.top_k": 8,
            "model.max_prototypes": 4,
            "model.graph_dir": str(tmp_path),
        }
    )
