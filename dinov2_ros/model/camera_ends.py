"""Pre- and post-processing in the graph: camera uint8 pixels to encoder input, and results back to camera pixels.

These run inside the graph so the node only hands over camera bytes: as torch modules in
PerceptionGraph (the torch backend, detector training), as their ONNX twins (`runtime.graph_ends`)
in the exported graph. All resizes are bilinear, half-pixel, without antialiasing (TensorRT rejects
antialiased Resize); the geometry comes from `GraphSpec.mapping()` so the forward and inverse maps
are exact inverses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dinov2_ros.runtime.graph_spec import GraphSpec


class Preprocess(nn.Module):
    """uint8 (N,H,W,3) RGB camera frames -> normalised float (N,3,h,w) model input.

    Resizes the raw 0..255 values first (fewer pixels to normalise when downscaling), then applies
    `(x / 255 - mean) / std` as one multiply-add. Letterbox padding is 0 after normalisation, i.e. the
    ImageNet mean colour, so padding adds no contrast for the encoder to react to.
    """

    def __init__(self, spec: GraphSpec) -> None:
        super().__init__()
        self.mapping = spec.mapping()
        self.input_size = (spec.input_height, spec.input_width)
        mean, std = (torch.tensor(values, dtype=torch.float32) for values in spec.normalisation)
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("bias", (-mean / std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = self.mapping
        # cast before anything else: TensorRT accepts uint8 tensors only as I/O feeding a Cast
        x = images.to(self.scale.dtype).permute(0, 3, 1, 2)
        if x.shape[-2:] != (m.content_height, m.content_width):
            x = F.interpolate(
                x, size=(m.content_height, m.content_width), mode="bilinear", align_corners=False, antialias=False
            )
        x = x * self.scale + self.bias
        pad_x = self.input_size[1] - m.content_width
        pad_y = self.input_size[0] - m.content_height
        if pad_x or pad_y:
            x = F.pad(x, (m.offset_x, pad_x - m.offset_x, m.offset_y, pad_y - m.offset_y))
        return x


class DepthToCamera(nn.Module):
    """Model-input depth (N,1,h,w) -> camera depth (N,H,W): crop the letterbox content, resize bilinearly."""

    def __init__(self, spec: GraphSpec) -> None:
        super().__init__()
        self.mapping = spec.mapping()
        self.camera_size = (spec.camera_height, spec.camera_width)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        m = self.mapping
        content = depth[:, :, m.offset_y : m.offset_y + m.content_height, m.offset_x : m.offset_x + m.content_width]
        if content.shape[-2:] != self.camera_size:
            content = F.interpolate(
                content, size=self.camera_size, mode="bilinear", align_corners=False, antialias=False
            )
        return content.squeeze(1)  # a Squeeze, not the Gather that [:, 0] exports to (a copy)


class BoxesToCamera(nn.Module):
    """Model-input xyxy boxes (N,K,4) -> camera pixels, clipped to the image: the inverse of the resize map."""

    def __init__(self, spec: GraphSpec) -> None:
        super().__init__()
        m = spec.mapping()
        scale = torch.tensor([m.scale_x, m.scale_y, m.scale_x, m.scale_y], dtype=torch.float64)
        offset = torch.tensor([m.offset_x, m.offset_y, m.offset_x, m.offset_y], dtype=torch.float64)
        # camera = input * inv_scale + shift, with the constants folded in float64 before rounding to float32
        self.register_buffer("inv_scale", (1.0 / scale).float(), persistent=False)
        self.register_buffer("shift", (-offset / scale).float(), persistent=False)
        self.register_buffer(
            "upper",
            torch.tensor([spec.camera_width, spec.camera_height] * 2, dtype=torch.float32),
            persistent=False,
        )

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        camera = boxes.float() * self.inv_scale + self.shift
        return torch.minimum(torch.clamp(camera, min=0.0), self.upper)
