"""Build time: the ONNX graphs (core export with torch, the camera ends in ONNX), int8 and fp16 copies,
TensorRT engines. Run by `dinov2-ros export | build-engine` or the node's child process, never imported by
the robot process."""
