"""The Triton Python-backend model that runs a dinov2_ros graph in ONNX Runtime on the server's CPU.

`dinov2-ros export --triton-repository DIR --triton-platform python` copies this file into each model
directory as `1/model.py`, beside the graph. It is for servers without Triton's onnxruntime backend
(the tritonserver that nvidia-pytriton bundles, which the tests use); the NGC container runs the
graph with its `onnxruntime_onnx` or `tensorrt_plan` platform instead. The dynamic batcher hands it
several requests at once: their frames are run as one batch and the outputs split back per request.
It imports only numpy, onnxruntime and Triton's own `triton_python_backend_utils`.
"""

import json
from pathlib import Path

import numpy as np


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime

        config = json.loads(args["model_config"])
        folder = Path(args["model_repository"]) / args["model_version"]
        graph = folder / config["parameters"]["dinov2_ros.graph_file"]["string_value"]
        self.session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        self.inputs = [value.name for value in self.session.get_inputs()]
        self.outputs = [value.name for value in self.session.get_outputs()]

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        feeds = [
            {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs}
            for request in requests
        ]
        sizes = [len(feed[self.inputs[0]]) for feed in feeds]
        batch = {name: np.concatenate([feed[name] for feed in feeds]) for name in self.inputs}
        outputs = self.session.run(self.outputs, batch)
        responses, start = [], 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, out[start : start + size])
                for name, out in zip(self.outputs, outputs, strict=True)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
