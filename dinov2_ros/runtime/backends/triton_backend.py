"""The Triton Inference Server backend: the graph runs on a server that many nodes share, this is its client.

One server per GPU machine serves every camera of a site; its dynamic batcher joins the frames of
several nodes into one graph call (the graph takes its prototypes per frame, so nodes with different
classes share a batch). The node sends each batch as it would run it locally, the uint8 frames and
the prototypes, and gets the graph's own outputs back: tracking, lifting and messages stay in the
node. With the server on the same host, the frames go through system shared memory instead of the
gRPC message (`SAME_HOST` addresses). A model's config carries its graph's metadata (GraphSpec,
provenance of the weights, precision: `export/triton_repository.py` writes it), so the node takes the
served model of its own settings as it takes a stored graph, and says why each other one is not it.
`tritonclient` is imported on use only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from dinov2_ros import __version__
from dinov2_ros.runtime.artifact_store import mismatches
from dinov2_ros.runtime.backends.base import Backend
from dinov2_ros.runtime.graph_file import SPEC_KEY, VERSION_KEY, ForeignGraphError
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.provenance import Provenance

MAX_BATCH_PARAMETER = "max_batch_size"  # served_graphs adds the config's max_batch_size under this name
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


def served_graphs(client, timeout_s: float = 10.0) -> list[tuple[str, GraphSpec, dict[str, str]]]:
    """(name, GraphSpec, parameters) of every ready model on the server that a dinov2_ros graph was
    written as (`export/triton_repository.py`: the graph's metadata in the config's parameters; its
    `max_batch_size` is added as MAX_BATCH_PARAMETER)."""
    index = client.get_model_repository_index(as_json=True, client_timeout=timeout_s)
    served = []
    for model in index.get("models", []):
        if model.get("state") != "READY":
            continue
        config = client.get_model_config(model["name"], as_json=True, client_timeout=timeout_s)["config"]
        parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        if SPEC_KEY in parameters:
            parameters[MAX_BATCH_PARAMETER] = str(config.get("max_batch_size", 0))
            served.append((model["name"], GraphSpec.from_json(parameters[SPEC_KEY]), parameters))
    return served


def find_served_graph(
    served: list[tuple[str, GraphSpec, dict[str, str]]],
    spec: GraphSpec,
    provenance: Provenance | None,
    precision: str = "fp32",
) -> tuple[str | None, list[tuple[str, str]]]:
    """(the name of the served model made for `spec`, `provenance` and `precision`, or None; every other
    served model with why it is not it), by the artifact store's rule (`artifact_store.mismatches`):
    the weights match by content, and a checkpoint not on this machine by the path it was exported from."""
    skipped = []
    for name, stored, metadata in served:
        if provenance is None:
            reasons = spec.differences(stored)
        else:
            reasons = mismatches(stored, metadata, spec, provenance, precision)
        if metadata.get(VERSION_KEY) != __version__:
            reasons.append(f"exported by dinov2_ros {metadata.get(VERSION_KEY)}, this is {__version__}")
        if not reasons:
            return name, skipped
        skipped.append((name, "; ".join(reasons)))
    return None, skipped


def import_tritonclient():
    """tritonclient.grpc, or ImportError saying how to install it."""
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as error:
        raise ImportError(f"backend.kind triton needs the Triton client: {INSTALL_HINT} ({error})") from error
    return grpcclient


class TritonBackend(Backend):
    """A model for `spec` on the server at `url` (gRPC host:port): `model_name`, or, without one, the
    served model made for `spec`, `provenance` and `precision` (the artifact store's rule,
    `find_served_graph`). TritonUnavailableError when the server or such a model is not there (the
    message says why each served model is not it); ForeignGraphError when `model_name` is another graph."""

    kind = "triton"

    def __init__(
        self,
        spec: GraphSpec,
        url: str,
        model_name: str | None = None,
        timeout_s: float = 10.0,
        provenance: Provenance | None = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__(spec)
        grpcclient = import_tritonclient()
        from tritonclient.utils import InferenceServerException

        self._error = InferenceServerException
        self.url, self.timeout_s = url, timeout_s
        self._client = grpcclient.InferenceServerClient(url)
        self._inputs, self._outputs = grpcclient.InferInput, grpcclient.InferRequestedOutput
        self._shared = None  # (region name, handle, bytes): the inputs' system shared memory, same host only
        self._regions = 0  # regions made so far: each gets a new name (a frozen server may still hold the last)
        self.same_host = url.rsplit(":", 1)[0] in SAME_HOST
        try:
            self._client.is_server_live(client_timeout=timeout_s)
            served = served_graphs(self._client, timeout_s)
        except InferenceServerException as error:
            raise TritonUnavailableError(
                f"no Triton server answers at {url} ({error.message()}); start it (docs/triton.md) or set "
                "backend.triton_url to its gRPC address (port 8001 by default; 8000 is its HTTP port)"
            ) from None
        if model_name is None:
            model_name, skipped = find_served_graph(served, spec, provenance, precision)
            if model_name is None:
                why = "; ".join(f"'{name}': {reason}" for name, reason in skipped) or "none"
                raise TritonUnavailableError(
                    f"the Triton server at {url} serves no model of the graph '{spec.key}' with these weights and "
                    f"settings (its dinov2_ros models, and why each is not it: {why}); write it with `dinov2-ros "
                    "export --triton-repository DIR` and the node's parameter file, put it in the server's model "
                    "repository and restart the server (or run it with --model-control-mode=poll)"
                )
        self.model_name = model_name
        found = {name: (stored, metadata) for name, stored, metadata in served}
        if model_name not in found:
            raise TritonUnavailableError(
                f"the Triton server at {url} has no ready model '{model_name}'; it serves {sorted(found) or 'none'}"
            )
        stored, metadata = found[model_name]
        if stored != spec:
            raise ForeignGraphError(
                f"the Triton model '{model_name}' at {url} is not the graph of these settings: "
                f"{'; '.join(spec.differences(stored))}; write the repository again with `dinov2-ros export "
                "--triton-repository DIR` and the node's settings"
            )
        self.metadata = metadata
        self.max_batch = int(metadata.get(MAX_BATCH_PARAMETER, "0")) or None

    def _infer_impl(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [inputs[spec.name] for spec in self.inputs]
        region = self._shared_inputs(arrays) if self.same_host else None
        refused = self.same_host and region is None
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
            self._release_shared(unregister=False)  # a restarted server has forgotten it: a new region next call
            raise TritonUnavailableError(
                f"Triton server {self.url}, model '{self.model_name}': {error.message()}"
            ) from None
        if refused:  # the server answers but took no shared memory (another host, a port forward): gRPC from now on
            self.same_host = False
        return {spec.name: np.array(result.as_numpy(spec.name)) for spec in self.outputs}

    def _shared_inputs(self, arrays: list[np.ndarray]) -> str | None:
        """The name of the registered system shared-memory region now holding `arrays` back to back
        (grown when a batch needs more), or None when it could not be registered (then gRPC carries
        the frames; `_infer_impl` gives shared memory up only when the server answers and refuses it)."""
        import tritonclient.utils.shared_memory as shm

        size = sum(array.nbytes for array in arrays)
        if self._shared is None or self._shared[2] < size:
            self._release_shared()
            self._regions += 1
            name = f"dinov2_ros_{os.getpid()}_{id(self)}_{self._regions}"
            handle = shm.create_shared_memory_region(name, f"/{name}", size)
            try:
                self._client.register_system_shared_memory(name, f"/{name}", size, client_timeout=self.timeout_s)
            except self._error:
                shm.destroy_shared_memory_region(handle)
                return None
            self._shared = (name, handle, size)
        offset = 0
        for array in arrays:
            shm.set_shared_memory_region(self._shared[1], [array], offset)
            offset += array.nbytes
        return self._shared[0]

    def _release_shared(self, unregister: bool = True) -> None:
        """Free the region; `unregister` also tells the server (not after it failed to answer: a frozen
        server would hold the call for another timeout)."""
        if self._shared is None:
            return
        import tritonclient.utils.shared_memory as shm

        name, handle, _ = self._shared
        self._shared = None
        if unregister:
            with contextlib.suppress(self._error):  # the server is gone: nothing of it to unregister
                self._client.unregister_system_shared_memory(name, client_timeout=self.timeout_s)
        shm.destroy_shared_memory_region(handle)

    def close(self) -> None:
        if not self.closed:
            self._release_shared()
            self._client.close()
        super().close()
