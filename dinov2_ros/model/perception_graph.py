"""The whole per-frame computation as one nn.Module: camera pixels in; depth, detections and features out.

The PyTorch backend runs PerceptionGraph; ONNX Runtime and TensorRT run its export, whose core is
`PerceptionCore` exported by torch and whose camera ends are written in ONNX (`runtime.graph_ends`),
so all three backends compute the same thing. The encoder runs once; its last block feeds the
detection head and the features output, its tapped blocks feed the depth head.
"""

from __future__ import annotations

import torch
from torch import nn

from dinov2_ros.model.camera_ends import BoxesToCamera, DepthToCamera, Preprocess
from dinov2_ros.model.heads.depth import feature_channels
from dinov2_ros.runtime.graph_spec import GraphSpec


class PerceptionCore(nn.Module):
    """The camera-independent part: the encoder (positional embedding baked) and the heads on a
    normalised model input (N,3,h,w), with results in model-input pixels.

    `forward` returns the outputs named by `spec.core_output_names()`, in that order: `input_depth`
    (N,1,h,w) metres; the detection head's `input_boxes` (N,K,4) xyxy model-input pixels, `scores` (N,K),
    `classes` (N,K) (-1: no detection) and `masks` (N,K,h/14,w/14) logits; `features` (N,D,h/14,w/14).
    The exemplar head also takes the `prototypes` and `prototype_classes` inputs. It is exported once
    per model and input size; each camera size adds only its ends (`runtime.graph_ends`).

    With `vision_head` (dino.txt, `spec.dinotxt`), the patch features the detection head and the
    features output get are that head's tokens over the last block's normed tokens, the space text
    prompts are encoded into; the depth head reads the backbone's blocks as without it.
    """

    def __init__(
        self,
        spec: GraphSpec,
        backbone: nn.Module,
        depth_head: nn.Module | None = None,
        detection_head: nn.Module | None = None,
        vision_head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if spec.dinotxt != (vision_head is not None):
            raise ValueError(
                f"GraphSpec.dinotxt={spec.dinotxt} but the dino.txt vision head is "
                f"{'missing' if spec.dinotxt else 'given'}; pass it exactly when the spec asks for dino.txt"
            )
        if spec.depth != (depth_head is not None):
            raise ValueError(
                f"GraphSpec.heads={spec.heads} but depth_head is {'missing' if spec.depth else 'given'}; "
                "pass a depth head exactly when 'depth' is in the heads"
            )
        if (spec.detection is not None) != (detection_head is not None):
            raise ValueError(
                f"GraphSpec.heads={spec.heads} but detection_head is {'missing' if spec.detection else 'given'}; "
                "pass a detection head exactly when 'exemplar' or 'center' is in the heads"
            )
        if depth_head is not None:
            channels = feature_channels(backbone.embed_dim, len(depth_head.tap_indices))
            if max(depth_head.tap_indices) >= backbone.num_blocks or depth_head.conv_depth.in_channels != channels:
                raise ValueError(
                    f"the depth head (taps {list(depth_head.tap_indices)}, {depth_head.conv_depth.in_channels} "
                    f"channels) does not fit a backbone with {backbone.num_blocks} blocks and embed_dim "
                    f"{backbone.embed_dim}; create both for the same variant"
                )
        if backbone.embed_dim != spec.embed_dim:
            raise ValueError(
                f"GraphSpec.embed_dim={spec.embed_dim} but the backbone has embed_dim={backbone.embed_dim}; "
                "build the spec from the backbone you export"
            )
        if spec.exemplar and getattr(detection_head, "max_classes", spec.max_classes) != spec.max_classes:
            raise ValueError(
                f"GraphSpec.max_classes={spec.max_classes} but the exemplar head reports "
                f"{detection_head.max_classes} classes; build the head from the spec"
            )
        self.spec = spec
        self.output_names = spec.core_output_names()
        self.backbone = backbone.eval()
        self.backbone.bake_pos_embed(spec.input_height, spec.input_width)
        self.depth_head = depth_head.eval() if depth_head is not None else None
        self.detection_head = detection_head.eval() if detection_head is not None else None
        self.vision_head = vision_head.eval() if vision_head is not None else None
        self.last = len(backbone.blocks) - 1
        self.taps = tuple(depth_head.tap_indices) if depth_head is not None else ()
        self.indices = tuple(sorted({*self.taps, self.last}))
        # the depth head says whether it reads normed blocks; features and detection always get normed ones
        self.taps_normed = bool(getattr(depth_head, "final_norm", True))

    def forward(
        self,
        model_input: torch.Tensor,
        prototypes: torch.Tensor | None = None,
        prototype_classes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        x = model_input  # (the argument's name is the exported core's input name, graph_spec.CORE_INPUT)
        grid = self.backbone.grid_size(x.shape[-2], x.shape[-1])
        tokens = self.backbone.get_intermediate_tokens(x, self.indices, norm=self.taps_normed)
        tokens = dict(zip(self.indices, tokens, strict=True))
        layers = {index: self.backbone.to_layer(tokens[index], grid) for index in self.taps}
        last = tokens[self.last] if self.taps_normed else self.backbone.norm(tokens[self.last])
        if self.vision_head is not None:
            last = self.vision_head(last)
        patch_map = self.backbone.to_layer(last, grid)[0]
        outputs = []
        if self.depth_head is not None:
            outputs.append(self.depth_head([layers[i] for i in self.taps], tuple(x.shape[-2:])).float())
        if self.detection_head is not None:
            if self.spec.exemplar:
                boxes, scores, classes, masks = self.detection_head(patch_map, prototypes, prototype_classes)
            else:
                boxes, scores, classes, masks = self.detection_head(patch_map)
            outputs += [boxes.float(), scores.float(), classes.float(), masks.float()]
        if self.spec.features:
            outputs.append(patch_map.float())
        return tuple(outputs)


class PerceptionGraph(nn.Module):
    """Camera pixels in; depth, detections and features out: the camera's input end, the core, its output end.

    `forward` returns the outputs in `spec.output_specs()` order; `output_names` lists them (see
    docs/architecture.md). The ends are the torch twins of the ONNX ends the exported graph is composed
    with (`runtime.graph_ends`); the torch backend runs this module as it is.
    """

    def __init__(
        self,
        spec: GraphSpec,
        backbone: nn.Module,
        depth_head: nn.Module | None = None,
        detection_head: nn.Module | None = None,
        vision_head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.output_names = tuple(output.name for output in spec.output_specs())
        self.preprocess = Preprocess(spec)
        self.core = PerceptionCore(spec, backbone, depth_head, detection_head, vision_head)
        self.depth_to_camera = DepthToCamera(spec)
        self.boxes_to_camera = BoxesToCamera(spec)

    @property
    def backbone(self) -> nn.Module:
        return self.core.backbone

    def forward(
        self,
        images: torch.Tensor,
        prototypes: torch.Tensor | None = None,
        prototype_classes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        results = self.core(self.preprocess(images), prototypes, prototype_classes)
        core = dict(zip(self.core.output_names, results, strict=True))
        outputs = []
        if "input_depth" in core:
            outputs.append(self.depth_to_camera(core["input_depth"]))
        if "input_boxes" in core:
            rows = [
                self.boxes_to_camera(core["input_boxes"]),
                core["scores"].unsqueeze(-1),
                core["classes"].unsqueeze(-1),
            ]
            outputs += [torch.cat(rows, dim=-1), core["masks"]]
        if "features" in core:
            outputs.append(core["features"])
        return tuple(outputs)


class BareEncoder(nn.Module):
    """The encoder alone on an already normalised input: the baseline the whole graph is timed against."""

    def __init__(self, backbone: nn.Module, input_height: int, input_width: int) -> None:
        super().__init__()
        self.backbone = backbone.eval()
        self.backbone.bake_pos_embed(input_height, input_width)
        self.last = len(backbone.blocks) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.get_intermediate_layers(x, (self.last,), norm=True)[0][0]
