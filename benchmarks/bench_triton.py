"""Many clients, one Triton server: total frames per second, per-client latency and the server's own
batch sizes, for 1, 2, 4 and 8 client processes, against the same clients each running ONNX Runtime
locally.

Each client sends what a node with one camera sends: one 640x480 frame per call with its prototypes,
the next as soon as the answer arrives, `--frames` times. The graph is vits14 with random weights at
the node's default input (308x224). The server is the tests' (tests/support/triton_server.py: the
tritonserver nvidia-pytriton bundles, CPU, its Python backend running the graph in ONNX Runtime);
an NGC container on a GPU would run it with the onnxruntime or tensorrt platform. On this 2-core
machine the point is the shape of the curves and that batching happens, not absolute speed.

Run: `.venv/bin/python benchmarks/bench_triton.py` (about 5 minutes: an export, a server, 30 client runs).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))

from dinov2_ros.export.graph_builder import GraphBuilder  # noqa: E402
from dinov2_ros.export.triton_repository import write_triton_model  # noqa: E402
from dinov2_ros.runtime.backends.triton_backend import triton_model_name  # noqa: E402
from dinov2_ros.runtime.model_settings import ModelSettings  # noqa: E402

CLIENTS = (1, 2, 4, 8)


def client(kind: str, target: str, spec_json: str, frames: int, start, results) -> None:
    """One client process: `frames` calls, one frame each, on Triton (`target` the model name at
    `url`, given as 'url|model') or on a local ONNX Runtime session (`target` the graph's path)."""
    from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dinov2_ros.runtime.backends.triton_backend import TritonBackend
    from dinov2_ros.runtime.graph_spec import GraphSpec
    from dinov2_ros.tools.evaluation.replayed_graph import graph_inputs

    spec = GraphSpec.from_json(spec_json)
    if kind == "triton":
        url, model = target.split("|")
        backend = TritonBackend(spec, url, model, timeout_s=120.0)
    else:
        backend = OnnxRuntimeBackend(target, spec, threads=1)
    image = np.random.default_rng(0).integers(0, 256, (spec.camera_height, spec.camera_width, 3), dtype=np.uint8)
    inputs = graph_inputs(spec, image)
    backend.infer(inputs)  # warm-up, outside the timing
    start.wait()
    latencies = []
    for _ in range(frames):
        begin = time.perf_counter()
        backend.infer(inputs)
        latencies.append(time.perf_counter() - begin)
    results.put(latencies)
    backend.close()


def run(kind: str, target: str, spec_json: str, clients: int, frames: int) -> tuple[float, np.ndarray]:
    """(frames per second over all clients, every call's latency in s)."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(clients + 1), context.Queue()
    processes = [
        context.Process(target=client, args=(kind, target, spec_json, frames, start, results)) for _ in range(clients)
    ]
    for process in processes:
        process.start()
    start.wait()
    begin = time.perf_counter()
    latencies = [results.get() for _ in processes]
    wall = time.perf_counter() - begin
    for process in processes:
        process.join()
    return clients * frames / wall, np.concatenate(latencies)


def batch_sizes(server, model: str) -> dict[int, int]:
    """Executions per batch size so far, from the server's statistics endpoint."""
    stats = server.statistics(model)["model_stats"][0].get("batch_stats", [])
    return {int(entry["batch_size"]): int(entry["compute_infer"]["count"]) for entry in stats}


def main(argv: list[str] | None = None) -> int:
    from triton_server import TritonServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="calls per client")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dinov2_ros_triton_"))
    settings = ModelSettings.from_values(
        {"model.weights": "random", "model.depth_weights": "random", "model.graph_dir": str(work / "graphs")}
    ).replace(max_batch=8)
    builder = GraphBuilder(settings)
    graph = builder.make(480, 640, engine=False)[0]
    spec = builder.spec_for(480, 640)
    write_triton_model(work / "repository", graph, max_batch=8, platform="python")
    server = TritonServer(work / "repository", work).start()
    model = triton_model_name(graph)
    print(
        f"vits14 random weights, 640x480 frames at {spec.input_width}x{spec.input_height}, {args.frames} calls/client"
    )
    print(
        f"{'clients':>7} | {'backend':<22} | {'total frames/s':>14} | {'latency p50 / p99 (ms)':>22} | server batches"
    )
    try:
        for clients in CLIENTS:
            for kind, target in (("triton", f"{server.url}|{model}"), ("onnxruntime", str(graph))):
                before = batch_sizes(server, model)
                fps, latencies = run(kind, target, spec.to_json(), clients, args.frames)
                after = batch_sizes(server, model)
                batches = {size: after.get(size, 0) - before.get(size, 0) for size in after}
                shown = ", ".join(f"{n}x{size}" for size, n in sorted(batches.items()) if n) if kind == "triton" else ""
                name = "one Triton server" if kind == "triton" else "ONNX Runtime per client"
                p50, p99 = np.percentile(latencies * 1000, [50, 99])
                print(f"{clients:7d} | {name:<22} | {fps:14.1f} | {p50:10.0f} / {p99:9.0f} | {shown}")
    finally:
        server.stop()
    print("server batches: executions x frames per execution (the dynamic batcher's work)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
