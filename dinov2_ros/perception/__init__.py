"""The ROS-free frame pipeline: camera geometry, 3D lifting, prototypes, synthetic scenes."""
