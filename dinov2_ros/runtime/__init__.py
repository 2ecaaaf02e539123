"""ONNX export, engine cache and the Backend interface (TensorRT, ONNX Runtime, PyTorch). No ROS."""
