"""CPU forward time of the DINOv2 encoder (+ linear4 depth head) against transformers' Dinov2Model.

Same random vits14 weights in both, fp32, batch 1, `torch.set_num_threads(2)` by default. Prints the
median and p99 per configuration; the transformers backbone, run in the same process, is the baseline.
The configurations run interleaved (one call of each per round), so load from other processes hits
all of them alike and the comparison stays fair on a shared machine.

    .venv/bin/python benchmarks/bench_encoder.py --iters 30
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch
from transformers import Dinov2Config, Dinov2Model

from dinov2_ros.model import create_backbone, create_depth_head, official_to_hf
from dinov2_ros.tools.latency import time_interleaved


def _load_average() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    backbone = create_backbone("vits14", weights="random")
    head = create_depth_head("vits14", "nyu", "linear4", weights="random")

    def depth(x: torch.Tensor) -> torch.Tensor:  # the head on the backbone's taps, as the exported core runs them
        return head(backbone.get_intermediate_layers(x, head.tap_indices, norm=head.final_norm), tuple(x.shape[-2:]))

    config = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, image_size=518, patch_size=14)
    baseline = Dinov2Model(config).eval()
    baseline.load_state_dict(official_to_hf(backbone.state_dict()), strict=True)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, batch 1, {args.iters} rounds")
    print(f"load average before: {_load_average()} ({os.cpu_count()} CPUs)")
    print(f"{'configuration':<44} {'size':>9} {'median ms':>10} {'p99 ms':>8}")
    for size in args.sizes:
        x = torch.randn(1, 3, size, size)
        runs: dict[str, Callable[[], object]] = {
            "transformers Dinov2Model (baseline)": lambda x=x: baseline(pixel_values=x),
            "dinov2_ros backbone": lambda x=x: backbone.forward_features(x),
            "dinov2_ros backbone + linear4 depth head": lambda x=x: depth(x),
        }
        with torch.inference_mode():
            latencies = time_interleaved(runs, args.iters, args.warmup)
        for name, latency in latencies.items():
            print(f"{name:<44} {size:>4}x{size:<4} {latency.median_ms:>10.1f} {latency.p99_ms:>8.1f}")
    print(f"load average after: {_load_average()}")


if __name__ == "__main__":
    main()
