"""ROS 2 adapters: nodes, message conversion, QoS, services, diagnostics. Only messages and wiring here."""
