"""The whole system without hardware or downloads: a synthetic camera, the perception node, RViz.

    ros2 launch dinov2_ros demo.launch.py                 # still picking scenes
    ros2 launch dinov2_ros demo.launch.py scene:=conveyor  # parts moving on a tilted table, with track ids
    ros2 launch dinov2_ros demo.launch.py scene:=stacked   # parts lying on others: completed depth, pick order

By default the encoder and depth head run with RANDOM weights (nothing is downloaded), so depth and
objects are meaningless; the node says so in its log and on /diagnostics. Pass weights:=pretrained
depth_weights:=pretrained (or checkpoint paths) for real output. The demo monitor teaches each
synthetic part through the /dinov2/add_class service (see dinov2_ros/ros/class_services.py) and logs
what the node finds; watch the parts appear in RViz, which starts where it is installed.

The node is started here rather than through perception.launch.py, whose camera arguments
(image:=, camera_info:=, ...) the demo would override: `--show-args` lists only what the demo uses.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from dinov2_ros.launch_support import rviz_where_installed
from dinov2_ros.ros.dds_profile import PROFILE_FILE, profile_environment
from dinov2_ros.tools.demo.synthetic_camera_node import PARAMETERS as CAMERA_PARAMETERS

DEMO_TOPICS = {
    "image": "/demo_camera/image",
    "camera_info": "/demo_camera/camera_info",
    "depth/image": "/demo_camera/depth/image",
}
# launch argument -> the perception node's parameter it sets
PARAMETER_ARGUMENTS = {"weights": "model.weights", "depth_weights": "model.depth_weights", "backend": "backend.kind"}


def _rviz(context):
    return rviz_where_installed(LaunchConfiguration("rviz").perform(context))


def generate_launch_description():
    share = get_package_share_directory("dinov2_ros")
    # 640x480 frames: shared memory for both senders (the camera's images, the node's depth and debug images)
    environment = profile_environment(os.path.join(share, "config", PROFILE_FILE), os.environ)
    arguments = [
        DeclareLaunchArgument(
            "weights", default_value="random", description="encoder weights: random | pretrained | path"
        ),
        DeclareLaunchArgument("depth_weights", default_value="random", description="depth head weights, likewise"),
        DeclareLaunchArgument("backend", default_value="onnxruntime", description="onnxruntime | tensorrt | torch"),
        DeclareLaunchArgument(
            "rate_hz",
            default_value=str(CAMERA_PARAMETERS["rate_hz"].default),
            description="synthetic camera frame rate",
        ),
        DeclareLaunchArgument(
            "scene",
            default_value="picking",
            description="picking (still parts) | conveyor (moving parts, ray-cast depth, track ids) | stacked "
            "(parts lying on others: depth completion and the pick order)",
        ),
        DeclareLaunchArgument(
            "rviz", default_value="true", description="start RViz where it is installed: true | false"
        ),
    ]
    camera = Node(
        package="dinov2_ros",
        executable="synthetic_camera_node",
        name="demo_camera",
        additional_env=environment,
        parameters=[
            {
                "rate_hz": ParameterValue(LaunchConfiguration("rate_hz"), value_type=float),
                "scene": LaunchConfiguration("scene"),
            }
        ],
        remappings=[*DEMO_TOPICS.items(), ("ground_truth", "/demo_camera/ground_truth")],
    )
    perception = Node(
        package="dinov2_ros",
        executable="perception_node",
        name="dinov2",
        output="screen",
        emulate_tty=True,
        additional_env=environment,
        parameters=[
            os.path.join(share, "config", "perception.yaml"),
            {parameter: LaunchConfiguration(argument) for argument, parameter in PARAMETER_ARGUMENTS.items()},
            # the tabletop scenes' ray-cast depth places the parts (oriented boxes), as demo_runner does
            {
                "camera.use_depth": ParameterValue(
                    PythonExpression(["'", LaunchConfiguration("scene"), "' in ('conveyor', 'stacked')"]),
                    value_type=bool,
                )
            },
        ],
        remappings=list(DEMO_TOPICS.items()),
    )
    notice = LogInfo(
        msg=[
            "dinov2_ros demo: synthetic camera, backend ",
            LaunchConfiguration("backend"),
            ", encoder weights '",
            LaunchConfiguration("weights"),
            "', depth weights '",
            LaunchConfiguration("depth_weights"),
            "' (random weights give meaningless output; the first frame exports the graph, about half a minute)",
        ]
    )
    # teaches each synthetic part through dinov2/add_class and logs what is found against the truth
    monitor = Node(package="dinov2_ros", executable="demo_monitor", output="screen")
    return LaunchDescription([*arguments, notice, camera, perception, monitor, OpaqueFunction(function=_rviz)])
