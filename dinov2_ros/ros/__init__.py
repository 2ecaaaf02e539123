"""ROS 2 layer: nodes, message conversion, QoS, services, diagnostics. The only place importing rclpy."""
