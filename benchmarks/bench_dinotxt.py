"""What dino.txt costs (issue 25): the per-frame graph against plain ViT-L and ViT-S, and adding a text class.

Per frame: three exemplar graphs (random weights, 640x480 camera frames, the node's default 224x308
input, 16 classes of 4 prototypes), exported and run interleaved on ONNX Runtime's CPU provider in one
process: vits14, vitl14_reg4 (the backbone dino.txt needs) and vitl14_reg4 with dino.txt's vision
head (two more blocks on the patch features). No depth head: Meta released none for the register
backbones. Per class: the released-size text encoder (random weights, 538 M parameters) exported to
the store as the node's child export writes it, opened, and prompts encoded as the add_class service
does (StoredPromptEncoder: tokenise, cut after the end token, encode, average the patch halves), with
the default template and with Meta's 80 ImageNet templates (the first 80 as given below).

    .venv/bin/python benchmarks/bench_dinotxt.py [--iterations 20] [--threads 0] [--skip-graphs] [--skip-text]
        [--backend torch --device cuda --precision fp16]   (the GPU column, where PyTorch sees a GPU)
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.tools.latency import time_interleaved

CAMERA = (480, 640)
INPUT = (224, 308)
# the 80 OpenAI ImageNet templates' shape (Meta's notebook uses them): the cost grows with their count
# and length, not their words, so 80 of the notebook's typical length stand for them here
IMAGENET_LIKE_TEMPLATES = tuple(f"a photo of the number {i} {{}}." for i in range(80))


def graphs(directory: Path | None) -> dict[str, tuple[GraphSpec, object]]:
    """The three graphs by name: (spec, exported ONNX path), or (spec, PerceptionGraph) without `directory`."""
    from dinov2_ros.export.core_export import export_graph
    from dinov2_ros.model.factory import build_perception_graph
    from dinov2_ros.model.heads.exemplar import ExemplarHead

    cases = {
        "vits14": ("vits14", False, 384),
        "vitl14_reg4": ("vitl14_reg4", False, 1024),
        "vitl14_reg4 + dino.txt head": ("vitl14_reg4", True, 1024),
    }
    built = {}
    for name, (variant, dinotxt, dim) in cases.items():
        spec = GraphSpec(variant, *CAMERA, *INPUT, heads=("exemplar",), top_k=20, max_prototypes=64, embed_dim=dim,
                         features=True, dinotxt=dinotxt)  # fmt: skip
        start = time.monotonic()
        graph = build_perception_graph(spec, "random", detection_head=ExemplarHead(16, 20), dinotxt_weights="random")
        if directory is None:
            built[name] = spec, graph
            continue
        path = export_graph(graph, directory / f"{spec.key}.onnx")
        print(f"exported {name} in {time.monotonic() - start:.0f} s ({path.stat().st_size / 1e6:.0f} MB)", flush=True)
        built[name] = spec, path
    return built


def per_frame(built, args) -> None:
    rng = np.random.default_rng(0)
    stages = {}
    for name, (spec, graph) in built.items():
        if args.backend == "torch":
            from dinov2_ros.runtime.backends.torch_backend import TorchBackend

            backend = TorchBackend(graph, device=args.device, precision=args.precision)
            where = f"PyTorch {backend.device.type} {args.precision}"
        else:
            from dinov2_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

            backend = OnnxRuntimeBackend(graph, spec, threads=args.threads)
            where = f"ONNX Runtime CPU (threads {args.threads or 'auto'}, {os.cpu_count()} cores)"
        prototypes = rng.standard_normal((spec.max_prototypes, spec.embed_dim)).astype(np.float32)
        inputs = {
            "images": rng.integers(0, 256, (1, *CAMERA, 3), dtype=np.uint8),
            "prototypes": prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True),
            "prototype_classes": (np.arange(spec.max_prototypes) // 4).astype(np.int32),
        }
        stages[name] = lambda backend=backend, inputs=inputs: backend.infer(inputs)
    latency = time_interleaved(stages, args.iterations)
    base = latency["vits14"].median_ms
    plain_l = latency["vitl14_reg4"].median_ms
    print(f"\nper frame, {CAMERA[1]}x{CAMERA[0]} camera, {INPUT[1]}x{INPUT[0]} input, {where}, "
          f"{args.iterations} interleaved runs:")  # fmt: skip
    for name, result in latency.items():
        print(
            f"  {name:<28} median {result.median_ms:8.1f} ms  p99 {result.p99_ms:8.1f} ms  "
            f"x{result.median_ms / base:5.2f} of vits14  x{result.median_ms / plain_l:5.3f} of plain vitl14_reg4"
        )


def text_costs(directory: Path, vocabulary: Path, iterations: int, threads: int) -> None:
    from dinov2_ros.export.text_encoder_export import export_text_encoder, text_encoder_path
    from dinov2_ros.model.factory import create_text_encoder
    from dinov2_ros.perception.text_prompts import StoredPromptEncoder
    from dinov2_ros.runtime.text_encoder import find_text_encoder

    start = time.monotonic()
    encoder = create_text_encoder("random")
    built_s = time.monotonic() - start
    path = text_encoder_path(directory, "random-seed0")
    start = time.monotonic()
    export_text_encoder(encoder, vocabulary, path, "random-seed0")
    export_s = time.monotonic() - start
    del encoder
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\ntext encoder: built in {built_s:.0f} s, exported in {export_s:.0f} s ({size / 1e9:.2f} GB on disk), "
          f"peak RSS of this process so far {peak:.1f} GiB")  # fmt: skip
    # the node's view: a process without torch that opens the stored graph at its first prompt
    script = (
        "import time; from pathlib import Path\n"
        "def _resident_gib():\n"
        "    line = next(x for x in Path('/proc/self/status').read_text().splitlines() if x.startswith('VmRSS:'))\n"
        "    return int(line.split()[1]) / 2**20\n"
        "from dinov2_ros.perception.text_prompts import StoredPromptEncoder\n"
        "before = _resident_gib(); start = time.monotonic()\n"
        f"encoder = StoredPromptEncoder(lambda: Path({str(path)!r}), {threads})\n"
        "encoder.prototype('blue connector')  # the encoder kept open, as the node keeps it\n"
        "print(f'first prompt in a fresh process (opens the graph): {time.monotonic() - start:.1f} s; resident '\n"
        "      f'memory {before:.2f} -> {_resident_gib():.2f} GiB', flush=True)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    prompts = StoredPromptEncoder(lambda: find_text_encoder(directory, "random-seed0")[0], threads)
    prompts.prototype("blue connector")
    for templates, label, runs in (
        (("a photo of a {}.",), "1 template", iterations),
        (IMAGENET_LIKE_TEMPLATES, "80 templates", 3),
    ):
        samples = []
        for index in range(runs):
            start = time.perf_counter()
            prompts.prototype(f"blue connector {index}", templates)
            samples.append((time.perf_counter() - start) * 1e3)
        print(
            f"add a text class, {label:<12}: median {np.median(samples):8.1f} ms  max {max(samples):8.1f} ms ({runs} runs)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime CPU threads (0: its choice)")
    parser.add_argument(
        "--backend",
        choices=("onnxruntime", "torch"),
        default="onnxruntime",
        help="per frame: ONNX Runtime on the CPU, or the PyTorch graphs (--device cuda: the GPU column)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="--backend torch: where it runs")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="--backend torch: fp16 on cuda")
    parser.add_argument("--skip-graphs", action="store_true")
    parser.add_argument("--skip-text", action="store_true")
    parser.add_argument("--vocabulary", default=str(Path(sys.prefix) / "test-data" / "bpe_simple_vocab_16e6.txt.gz"),
                        help="CLIP's BPE vocabulary (default: the tests' copy, scripts/prepare_venv.sh)")  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_dinotxt_") as scratch:
        if not args.skip_graphs:
            per_frame(graphs(None if args.backend == "torch" else Path(scratch)), args)
        if not args.skip_text:
            text_costs(Path(scratch), Path(args.vocabulary), args.iterations, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
