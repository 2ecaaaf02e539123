"""The Triton Inference Server backend: the graph runs on a server that many nodes share, this is its client.

One server per GPU machine serves every camera of a site; its dynamic batcher joins the frames of
several nodes into one graph call (the graph takes its prototypes per frame, so nodes with different
classes share a batch). The node sends each batch as it would run it locally, the uint8 frames and
the prototypes, and gets the graph's own outputs back: tracking, lifting and messages stay in the
node. With the server on the same host, the frames go through system shared memory instead of the
gRPC message (`SAME_HOST` addresses). A model is named by the stored graph it was written from (`triton_model_name`: the spec key and
the content digest of the weights and settings), and its config carries the GraphSpec, so a node and
a server that disagree on weights or settings are refused, saying what differs
(`export/triton_repository.py` writes the repository). `tritonclient` is imported on use only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from dinov2_ros.runtime.backends.base import Backend
from dinov2_ros.runtime.graph_file import ForeignGraphError
from dinov2_ros.runtime.graph_spec import GraphSpec

SPEC_PARAMETER = "dinov2_ros.graph_spec"  # config.pbtxt `parameters`: the model's GraphSpec as JSON
SAME_HOST = ("localhost", "127.0.0.1", "::1", "[::1]")
TRITON_DTYPES = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32"}
INSTALL_HINT = "pip install -r requirements/triton.txt (tritonclient[grpc])"


class TritonUnavailableError(ConnectionError):
    """No Triton server answers at the configured address, or it does not serve the model ready."""


def triton_model_name(graph_path: str | os.PathLike) -> str:
    """The model name of a stored graph (`<spec key>-<digest>[.int8].onnx`): its file name without
    `.onnx`, with the characters a model directory or URL should not hold ('+', '.') as '_'."""
    stem = Path(graph_path).name.removesuffix(".onnx")
    return stem.replace("+", "_").replace(".", "_")


def import_tritonclient():
    """tritonclient.grpc, or ImportError saying how to install it."""
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as error:
        raise ImportError(f"backend.kind triton needs the Triton client: {INSTALL_HINT} ({error})") from error
    return grpcclient


class TritonBackend(Backend):
    """The model `model_name` (`triton_model_name` of the graph for `spec`) on the server at `url`
    (gRPC host:port). TritonUnavailableError when the server or the model is not there (the message
    lists the server's dinov2_ros models); ForeignGraphError when the model is another graph."""

    kind = "triton"

    def __init__(self, spec: GraphSpec, url: str, model_name: str, timeout_s: float = 10.0) -> None:
        super().__init__(spec)
        grpcclient = import_tritonclient()
        from tritonclient.utils import InferenceServerException

        self._error = InferenceServerException
        self.url, self.model_name, self.timeout_s = url, model_name, timeout_s
        self._client = grpcclient.InferenceServerClient(url)
        self._inputs, self._outputs = grpcclient.InferInput, grpcclient.InferRequestedOutput
        try:
            live = self._client.is_server_live(client_timeout=timeout_s)
        except InferenceServerException as error:
            raise TritonUnavailableError(
                f"no Triton server answers at {url} ({error.message()}); start it (docs/triton.md) or set "
                "backend.triton_url to its gRPC address"
            ) from None
        if not live or not self._client.is_model_ready(model_name, client_timeout=timeout_s):
            served = self._served_models()
            raise TritonUnavailableError(
                f"the Triton server at {url} has no ready model '{model_name}' (the graph '{spec.key}' of these "
                f"settings); it serves {served or 'no dinov2_ros model'}: write the model with `dinov2-ros export "
                "--triton-repository DIR` and the node's settings, put it in the server's model repository, "
                "and load it (or restart the server)"
            )
        config = self._client.get_model_config(model_name, as_json=True, client_timeout=timeout_s)["config"]
        stored = config.get("parameters", {}).get(SPEC_PARAMETER, {}).get("string_value")
        if stored is None or GraphSpec.from_json(stored) != spec:
            differences = (
                "no GraphSpec in its config"
                if stored is None
                else "; ".join(spec.differences(GraphSpec.from_json(stored)))
            )
            raise ForeignGraphError(
                f"the Triton model '{model_name}' at {url} is not the graph of these settings: {differences}; "
                "write the repository again with `dinov2-ros export --triton-repository DIR` and the node's settings"
            )
        self.max_batch = int(config.get("max_batch_size", 0)) or None
        self._shared = None  # (region name, handle, bytes): the inputs' system shared memory, same host only
        self.same_host = url.rsplit(":", 1)[0] in SAME_HOST

    def _served_models(self) -> list[str]:
        try:
            index = self._client.get_model_repository_index(as_json=True, client_timeout=self.timeout_s)
        except self._error:
            return []
        return sorted(model["name"] for model in index.get("models", []) if model.get("state") == "READY")

    def _infer_impl(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [inputs[spec.name] for spec in self.inputs]
        region = self._shared_inputs(arrays) if self.same_host else None
        requests, offset = [], 0
        for spec, array in zip(self.inputs, arrays, strict=True):
            request = self._inputs(spec.name, list(array.shape), TRITON_DTYPES[spec.dtype])
            if region is None:
                request.set_data_from_numpy(array)
            else:  # the server reads the frames where they lie, instead of from the gRPC message
                request.set_shared_memory(region, array.nbytes, offset)
                offset += array.nbytes
            requests.append(request)
        wanted = [self._outputs(spec.name) for spec in self.outputs]
        try:
            result = self._client.infer(self.model_name, requests, outputs=wanted, client_timeout=self.timeout_s)
        except self._error as error:  # the frames are rejected with this; the next call tries again
            self._release_shared()  # a restarted server has forgotten the region: register it anew
            raise TritonUnavailableError(
                f"Triton server {self.url}, model '{self.model_name}': {error.message()}"
            ) from None
        return {spec.name: np.array(result.as_numpy(spec.name)) for spec in self.outputs}

    def _shared_inputs(self, arrays: list[np.ndarray]) -> str | None:
        """The name of the registered system shared-memory region now holding `arrays` back to back
        (grown when a batch needs more), or None when the server cannot use one (then gRPC carries them)."""
        import tritonclient.utils.shared_memory as shm

        size = sum(array.nbytes for array in arrays)
        if self._shared is None or self._shared[2] < size:
            self._release_shared()
            name = f"dinov2_ros_{os.getpid()}_{id(self)}"
            handle = shm.create_shared_memory_region(name, f"/{name}", size)
            try:
                self._client.register_system_shared_memory(name, f"/{name}", size, client_timeout=self.timeout_s)
            except self._error:  # another host after all (a port forward), or shared memory refused
                shm.destroy_shared_memory_region(handle)
                self.same_host = False
                return None
            self._shared = (name, handle, size)
        offset = 0
        for array in arrays:
            shm.set_shared_memory_region(self._shared[1], [array], offset)
            offset += array.nbytes
        return self._shared[0]

    def _release_shared(self) -> None:
        if self._shared is None:
            return
        import tritonclient.utils.shared_memory as shm

        name, handle, _ = self._shared
        self._shared = None
        with contextlib.suppress(self._error):  # the server is gone: nothing of it to unregister
            self._client.unregister_system_shared_memory(name, client_timeout=self.timeout_s)
        shm.destroy_shared_memory_region(handle)

    def close(self) -> None:
        if not self.closed:
            self._release_shared()
            self._client.close()
        super().close()
