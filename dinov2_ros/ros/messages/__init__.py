"""FrameResult -> standard ROS messages, one kind per module: objects, images, markers, points."""
