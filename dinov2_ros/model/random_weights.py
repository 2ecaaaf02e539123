"""`weights="random"` is one fixed network: random init from a recorded seed, the same in every process.

A random backbone or head is only useful across processes (features cached by `train-detector` and
read by `eval-detector`, prototypes taught offline and matched by the node, a graph exported once)
when every process builds the same weights. Random init therefore runs under `seeded(seed)`, which
seeds a forked CPU RNG and restores the caller's RNG state afterwards. Bit-identical on one torch
build and machine; other torch versions may draw other numbers from the same seed. The seed and the
tag that names these weights live in `weights.identity`, which needs no torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from dinov2_ros.weights.identity import RANDOM_WEIGHTS_SEED


@contextlib.contextmanager
def seeded(seed: int = RANDOM_WEIGHTS_SEED) -> Iterator[None]:
    """Run the body with the global CPU RNG seeded to `seed`; the caller's RNG state is restored after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
