"""dinov2_ros: DINOv2 perception for ROS 2 — one compiled graph per camera, depth and objects out."""

__version__ = "0.6.0"
