"""Meta's dino.txt, loaded unchanged: the vision head over the backbone's tokens and the text encoder.

Module and parameter names are those of `dinov2/hub/text/` (facebookresearch/dinov2), so the released
`..._vision_head.pth` (Meta's `model.visual_model.head`) and `..._text_encoder.pth` (`model.text_model`)
load strictly. Only the parts the released model uses are built: the head's linear projection and the
text head's blocks are identities there (2 x 1024 = 2048, `text_model_num_head_blocks=0`) and have
no parameters, so they are left out.

Outputs follow `DinoTxt`: `DinoTxtVisionHead` maps the backbone's last-layer normed tokens (class,
registers, patches) to aligned tokens; `encode_image` is [class token, mean of the patch tokens];
`TextEncoder` gives `encode_text` (unnormalised). The patch tokens match the second half of a text
embedding (`patch_aligned`), the class token its first half.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dinov2_ros.model.layers import Block, CausalAttentionBlock
from dinov2_ros.model.layers.block import TORCH_LAYER_NORM_EPS
from dinov2_ros.weights.variants import DINOTXT, DinoTxtRelease


class DinoTxtVisionHead(nn.Module):
    """Meta's `VisionHead`: `block_list` (SwiGLU blocks aligned to 64, no qkv bias) then `ln_final`.

    forward: tokens (B, 1 + R + N, D), the backbone's last block after its final norm, in the order
    class, R registers, N patches -> the same shape in the dino.txt space (D = 1024 for ViT-L).
    """

    def __init__(self, dim: int, num_heads: int, num_blocks: int = 2, layerscale_init: float = 1e-5) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"the dino.txt vision head has at least one block, got num_blocks={num_blocks}")
        self.block_list = nn.ModuleList(
            Block(dim, num_heads, "swiglu_aligned", 4.0, layerscale_init, qkv_bias=False, norm_eps=TORCH_LAYER_NORM_EPS)
            for _ in range(num_blocks)
        )
        self.ln_final = nn.LayerNorm(dim, eps=TORCH_LAYER_NORM_EPS)

    @classmethod
    def from_release(cls, release: DinoTxtRelease = DINOTXT, dim: int = 1024, num_heads: int = 16) -> DinoTxtVisionHead:
        """The released head's architecture on a `dim`-wide backbone with `num_heads` (ViT-L: 1024, 16)."""
        return cls(dim, num_heads, release.head_blocks, release.head_layerscale_init)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            tokens = block(tokens)
        return self.ln_final(tokens)

    def class_and_patch_tokens(
        self, tokens: torch.Tensor, num_register_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`get_visual_class_and_patch_tokens` from the backbone's tokens: class (B, D), patches (B, N, D)."""
        aligned = self(tokens)
        return aligned[:, 0], aligned[:, 1 + num_register_tokens :]


def encode_image(class_token: torch.Tensor, patch_tokens: torch.Tensor) -> torch.Tensor:
    """DinoTxt.encode_image (unnormalised): [class token, mean of the patch tokens] (B, 2D)."""
    return torch.cat([class_token, patch_tokens.mean(dim=1)], dim=-1)


class TextTransformer(nn.Module):
    """Meta's `TextTransformer`: token and positional embeddings, causal blocks, `ln_final`.

    forward: token ids (B, L) int64, L <= context -> (B, L, dim). Causal, so the first L outputs do not
    depend on the ids after them: a batch cut after its longest prompt's end token gives the same
    pooled outputs as the 77 ids Meta's tokenizer pads to.
    """

    def __init__(self, context: int, vocab_size: int, dim: int, num_heads: int, num_layers: int, ffn_ratio: float):
        super().__init__()
        self.context = context
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.positional_embedding = nn.Parameter(torch.zeros(context, dim))
        self.blocks = nn.ModuleList(CausalAttentionBlock(dim, num_heads, ffn_ratio) for _ in range(num_layers))
        self.ln_final = nn.LayerNorm(dim, eps=TORCH_LAYER_NORM_EPS)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(token_ids) + self.positional_embedding[: token_ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x)


class _TextHead(nn.Module):
    """Meta's `TextHead` as released: only `linear_projection` (no blocks, no final norm)."""

    def __init__(self, dim: int, embed_dim: int) -> None:
        super().__init__()
        self.linear_projection = nn.Linear(dim, embed_dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear_projection(tokens)


class TextEncoder(nn.Module):
    """Meta's `TextTower` (`backbone`, `head`, argmax pooling): token ids -> `encode_text`.

    forward: token ids (B, L) int64 as the CLIP tokenizer writes them (start, text, end token 49407,
    zeros) -> (B, embed_dim) float, unnormalised, taken at each row's highest id (its end token).
    """

    def __init__(
        self,
        context: int = DINOTXT.text_context,
        vocab_size: int = DINOTXT.text_vocab_size,
        dim: int = DINOTXT.text_dim,
        num_heads: int = DINOTXT.text_heads,
        num_layers: int = DINOTXT.text_layers,
        ffn_ratio: float = DINOTXT.text_ffn_ratio,
        embed_dim: int = DINOTXT.embed_dim,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.backbone = TextTransformer(context, vocab_size, dim, num_heads, num_layers, ffn_ratio)
        self.head = _TextHead(dim, embed_dim)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        tokens = self.head(self.backbone(token_ids))
        end = token_ids.argmax(dim=-1)
        return tokens[torch.arange(tokens.shape[0], device=tokens.device), end]

    def init_weights(self) -> None:
        """Random weights drawn as Meta's `init_weights` draws them (tests and benchmarks)."""
        backbone, dim, layers = self.backbone, self.backbone.token_embedding.embedding_dim, len(self.backbone.blocks)
        nn.init.normal_(backbone.token_embedding.weight, std=0.02)
        nn.init.normal_(backbone.positional_embedding, std=0.01)
        attn_std, proj_std, fc_std = dim**-0.5, dim**-0.5 * (2 * layers) ** -0.5, (2 * dim) ** -0.5
        for block in backbone.blocks:
            nn.init.normal_(block.attention.qkv.weight, std=attn_std)
            nn.init.normal_(block.attention.proj.weight, std=proj_std)
            nn.init.zeros_(block.attention.proj.bias)
            nn.init.normal_(block.feed_forward.fc1.weight, std=fc_std)
            nn.init.normal_(block.feed_forward.fc2.weight, std=proj_std)
        nn.init.normal_(self.head.linear_projection.weight, std=dim**-0.5)


def patch_aligned(text_embedding: torch.Tensor) -> torch.Tensor:
    """The half of a text embedding (..., 2D) aligned with patch tokens (its second half), L2-normalised,
    as Meta's dinotxt notebook compares text with patches."""
    return F.normalize(text_embedding[..., text_embedding.shape[-1] // 2 :], dim=-1)


def init_vision_head(head: DinoTxtVisionHead) -> None:
    """Random weights drawn as Meta's VisionHead.init_weights draws them (timm's ViT init)."""
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
