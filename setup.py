"""ament_python build of dinov2_ros: colcon installs launch/ and config/ under share/dinov2_ros and
the executables under lib/dinov2_ros, where `ros2 run` and `ros2 launch` look for them."""

from glob import glob

from setuptools import find_packages, setup

package_name = "dinov2_ros"

setup(
    name=package_name,
    version="0.6.0",
    packages=find_packages(include=[package_name, f"{package_name}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dinov2_ros maintainers",
    maintainer_email="maintainers@dinov2-ros.dev",
    description="DINOv2 depth and object perception for ROS 2 (TensorRT, ONNX Runtime, PyTorch).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "perception_node = dinov2_ros.ros.perception_node:main",
            "synthetic_camera_node = dinov2_ros.tools.demo.synthetic_camera_node:main",
            "demo_monitor = dinov2_ros.tools.demo.demo_runner:monitor_main",
            "dinov2-ros = dinov2_ros.cli:main",
        ],
    },
)
