"""Start the DINOv2 perception node (and, with rviz:=true, RViz where it is installed) for one camera.

    ros2 launch dinov2_ros perception.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info weights:=pretrained depth_weights:=pretrained

The node reads config/perception.yaml (or config:=FILE); every launch argument below that sets a
parameter overrides the file only when given (`--show-args` lists them). The node is a lifecycle
node that brings itself to active; with autostart:=false it stays unconfigured for a lifecycle
manager (e.g. nav2_lifecycle_manager). Its Fast DDS gets config/fastdds_large_images.xml unless a
profile is already set (fastdds_profile:=FILE for another, fastdds_profile:=none for none). Uses only
launch and launch_ros APIs common to Humble, Jazzy and Kilted.
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from dinov2_ros.launch_support import as_parameter, rviz_where_installed
from dinov2_ros.ros.dds_profile import PROFILE_FILE, profile_environment

# launch argument -> (the node parameter it overrides when given, its type); each defaults to "" (not given)
PARAMETER_ARGUMENTS = {
    "backend": ("backend.kind", str),
    "model": ("model.variant", str),
    "weights": ("model.weights", str),
    "depth_weights": ("model.depth_weights", str),
    "detector": ("model.detector", str),
    "detector_weights": ("model.detector_weights", str),
    "dinotxt_weights": ("model.dinotxt_weights", str),
    "precision": ("backend.precision", str),
    "graph_dir": ("model.graph_dir", str),
    "use_depth": ("camera.use_depth", bool),
    "width": ("camera.width", int),
    "height": ("camera.height", int),
    "autostart": ("autostart", bool),
    "use_sim_time": ("use_sim_time", bool),
}


def _nodes(context):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {
        parameter: as_parameter(value(argument), kind)
        for argument, (parameter, kind) in PARAMETER_ARGUMENTS.items()
        if value(argument)
    }
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
            (
                "image",
                value("image"),
            ),  # and `<image>/compressed` with camera.transport compressed (image_transport's rule)
            ("camera_info", value("camera_info")),
            ("depth/image", value("depth")),
        ],
    )
    return [node, *rviz_where_installed(value("rviz"), overrides.get("use_sim_time", False))]


def generate_launch_description():
    share = FindPackageShare("dinov2_ros")
    arguments = [
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="camera image topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="its CameraInfo topic"),
        DeclareLaunchArgument(
            "depth",
            default_value="/camera/aligned_depth_to_color/image_raw",
            description="aligned depth image topic, used with use_depth:=true",
        ),
        DeclareLaunchArgument(
            "config",
            default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
            description="parameter file of the node",
        ),
        # the parameter file's values unless given (PARAMETER_ARGUMENTS)
        DeclareLaunchArgument("backend", default_value="", description="onnxruntime | tensorrt | torch | triton"),
        DeclareLaunchArgument("model", default_value="", description="encoder variant, e.g. vits14"),
        DeclareLaunchArgument("weights", default_value="", description="encoder weights: path | pretrained | random"),
        DeclareLaunchArgument("depth_weights", default_value="", description="depth head weights, likewise"),
        DeclareLaunchArgument("detector", default_value="", description="exemplar | center | none"),
        DeclareLaunchArgument(
            "detector_weights", default_value="", description="train-detector checkpoint, for detector:=center"
        ),
        DeclareLaunchArgument(
            "dinotxt_weights",
            default_value="",
            description="dino.txt (classes in words; model:=vitl14_reg4): pretrained",
        ),
        DeclareLaunchArgument("precision", default_value="", description="auto | fp32 | fp16 | int8"),
        DeclareLaunchArgument("graph_dir", default_value="", description="artifact store: graphs and engines"),
        DeclareLaunchArgument(
            "use_depth", default_value="", description="true: place objects with the aligned depth image (depth:=)"
        ),
        DeclareLaunchArgument(
            "width", default_value="", description="image width the camera sends (its graph is prepared at start)"
        ),
        DeclareLaunchArgument("height", default_value="", description="image height the camera sends"),
        DeclareLaunchArgument(
            "autostart", default_value="", description="false: leave configure and activate to a lifecycle manager"
        ),
        DeclareLaunchArgument("use_sim_time", default_value="", description="true: use /clock (bags, simulators)"),
        DeclareLaunchArgument(
            "fastdds_profile",
            default_value=PathJoinSubstitution([share, "config", PROFILE_FILE]),
            description="Fast DDS profile of the node (large images over shared memory); none: no profile",
        ),
        # off by default: a robot usually has no display
        DeclareLaunchArgument(
            "rviz", default_value="false", description="also start RViz where it is installed: true | false"
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("node_name", default_value="dinov2", description="name of the node"),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
