"""Cold start for a camera size (issue 12, target 4): the model's first size against every later one.

Times the whole `dinov2-ros export` process, as the node's child process runs it, with the node's
parameter file and random weights. A round is one export into an empty artifact store (the core is
exported by torch, then joined to the camera's ends) followed by one export of another camera size
into that store (the stored core joined to that camera's ends, no torch). Rounds alternate the two,
so both see the same machine; medians and the slowest run are printed.

    .venv/bin/python benchmarks/bench_export.py [--rounds 3] [--params-file config/perception.yaml]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FIRST, LATER = "640x480", ("1280x720", "848x480", "1920x1080")


def export_seconds(params_file: Path, graph_dir: Path, camera: str) -> float:
    command = [sys.executable, "-m", "dinov2_ros.cli", "export", "--params-file", str(params_file)]
    command += ["--weights", "random", "--depth-weights", "random", "--graph-dir", str(graph_dir), "--camera", camera]
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed:\n{run.stdout}{run.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--params-file", type=Path, default=REPO / "config" / "perception.yaml")
    args = parser.parse_args()
    first, later = [], []
    with tempfile.TemporaryDirectory(prefix="bench_export_") as scratch:
        for round_index in range(args.rounds):
            store = Path(scratch) / f"store{round_index}"
            first.append(export_seconds(args.params_file, store, FIRST))
            camera = LATER[round_index % len(LATER)]
            later.append(export_seconds(args.params_file, store, camera))
            print(f"round {round_index + 1}/{args.rounds}: {FIRST} {first[-1]:.1f} s, then {camera} {later[-1]:.1f} s")
    for name, values in (("first camera size (core exported)", first), ("later size (stored core)", later)):
        print(f"  {name:36s} median {np.median(values):6.1f} s  max {max(values):6.1f} s")
    print(f"  a later size costs {np.median(later) / np.median(first):.2f} of the first")
    return 0


if __name__ == "__main__":
    sys.exit(main())
