"""A Triton Inference Server model repository from the artifact store's graphs: one model per camera
size, for NVIDIA's Triton container (docs/triton.md).

Each model is `<repository>/<name>/config.pbtxt` and `<name>/1/` holding the graph (its external data
file too). The name is the graph's (`triton_model_name`: spec key and digest), and the config's
parameters carry the graph's metadata (GraphSpec, provenance of the weights, precision, class names),
so the node's `triton` backend picks the model of its settings as it picks a stored graph, and says
why each other model is not it. The config: platform `onnxruntime_onnx` (the container's ONNX Runtime backend, on
the GPU) or the Python backend running the graph in ONNX Runtime on the CPU (`platform="python"`,
for a server without the ONNX Runtime backend, as in the tests); `max_batch_size`; dynamic batching
with a 2 ms queue delay: cameras at 15-30 Hz send a frame every 33-66 ms each, so frames of several
nodes that arrive within 2 ms of each other share a graph call, and no frame waits more than 3-6 % of
its period for company (a longer window adds latency to every frame for batches that a busy server
forms anyway, as calls queue behind the running one); inputs and outputs from the GraphSpec.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from dinov2_ros.runtime.backends.triton_backend import TRITON_DTYPES, triton_model_name
from dinov2_ros.runtime.graph_file import graph_files, graph_sha256, load_graph_metadata
from dinov2_ros.runtime.graph_spec import TensorSpec

QUEUE_DELAY_US = 2000
PLATFORMS = ("onnxruntime", "python")
PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")


def write_triton_model(
    repository: str | os.PathLike, graph_path: str | os.PathLike, max_batch: int = 8, platform: str = "onnxruntime"
) -> Path:
    """Write the model of the stored graph at `graph_path` into `repository` (replacing one of that
    name whole); its directory. `max_batch`: the most frames one graph call takes (the dynamic
    batcher's limit)."""
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, got {platform!r}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    graph_path, repository = Path(graph_path), Path(repository).expanduser()
    spec, metadata = load_graph_metadata(graph_path)
    name = triton_model_name(graph_path)
    repository.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=repository, prefix=f".{name}."))
    try:
        version = scratch / "1"
        version.mkdir()
        for file in graph_files(graph_path):
            shutil.copyfile(file, version / file.name)
        if platform == "python":
            shutil.copyfile(PYTHON_MODEL, version / "model.py")
        parameters = {  # the graph's own metadata (spec, provenance, precision, class names), as the store has it
            **metadata,
            "dinov2_ros.graph_file": graph_path.name,
            "dinov2_ros.graph_sha256": graph_sha256(graph_path),
        }
        (scratch / "config.pbtxt").write_text(_config(name, spec, graph_path.name, max_batch, platform, parameters))
        target = repository / name
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _config(name: str, spec, graph_file: str, max_batch: int, platform: str, parameters: dict[str, str]) -> str:
    """config.pbtxt (protobuf text format, Triton's ModelConfig)."""
    runtime = (
        f'platform: "onnxruntime_onnx"\ndefault_model_filename: "{graph_file}"'
        if platform == "onnxruntime"
        else 'backend: "python"'
    )
    kind = "KIND_GPU" if platform == "onnxruntime" else "KIND_CPU"
    lines = [
        f'name: "{name}"',
        runtime,
        f"max_batch_size: {max_batch}",
        "input [\n" + ",\n".join(_tensor(t) for t in spec.input_specs()) + "\n]",
        "output [\n" + ",\n".join(_tensor(t) for t in spec.output_specs()) + "\n]",
        f"dynamic_batching {{ max_queue_delay_microseconds: {QUEUE_DELAY_US} }}",
        f"instance_group [ {{ kind: {kind} count: 1 }} ]",
        *(
            f"parameters {{ key: {json.dumps(k)} value {{ string_value: {json.dumps(v)} }} }}"
            for k, v in parameters.items()
        ),
    ]
    return "\n".join(lines) + "\n"


def _tensor(tensor: TensorSpec) -> str:
    """One input or output: its dims without the batch axis, which max_batch_size adds."""
    dims = ", ".join(str(size) for size in tensor.shape[1:])
    return f'  {{ name: "{tensor.name}" data_type: TYPE_{TRITON_DTYPES[tensor.dtype]} dims: [ {dims} ] }}'
