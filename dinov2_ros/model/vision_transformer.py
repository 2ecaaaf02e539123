"""The DINOv2 Vision Transformer: one configurable encoder whose state_dict is key for key Meta's.

Parameter names and shapes equal the released `dinov2_vit*14[_reg4]_pretrain.pth` files, so those load
with strict checking. `mask_token` is kept only for that reason (it is used in pre-training, not here).
The forward has no data-dependent control flow, attention goes through SDPA, and `bake_pos_embed`
turns the positional-embedding interpolation into a constant, so the model exports to ONNX/TensorRT.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dinov2_ros.model.layers import Block, PatchEmbed
from dinov2_ros.model.layers.block import LAYER_NORM_EPS
from dinov2_ros.model.pos_embed import interpolate_pos_embed
from dinov2_ros.weights.variants import BackboneVariant, FfnKind, PosEmbedRule

IntermediateLayer = tuple[torch.Tensor, torch.Tensor]


def _rebake_after_load(module: DinoVisionTransformer, incompatible_keys: object) -> None:
    """Loading weights replaces pos_embed: recompute a baked copy so it never goes stale."""
    if module.baked_grid is not None:
        module.bake_pos_embed(*(side * module.patch_size for side in module.baked_grid))


class DinoVisionTransformer(nn.Module):
    """DINOv2 encoder: patch tokens, a CLS token and optional register tokens through pre-norm blocks.

    `pos_embed_rule=None` picks the interpolation rule Meta's checkpoints of that family use:
    "antialias" with register tokens, "offset" without (see `pos_embed.py`).
    """

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        ffn: FfnKind = "mlp",
        num_register_tokens: int = 0,
        patch_size: int = 14,
        img_size: int = 518,
        mlp_ratio: float = 4.0,
        layerscale_init: float = 1.0,
        pos_embed_rule: PosEmbedRule | None = None,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if img_size % patch_size != 0:
            raise ValueError(f"img_size must be a multiple of patch_size {patch_size}, got {img_size}")
        if depth < 1 or num_register_tokens < 0:
            raise ValueError(f"need depth >= 1 and num_register_tokens >= 0, got {depth} and {num_register_tokens}")
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.in_chans = in_chans
        self.pos_embed_rule: PosEmbedRule = pos_embed_rule or ("antialias" if num_register_tokens > 0 else "offset")
        grid_side = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid_side * grid_side, embed_dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        )
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, ffn, mlp_ratio, layerscale_init) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.register_buffer("baked_pos_embed", None, persistent=False)
        self.baked_grid: tuple[int, int] | None = None
        self.register_load_state_dict_post_hook(_rebake_after_load)

    @classmethod
    def from_variant(cls, variant: BackboneVariant, **overrides: object) -> DinoVisionTransformer:
        """The architecture of a released variant; `overrides` (e.g. a smaller embed_dim) are for tests."""
        config: dict[str, object] = {
            "embed_dim": variant.embed_dim,
            "depth": variant.depth,
            "num_heads": variant.num_heads,
            "ffn": variant.ffn,
            "num_register_tokens": variant.num_register_tokens,
            "pos_embed_rule": variant.pos_embed_rule,
            "patch_size": variant.patch_size,
        }
        return cls(**{**config, **overrides})  # type: ignore[arg-type]

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def init_weights(self) -> None:
        """Random weights drawn as in Meta's training code (tests and benchmarks ask for these explicitly)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        nn.init.zeros_(self.mask_token)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.unbake_pos_embed()

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (rows, columns) for an input of height x width pixels; both must be multiples of 14."""
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"input height and width must be multiples of the patch size {self.patch_size}, got "
                f"{height}x{width}; resize or pad the image (e.g. to "
                f"{height // self.patch_size * self.patch_size}x{width // self.patch_size * self.patch_size})"
            )
        return height // self.patch_size, width // self.patch_size

    def bake_pos_embed(self, height: int, width: int) -> None:
        """Precompute the positional embedding for one input size, so export sees a constant, no resize.

        Forward at that size then equals the on-the-fly interpolation exactly; other sizes are refused
        until `unbake_pos_embed()` is called. The buffer is not part of the state_dict, and is recomputed
        when `load_state_dict` brings new weights.
        """
        grid = self.grid_size(height, width)
        with torch.no_grad():
            self.baked_pos_embed = interpolate_pos_embed(self.pos_embed, grid, self.pos_embed_rule).detach().clone()
        self.baked_grid = grid

    def unbake_pos_embed(self) -> None:
        """Return to interpolating the positional embedding for every input size."""
        self.baked_pos_embed = None
        self.baked_grid = None

    def _pos_embed_for(self, grid: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        if self.baked_pos_embed is None:
            return interpolate_pos_embed(self.pos_embed, grid, self.pos_embed_rule).to(dtype)
        if grid != self.baked_grid:
            baked_hw = tuple(side * self.patch_size for side in self.baked_grid or ())
            asked_hw = tuple(side * self.patch_size for side in grid)
            raise ValueError(
                f"the positional embedding is baked for input {baked_hw}, got input {asked_hw}; call "
                "bake_pos_embed() for this size or unbake_pos_embed() to interpolate on the fly"
            )
        return self.baked_pos_embed.to(dtype)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> (B, 1 + R + N, D): CLS, registers (no pos-embed), patches."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected a (B, {self.in_chans}, H, W) image tensor, got shape {tuple(x.shape)}; "
                "convert HWC images with tensor.permute(0, 3, 1, 2)"
            )
        grid = self.grid_size(x.shape[-2], x.shape[-1])
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        tokens = tokens + self._pos_embed_for(grid, tokens.dtype)
        if self.register_tokens is not None:
            registers = self.register_tokens.expand(tokens.shape[0], -1, -1)
            tokens = torch.cat((tokens[:, :1], registers, tokens[:, 1:]), dim=1)
        return tokens

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Final-layer outputs, all after the final LayerNorm: cls_token, register_tokens, patch_tokens."""
        tokens = self.prepare_tokens(x)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        first_patch = 1 + self.num_register_tokens
        return {
            "cls_token": tokens[:, 0],
            "register_tokens": tokens[:, 1:first_patch],
            "patch_tokens": tokens[:, first_patch:],
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_features(x)

    def _checked_indices(self, indices: Sequence[int]) -> list[int]:
        checked = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, int) or not -self.num_blocks <= index < self.num_blocks:
                raise ValueError(
                    f"block indices must be ints in [-{self.num_blocks}, {self.num_blocks}) for this "
                    f"{self.num_blocks}-block model, got {index!r} in {list(indices)}"
                )
            checked.append(index % self.num_blocks)
        if not checked:
            raise ValueError("indices is empty; pass the block indices to return, e.g. [self.num_blocks - 1]")
        return checked

    def get_intermediate_tokens(self, x: torch.Tensor, indices: Sequence[int], norm: bool = True) -> list[torch.Tensor]:
        """Every token (B, 1 + R + N, D) of the chosen blocks' outputs, in the order given: class token,
        R registers, N patches in row-major order; with the final LayerNorm when `norm`. What dino.txt's
        vision head reads (its last block, normed). Blocks after the last index are not run."""
        wanted = self._checked_indices(indices)
        tokens = self.prepare_tokens(x)
        collected: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.blocks[: max(wanted) + 1]):
            tokens = block(tokens)
            if index in wanted:
                collected[index] = self.norm(tokens) if norm else tokens
        return [collected[index] for index in wanted]

    def to_layer(self, tokens: torch.Tensor, grid: tuple[int, int]) -> IntermediateLayer:
        """A block's tokens (B, 1 + R + N, D) as (patch map (B, D, h, w), class token (B, D)) on `grid` (h, w)."""
        patches = tokens[:, 1 + self.num_register_tokens :]
        patch_map = patches.reshape(tokens.shape[0], grid[0], grid[1], -1).permute(0, 3, 1, 2)
        return patch_map.contiguous(), tokens[:, 0]

    def get_intermediate_layers(
        self, x: torch.Tensor, indices: Sequence[int], norm: bool = True
    ) -> list[IntermediateLayer]:
        """Outputs of the chosen blocks, in the order given, as (patch map (B, D, h, w), cls (B, D)).

        `norm=True` applies the final LayerNorm to each (what the detection heads read); Meta's depth
        heads read `norm=False` outputs (see `depth_head.py`). Blocks after the last index are not run.
        """
        grid = self.grid_size(x.shape[-2], x.shape[-1])
        return [self.to_layer(tokens, grid) for tokens in self.get_intermediate_tokens(x, indices, norm)]
