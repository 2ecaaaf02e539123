"""Test-session settings shared by every layer's tests.

DDS traffic stays on this machine and in a domain of its own, so concurrent test runs (CI, a
developer's shell) never see each other's topics. Set before anything initialises rclpy; child
processes inherit it.
"""

import os
import random
import sys

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

# Outside a sourced ROS install, the virtualenv is the ament prefix: the ROS wheels and the local
# vision_msgs build install their share/ folders into it.
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
