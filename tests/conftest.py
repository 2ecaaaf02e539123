"""Test-session settings shared by every layer's tests.

DDS traffic stays on this machine and in a domain of its own, so concurrent test runs (CI, a
developer's shell) never see each other's topics, and Fast DDS gets the package's large-image
profile; the weights cache is the session's own. Set before anything initialises rclpy; child
processes inherit it.
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
