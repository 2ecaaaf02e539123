"""The two official pos-embed interpolation rules, checked against a bicubic written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dinov2_ros.model.pos_embed import interpolate_pos_embed


def cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Keys cubic convolution weights for taps -1, 0, 1, 2 at fraction t (PyTorch's bicubic, a = -0.75)."""

    def near(x: float) -> float:
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def resampling_matrix(out_len: int, in_len: int, scale: float) -> torch.Tensor:
    """Rows of bicubic weights sampling at (dst + 0.5) / scale - 0.5, border taps clamped."""
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64)
    for dst in range(out_len):
        src = (dst + 0.5) / scale - 0.5
        base = math.floor(src)
        for offset, weight in zip(range(-1, 3), cubic_weights(src - base), strict=True):
            matrix[dst, min(max(base + offset, 0), in_len - 1)] += weight
    return matrix


def random_pos_embed(side: int = 37, dim: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(1, 1 + side * side, dim)


@pytest.mark.parametrize("grid", [(16, 16), (17, 23), (46, 34)])
def test_offset_rule_samples_at_the_plus_0_1_scale(grid: tuple[int, int]) -> None:
    pos_embed = random_pos_embed()
    out = interpolate_pos_embed(pos_embed, grid, "offset")
    rows = resampling_matrix(grid[0], 37, (grid[0] + 0.1) / 37)
    cols = resampling_matrix(grid[1], 37, (grid[1] + 0.1) / 37)
    patches = pos_embed[0, 1:].double().reshape(37, 37, -1)
    expected = torch.einsum("ri,ijd,cj->rcd", rows, patches, cols).reshape(-1, patches.shape[-1])
    assert out.shape == (1, 1 + grid[0] * grid[1], 3)
    torch.testing.assert_close(out[0, 1:].double(), expected, atol=5e-5, rtol=0)  # fp32 rounding; rules differ by ~1e-1
    assert torch.equal(out[:, 0], pos_embed[:, 0])


@pytest.mark.parametrize("rule", ["offset", "antialias"])
def test_stored_grid_is_returned_unchanged(rule: str) -> None:
    pos_embed = random_pos_embed()
    assert torch.equal(interpolate_pos_embed(pos_embed, (37, 37), rule), pos_embed)


def test_rules_differ_away_from_the_stored_grid() -> None:
    pos_embed = random_pos_embed()
    offset = interpolate_pos_embed(pos_embed, (16, 16), "offset")
    antialias = interpolate_pos_embed(pos_embed, (16, 16), "antialias")
    assert (offset - antialias).abs().max() > 1e-2


def test_half_precision_is_interpolated_in_fp32() -> None:
    pos_embed = random_pos_embed()
    out = interpolate_pos_embed(pos_embed.half(), (16, 20), "offset")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, interpolate_pos_embed(pos_embed.half().float(), (16, 20), "offset"))


def test_unknown_rule_and_non_square_table_are_refused() -> None:
    with pytest.raises(ValueError, match="rule must be one of"):
        interpolate_pos_embed(random_pos_embed(), (16, 16), "nearest")
    with pytest.raises(ValueError, match="1 \\+ M\\*M positions"):
        interpolate_pos_embed(torch.zeros(1, 11, 3), (4, 4), "offset")
