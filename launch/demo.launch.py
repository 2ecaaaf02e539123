"""The whole system without hardware or downloads: a synthetic camera, the perception node, RViz.

    ros2 launch dinov2_ros demo.launch.py

By default the encoder and depth head run with RANDOM weights (nothing is downloaded), so depth and
objects are meaningless; the node says so in its log and on /diagnostics. Pass weights:=pretrained
depth_weights:=pretrained (or checkpoint paths) for real output. The demo monitor teaches each
synthetic part through the /dinov2/add_class service (see dinov2_ros/ros/class_services.py) and logs
what the node finds; watch the parts appear in RViz.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, LogInfo
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from dinov2_ros.ros.dds_profile import PROFILE_FILE, profile_environment

DEMO_TOPICS = {
    "image": "/demo_camera/image",
    "camera_info": "/demo_camera/camera_info",
    "depth": "/demo_camera/depth",
}


def generate_launch_description():
    share = FindPackageShare("dinov2_ros")
    arguments = [
        DeclareLaunchArgument(
            "weights", default_value="random", description="encoder weights: random | pretrained | path"
        ),
        DeclareLaunchArgument("depth_weights", default_value="random", description="depth head weights, likewise"),
        DeclareLaunchArgument("backend", default_value="onnxruntime", description="onnxruntime | tensorrt | torch"),
        DeclareLaunchArgument("rate_hz", default_value="15.0", description="synthetic camera frame rate"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz: true | false"),
    ]
    camera = Node(
        package="dinov2_ros",
        executable="synthetic_camera_node",
        name="demo_camera",
        # 640x480 frames: shared memory, as perception.launch.py gives the node
        additional_env=profile_environment(
            os.path.join(get_package_share_directory("dinov2_ros"), "config", PROFILE_FILE), os.environ
        ),
        parameters=[{"rate_hz": ParameterValue(LaunchConfiguration("rate_hz"), value_type=float)}],
        remappings=[*DEMO_TOPICS.items(), ("ground_truth", "/demo_camera/ground_truth")],
    )
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "perception.launch.py"])),
        launch_arguments={
            **DEMO_TOPICS,
            "weights": LaunchConfiguration("weights"),
            "depth_weights": LaunchConfiguration("depth_weights"),
            "backend": LaunchConfiguration("backend"),
            "rviz": LaunchConfiguration("rviz"),
        }.items(),
    )
    notice = LogInfo(
        msg=[
            "dinov2_ros demo: synthetic camera, backend ",
            LaunchConfiguration("backend"),
            ", encoder weights '",
            LaunchConfiguration("weights"),
            "', depth weights '",
            LaunchConfiguration("depth_weights"),
            "' (random weights give meaningless output; the first frame exports the graph, about a minute)",
        ]
    )
    # teaches each synthetic part through dinov2/add_class and logs what is found against the truth
    monitor = Node(package="dinov2_ros", executable="demo_monitor", output="screen")
    return LaunchDescription([*arguments, notice, camera, perception, monitor])
