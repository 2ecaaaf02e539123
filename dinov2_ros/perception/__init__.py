"""The ROS-free frame path: frames in, depth and tracked 3D objects out (camera geometry, lifting,
oriented boxes, track ids, prototypes). No torch, no ROS."""
