"""The large-image Fast DDS profile: valid, big enough, and given to child processes without ever
replacing the user's own choice."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest
from node_harness import REPO

from dinov2_ros.ros.dds_profile import PROFILE_FILE, profile_environment, profile_variable

NS = {"p": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}


@pytest.mark.parametrize(
    ("distro", "variable"),
    [
        ("humble", "FASTRTPS_DEFAULT_PROFILES_FILE"),
        ("jazzy", "FASTRTPS_DEFAULT_PROFILES_FILE"),
        ("kilted", "FASTDDS_DEFAULT_PROFILES_FILE"),
        ("rolling", "FASTDDS_DEFAULT_PROFILES_FILE"),
        (None, "FASTDDS_DEFAULT_PROFILES_FILE"),
    ],
)
def test_each_distribution_gets_the_variable_its_fast_dds_reads(distro, variable):
    assert profile_variable(distro) == variable
    environment = {"ROS_DISTRO": distro} if distro else {}
    assert profile_environment("/p.xml", environment) == {variable: "/p.xml"}


@pytest.mark.parametrize(
    "environment",
    [
        {"FASTRTPS_DEFAULT_PROFILES_FILE": "/mine.xml"},
        {"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"},
        {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},
    ],
)
def test_a_profile_the_user_chose_or_another_rmw_is_left_alone(environment):
    assert profile_environment("/p.xml", environment) == {}


@pytest.mark.parametrize("profile", ["", "none", "None"])
def test_no_profile_sets_nothing(profile):
    """fastdds_profile:=none (ros2 launch refuses an empty argument value) leaves Fast DDS as it is."""
    assert profile_environment(profile, {}) == {}


def test_the_shipped_profile_sends_a_1080p_frame_through_shared_memory_and_keeps_udp():
    root = ElementTree.parse(REPO / "config" / PROFILE_FILE).getroot()
    descriptors = {
        d.findtext("p:transport_id", namespaces=NS): d for d in root.iterfind(".//p:transport_descriptor", NS)
    }
    participant = root.find("p:participant", NS)
    assert participant.get("is_default_profile") == "true"
    used = [t.text for t in participant.iterfind("p:rtps/p:userTransports/p:transport_id", NS)]
    assert participant.findtext("p:rtps/p:useBuiltinTransports", namespaces=NS) == "false"
    assert sorted(descriptors[t].findtext("p:type", namespaces=NS) for t in used) == ["SHM", "UDPv4"]
    shm = next(descriptors[t] for t in used if descriptors[t].findtext("p:type", namespaces=NS) == "SHM")
    segment = int(shm.findtext("p:segment_size", namespaces=NS))
    assert 1920 * 1080 * 3 < segment <= int(shm.findtext("p:maxMessageSize", namespaces=NS))
