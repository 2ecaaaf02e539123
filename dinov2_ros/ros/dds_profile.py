"""Which environment variable gives Fast DDS the package's large-image profile, per ROS distribution.

config/fastdds_large_images.xml says why the profile exists. Launch files and the demo set the
variable only on the processes they start, and never replace a profile the user already chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

PROFILE_FILE = "fastdds_large_images.xml"
# Fast DDS 2.x (Humble, Jazzy) reads the first; Fast DDS 3 (Kilted and newer) the second, and warns
# that the first is deprecated
_FAST_DDS_2_DISTROS = ("humble", "iron", "jazzy")
PROFILE_VARIABLES = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def profile_variable(ros_distro: str | None) -> str:
    """The variable this distribution's Fast DDS reads (Kilted's when the distribution is unknown)."""
    return PROFILE_VARIABLES[0] if (ros_distro or "").lower() in _FAST_DDS_2_DISTROS else PROFILE_VARIABLES[1]


def profile_environment(profile: str | Path, environment: Mapping[str, str]) -> dict[str, str]:
    """Variables to add to a child process's `environment` so its Fast DDS loads `profile`.

    Empty when the user already set a profile file or runs another RMW (theirs wins), and for a
    `profile` of "" or "none" (the launch files' fastdds_profile:=none).
    """
    rmw = environment.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if (
        str(profile).lower() in ("", "none")
        or not rmw.startswith("rmw_fastrtps")
        or any(environment.get(v) for v in PROFILE_VARIABLES)
    ):
        return {}
    return {profile_variable(environment.get("ROS_DISTRO")): str(profile)}
