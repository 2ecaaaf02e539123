"""vitg14 end to end with random weights: every file the exporter makes for the largest released model,
whose fp32 weights (4.5 GB) pass protobuf's 2 GiB, each step in its own process with its peak memory.

Steps, in one graph store (`--graph-dir`, default /tmp/vitg14_store, started empty):
1. `dinov2-ros export` fp32: the core (torch) and the 640x480 camera's graph, each with external data,
   the graph run once in ONNX Runtime;
2. `dinov2-ros export --precision int8`: ONNX Runtime's dynamic int8 core and graph;
3. the calibrated Q/DQ graph TensorRT's int8 is built from (`quantize_qdq`, 4 synthetic frames);
4. the fp16 copy the strongly typed TensorRT route parses (`fp16_graph`), written and checked by onnx;
5. the fp32, int8 and Q/DQ graphs run on one frame: each output's agreement with fp32.
Run: `.venv/bin/python benchmarks/export_vitg14.py` (about 8 minutes and 15 GB of memory here).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = ["--variant", "vitg14", "--weights", "random", "--depth-weights", "random", "--camera", "640x480"]


def run_step(name: str, command: list[str]) -> None:
    """Run `command` as a child and print its wall time and peak resident memory (os.wait4's rusage)."""
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:  # a file, not a pipe: the child's log never blocks it
        child = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        log.seek(0)
        errors = log.read()
    code = os.waitstatus_to_exitcode(status)
    print(f"{name:<34} {time.monotonic() - start:6.0f} s  peak {usage.ru_maxrss / 2**20:5.1f} GiB  exit {code}")
    if code:
        print(errors[-3000:], file=sys.stderr)
        raise SystemExit(code)


def in_process(step: str, store: Path) -> None:
    """Steps 3-5, run in the child this script starts for them."""
    import numpy as np
    import onnx

    from dinov2_ros.export.camera_graph import save_model
    from dinov2_ros.export.mixed_precision import fp16_graph
    from dinov2_ros.export.quantize import quantize_qdq
    from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dinov2_ros.runtime.graph_file import load_graph_spec
    from dinov2_ros.tools.evaluation.replayed_graph import graph_inputs
    from dinov2_ros.tools.scenes.synthetic_scenes import SyntheticSceneGenerator

    fp32 = next(path for path in store.glob("vitg14-*.onnx") if path.suffixes == [".onnx"])
    spec = load_graph_spec(fp32)
    frames = [SyntheticSceneGenerator(index, 640, 480).render(0).image_rgb for index in range(4)]
    qdq = fp32.with_suffix(".int8-qdq.onnx")
    if step == "qdq":
        quantize_qdq(fp32, qdq, frames, calibration="benchmarks/export_vitg14.py")
    elif step == "fp16":
        mixed = fp16_graph(onnx.load(str(fp32), load_external_data=False), spec, fp32)
        save_model(mixed, store / "fp16-copy.onnx")
        onnx.checker.check_model(str(store / "fp16-copy.onnx"), full_check=True)
    elif step == "compare":
        outputs = {}
        for name, path in (("fp32", fp32), ("int8", fp32.with_suffix(".int8.onnx")), ("int8 Q/DQ", qdq)):
            with OnnxRuntimeBackend(path, spec) as backend:
                outputs[name] = backend.infer(graph_inputs(spec, frames[0]))
        reference = outputs["fp32"]["features"].reshape(-1, spec.embed_dim)
        for name in ("int8", "int8 Q/DQ"):
            features = outputs[name]["features"].reshape(-1, spec.embed_dim)
            cosine = (
                np.sum(reference * features, 1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(features, axis=1)
            )
            depth = np.abs(outputs[name]["depth"] - outputs["fp32"]["depth"])
            print(
                f"  {name} vs fp32: feature cosine mean {cosine.mean():.5f}, depth |diff| median {np.median(depth):.4f} m"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph-dir", type=Path, default=Path("/tmp/vitg14_store"))
    parser.add_argument("--step", choices=("qdq", "fp16", "compare"), help=argparse.SUPPRESS)  # a child's step
    args = parser.parse_args(argv)
    if args.step:
        in_process(args.step, args.graph_dir)
        return 0
    shutil.rmtree(args.graph_dir, ignore_errors=True)
    cli = [sys.executable, "-m", "dinov2_ros.cli", "export", *MODEL, "--graph-dir", str(args.graph_dir)]
    run_step("1. export fp32 (core + graph)", [*cli, "--precision", "fp32"])
    run_step("2. export int8 (ONNX Runtime)", [*cli, "--precision", "int8"])
    for step, name in (("qdq", "3. int8 Q/DQ graph (TensorRT)"), ("fp16", "4. fp16 copy (TensorRT >= 10.12)")):
        run_step(name, [sys.executable, __file__, "--graph-dir", str(args.graph_dir), "--step", step])
    compare = [sys.executable, __file__, "--graph-dir", str(args.graph_dir), "--step", "compare"]
    start = time.monotonic()
    print(subprocess.run(compare, cwd=REPO, capture_output=True, text=True, check=True).stdout, end="")
    print(f"5. compare (three graphs, one frame)  {time.monotonic() - start:6.0f} s")
    for path in sorted(args.graph_dir.rglob("*.onnx*")):
        print(f"  {path.stat().st_size / 1e9:6.2f} GB  {path.relative_to(args.graph_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
