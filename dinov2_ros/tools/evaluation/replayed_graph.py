"""A graph call that hands back one frame's outputs with ground-truth detections: the node's work
after the graph, measured or checked on a scene with known parts, which random weights cannot detect.

The outputs are the real graph's for the frame, so shapes, dtypes and every output the node reads are
the graph's own; only the detection rows and mask logits are replaced by the parts' true boxes and
masks (and, where given, the depth by a stand-in model depth).
"""

from __future__ import annotations

import cv2
import numpy as np

from dinov2_ros.perception.detection_decoding import camera_to_grid_affine


def graph_inputs(spec, image: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's inputs for one (H, W, 3) uint8 RGB frame with no classes taught."""
    inputs = {"images": image[None]}
    if spec.exemplar:
        inputs["prototypes"] = np.zeros((spec.max_prototypes, spec.embed_dim), np.float32)
        inputs["prototype_classes"] = np.full(spec.max_prototypes, -1, np.int32)
    return inputs


class ReplayedGraph:
    """`backend`'s outputs for `image`, recorded once and handed back (copied) on every call, with
    `boxes` ((N, 4) xyxy camera pixels) and `masks` ((H, W) bool each) as its detections (score 0.9,
    class 0) and, with `depth` ((H, W) float32 metres), that as the model's depth. N <= spec.top_k."""

    def __init__(
        self, backend, image: np.ndarray, boxes: np.ndarray, masks: list[np.ndarray], depth: np.ndarray | None = None
    ) -> None:
        self.spec = spec = backend.spec
        if len(boxes) > spec.top_k:
            raise ValueError(f"{len(boxes)} parts but the graph reports at most top_k={spec.top_k}")
        self.outputs = {name: array.copy() for name, array in backend.infer(graph_inputs(spec, image)).items()}
        rows, logits = self.outputs["detections"][0], self.outputs["masks"][0]
        rows[:] = (0, 0, 0, 0, 0, -1)
        grid = camera_to_grid_affine(spec)
        for k, (box, mask) in enumerate(zip(boxes, masks, strict=True)):
            rows[k] = (*box, 0.9, 0)
            on_grid = cv2.warpAffine(mask.astype(np.float32), grid, logits.shape[:0:-1], flags=cv2.INTER_AREA)
            logits[k] = on_grid - 0.5
        if depth is not None:
            self.outputs["depth"][0] = depth
        self.last_infer_s = 0.0

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: array.copy() for name, array in self.outputs.items()}

    def close(self) -> None:
        pass
