"""Start the DINOv2 perception node (and, with rviz:=true, RViz) for one camera.

    ros2 launch dinov2_ros perception.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info weights:=pretrained depth_weights:=pretrained

The node reads config/perception.yaml (or config:=FILE); the launch arguments below override it only
when given. The node is a lifecycle node that brings itself to active; with autostart:=false it
stays unconfigured for a lifecycle manager (e.g. nav2_lifecycle_manager). Its Fast DDS gets config/fastdds_large_images.xml (fastdds_profile:=) unless a profile is
already set. Uses only launch and launch_ros APIs common to Humble, Jazzy and Kilted.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from dinov2_ros.ros.dds_profile import PROFILE_FILE, profile_environment

# launch argument -> node parameter it overrides when not empty
PARAMETER_ARGUMENTS = {
    "backend": "backend.kind",
    "model": "model.variant",
    "weights": "model.weights",
    "depth_weights": "model.depth_weights",
    "detector": "model.detector",
    "detector_weights": "model.detector_weights",
    "precision": "backend.precision",
    "graph_dir": "model.graph_dir",
}


def _perception_node(context):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {parameter: value(argument) for argument, parameter in PARAMETER_ARGUMENTS.items() if value(argument)}
    overrides["use_sim_time"] = value("use_sim_time").lower() in ("true", "1")
    overrides["autostart"] = value("autostart").lower() in ("true", "1")
    image = value("image")
    node = Node(
        additional_env=profile_environment(value("fastdds_profile"), os.environ),
        package="dinov2_ros",
        executable="perception_node",
        name=value("node_name"),
        namespace=value("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[value("config"), overrides],
        remappings=[
            ("image", image),
            ("image/compressed", image + "/compressed"),
            ("camera_info", value("camera_info")),
            ("depth/image", value("depth")),
        ],
    )
    return [node]


def generate_launch_description():
    share = FindPackageShare("dinov2_ros")
    arguments = [
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera image topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="its CameraInfo topic"),
        DeclareLaunchArgument(
            "depth", default_value="/camera/aligned_depth/image_raw", description="aligned depth (camera.use_depth)"
        ),
        DeclareLaunchArgument(
            "config",
            default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
            description="parameter file of the node",
        ),
        DeclareLaunchArgument(
            "backend", default_value="", description="onnxruntime | tensorrt | torch (default: config)"
        ),
        DeclareLaunchArgument("model", default_value="", description="encoder variant, e.g. vits14 (default: config)"),
        DeclareLaunchArgument(
            "weights", default_value="", description="encoder weights: path | pretrained | random (default: config)"
        ),
        DeclareLaunchArgument(
            "depth_weights", default_value="", description="depth head weights: path | pretrained | random"
        ),
        DeclareLaunchArgument("detector", default_value="", description="exemplar | center | none (default: config)"),
        DeclareLaunchArgument(
            "detector_weights", default_value="", description="train-detector checkpoint, for detector:=center"
        ),
        DeclareLaunchArgument("precision", default_value="", description="auto | fp32 | fp16 | int8 (default: config)"),
        DeclareLaunchArgument(
            "graph_dir", default_value="", description="artifact store: exported graphs and engines (default: config)"
        ),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=PathJoinSubstitution([share, "config", PROFILE_FILE]),
            description="Fast DDS profile of the node (large images over shared memory); empty: none",
        ),
        # off by default: a robot usually has no display, and where rviz2 is missing `ros2 launch` would fail
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz (rviz2): true | false"),
        DeclareLaunchArgument(
            "autostart",
            default_value="true",
            description="configure and activate the node at start; false: leave it to a lifecycle manager",
        ),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bags, simulators)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("node_name", default_value="dinov2", description="name of the node"),
    ]
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "config", "perception.rviz"])],
        parameters=[{"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, OpaqueFunction(function=_perception_node), rviz])
