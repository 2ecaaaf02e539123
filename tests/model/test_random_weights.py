"""weights="random" is one network: the same state_dict in every process, whatever the caller's RNG."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dinov2_ros.model import create_backbone, create_depth_head

# Builds the random vits14 backbone and linear4 head after seeding the global RNG with argv[1], and
# prints a sha256 over every tensor's name, shape, dtype and bytes.
DIGEST_SCRIPT = """
import hashlib, sys, torch
from dinov2_ros.model import create_backbone, create_depth_head
torch.manual_seed(int(sys.argv[1]))
digest = hashlib.sha256()
for module in (create_backbone("vits14", "random"), create_depth_head("vits14", "nyu", "linear4", "random")):
    for key, value in module.state_dict().items():
        digest.update(f"{key}{tuple(value.shape)}{value.dtype}".encode())
        digest.update(value.contiguous().numpy().tobytes())
print(digest.hexdigest())
"""


def state_digest_in_new_process(global_seed: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", DIGEST_SCRIPT, str(global_seed)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.subprocess
def test_random_weights_are_bit_identical_in_separate_processes() -> None:
    first, second = state_digest_in_new_process(1), state_digest_in_new_process(2)
    assert len(first) == 64 and first == second


def test_random_init_leaves_the_callers_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    backbone = create_backbone("vits14", "random")
    head = create_depth_head("vits14", "nyu", "linear", "random")
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(7)  # another caller state, the same network
    again = create_backbone("vits14", "random").state_dict()
    assert all(torch.equal(value, again[key]) for key, value in backbone.state_dict().items())
    assert torch.equal(head.conv_depth.weight, create_depth_head("vits14", "nyu", "linear", "random").conv_depth.weight)
