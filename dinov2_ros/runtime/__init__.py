"""What the robot runs, without torch: the model settings, the graph spec, the artifact store and the
backends (TensorRT, ONNX Runtime; PyTorch where asked for)."""
