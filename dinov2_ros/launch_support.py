"""What launch/*.launch.py share: RViz where it is installed, and launch arguments that override the
parameter file only when given. Imported by launch files, never by the nodes; `launch` (which only a
ROS 2 install has) is imported where an action is made, so the argument parsing is tested anywhere."""

from __future__ import annotations

import os

TRUE = ("true", "1", "yes", "on")


def as_parameter(text: str, kind: type):
    """A launch argument's text as the node parameter's type (bool, int, float or str); ValueError
    naming the value for text the type does not take."""
    if kind is bool:
        if text.lower() not in (*TRUE, "false", "0", "no", "off"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() in TRUE
    return kind(text)


def rviz_where_installed(wanted: str, use_sim_time: bool = False) -> list:
    """RViz with the package's configuration when `wanted` ("true") and rviz2 is installed; otherwise a
    line saying why not, so a robot without rviz2 runs the rest instead of failing to launch (and
    leaving the nodes it had started orphaned)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
    from launch.actions import LogInfo
    from launch_ros.actions import Node

    if wanted.lower() not in TRUE:
        return []
    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        return [LogInfo(msg="RViz skipped: the rviz2 package is not installed (install ros-<distro>-rviz2)")]
    config = os.path.join(get_package_share_directory("dinov2_ros"), "config", "perception.rviz")
    return [
        Node(
            package="rviz2",
            executable="rviz2",
            arguments=["-d", config],
            parameters=[{"use_sim_time": use_sim_time}],
        )
    ]
