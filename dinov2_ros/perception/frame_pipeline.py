"""The per-frame work the ROS node drives, without ROS: frames in, depth and 3D objects out.

One compiled graph (and backend) per camera resolution, opened by `open_graph` (which may export for
minutes; `process` keeps running the open sizes meanwhile) or else on first use; frames of the same
resolution go through one `infer` call. Results come back in camera pixels, detections are lifted to
3D with the camera model, and the prototype store is held here so classes change between frames
without rebuilding anything. Tests drive this class directly.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.object_lifting import IDENTITY_ORIENTATION_XYZW, ObjectLifter, nan_where_no_return
from dinov2_ros.perception.oriented_box import OrientedBox, fit_from_depths
from dinov2_ros.perception.prototypes import PrototypeStore, prototype_from_box
from dinov2_ros.runtime.backend import Backend
from dinov2_ros.runtime.graph_spec import PATCH_SIZE, GraphSpec

# (camera height, camera width) -> a ready backend for that resolution
BackendOpener = Callable[[int, int], Backend]


def depth_size_problem(
    depth: np.ndarray, image: np.ndarray, depth_name: str = "depth image", image_name: str = "the camera image"
) -> str:
    """Why `depth` (H, W) cannot be paired with `image` (H, W, 3), or "" when their sizes agree; the
    names say where each came from (the node gives their topics)."""
    if depth.shape == image.shape[:2]:
        return ""
    return (
        f"{depth_name} is {depth.shape[1]}x{depth.shape[0]} but {image_name} is {image.shape[1]}x"
        f"{image.shape[0]}; use depth aligned to the colour image (e.g. aligned_depth_to_color)"
    )


@dataclass(frozen=True)
class CameraFrame:
    """One camera image with what is known about it; `camera` and `stamp` are opaque to the pipeline."""

    camera: str
    image_rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None = None  # (H, W) float32 metres, NaN invalid: an aligned sensor depth image
    camera_model: PinholeCameraModel | None = None
    stamp: Any = None

    def __post_init__(self) -> None:
        image = self.image_rgb
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            found = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"camera {self.camera!r}: image must be (H, W, 3) uint8 RGB, got {found}")
        height, width = image.shape[:2]
        if self.depth is not None and (problem := depth_size_problem(self.depth, image)):
            raise ValueError(f"camera {self.camera!r}: {problem}")
        model = self.camera_model
        if model is not None and (model.width, model.height) != (width, height):
            raise ValueError(
                f"camera {self.camera!r}: camera_info is for {model.width}x{model.height} but the image is "
                f"{width}x{height}; publish the camera_info of this image stream"
            )

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)"""
        return self.image_rgb.shape[0], self.image_rgb.shape[1]


@dataclass(frozen=True)
class Detection:
    """One object: 2D box in camera pixels, its mask, and a 3D pose or the reason there is none."""

    class_id: int
    label: str
    score: float
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2 camera pixels
    mask: np.ndarray | None  # (H, W) bool, None when the graph gives no masks
    centre: np.ndarray | None = None  # (3,) metres in the camera optical frame
    size: np.ndarray | None = None  # (3,) metres along the box's axes (`orientation` turns them)
    orientation: tuple[float, float, float, float] = IDENTITY_ORIENTATION_XYZW  # x, y, z, w
    no_pose_reason: str = ""
    axis_aligned_reason: str = ""  # why a posed detection has no oriented box (identity orientation)
    track_id: int = 0  # per-camera track id (object_tracking.py), 0 when not tracked


@dataclass(frozen=True)
class FrameResult:
    """Everything computed for one frame."""

    frame: CameraFrame
    depth: np.ndarray | None  # (H, W) float32 metres, NaN invalid; None when the graph has no depth head
    detections: list[Detection] = field(default_factory=list)
    inference_s: float = 0.0  # the batched graph call this frame was part of


@dataclass
class _Graph:
    backend: Backend
    spec: GraphSpec
    batch: np.ndarray  # reused (N, H, W, 3) input buffer, grown on demand
    # 2x3 map from camera pixel (u, v) to patch-grid sample coordinates, for cv2.warpAffine
    camera_to_grid: np.ndarray


def camera_to_grid_affine(spec: GraphSpec) -> np.ndarray:
    """Affine map camera pixel index -> patch-grid sample position (pixel centres on both sides)."""
    m = spec.mapping()
    sx, sy = m.scale_x / PATCH_SIZE, m.scale_y / PATCH_SIZE
    tx = (0.5 * m.scale_x + m.offset_x) / PATCH_SIZE - 0.5
    ty = (0.5 * m.scale_y + m.offset_y) / PATCH_SIZE - 0.5
    return np.array([[sx, 0.0, tx], [0.0, sy, ty]], np.float64)


def mask_to_camera(
    logits: np.ndarray, box: np.ndarray, camera_to_grid: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Patch-grid mask logits (h, w) -> (H, W) bool camera mask, evaluated inside `box` only."""
    height, width = size
    mask = np.zeros((height, width), bool)
    x1, y1 = (max(int(np.floor(v)), 0) for v in box[:2])
    x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    if x2 <= x1 or y2 <= y1:
        return mask
    shifted = camera_to_grid.copy()
    shifted[:, 2] += camera_to_grid[:, :2] @ (x1, y1)
    roi = cv2.warpAffine(
        logits.astype(np.float32, copy=False),
        shifted,
        (x2 - x1, y2 - y1),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    mask[y1:y2, x1:x2] = roi > 0
    return mask


class FramePipeline:
    """Runs batches of camera frames through one graph per resolution; thread-safe for class changes.

    `open_backend(height, width)` returns the backend for a camera resolution (called once per size).
    `prototypes` is required for an exemplar graph; `class_names` names a trained head's class ids.
    """

    def __init__(
        self,
        open_backend: BackendOpener,
        prototypes: PrototypeStore | None = None,
        class_names: Mapping[int, str] | None = None,
        score_threshold: float = 0.5,
        max_classes: int = 16,
        lifter: ObjectLifter | None = None,
    ) -> None:
        self._open_backend = open_backend
        self._prototypes = prototypes
        self._class_names = dict(class_names or {})
        self.score_threshold = score_threshold
        self.max_classes = max_classes
        self._lifter = lifter or ObjectLifter()
        self._graphs: dict[tuple[int, int], _Graph] = {}
        self._open_failures: dict[tuple[int, int], str] = {}
        self._open_lock = threading.Lock()  # one opening at a time; never held by process() for open sizes
        self._lock = threading.Lock()
        self._prototype_inputs: tuple[np.ndarray, np.ndarray] | None = None
        self._features: dict[str, tuple[np.ndarray, GraphSpec]] = {}

    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {value}")
        self._score_threshold = float(value)

    @property
    def graphs(self) -> dict[tuple[int, int], GraphSpec]:
        """The graphs opened so far, by (height, width)."""
        # list() copies in one step under the GIL: the worker may add a graph meanwhile
        return {size: graph.spec for size, graph in list(self._graphs.items())}

    def labels(self) -> dict[int, str]:
        """Class id -> name for every class the pipeline can report now."""
        with self._lock:
            if self._prototypes is not None:
                return {class_id: name for name, class_id in self._prototypes.class_ids.items()}
            return dict(self._class_names)

    def open_graph(self, height: int, width: int) -> GraphSpec:
        """Open the graph for `height` x `width` camera frames now (pixels) and return its spec.

        Safe on another thread while `process` runs frames of the sizes already open: it never waits
        for an opening. Raises what the opener raised (once; later calls raise ValueError naming it).
        """
        return self._graph(height, width).spec

    def _graph(self, height: int, width: int) -> _Graph:
        graph = self._graphs.get((height, width))
        if graph is not None:
            return graph
        with self._open_lock:
            return self._graphs.get((height, width)) or self._open(height, width)

    def _open(self, height: int, width: int) -> _Graph:
        """Open one graph; call with the opening lock held."""
        failure = self._open_failures.get((height, width))
        if failure is not None:  # opening may export for minutes: do not retry a broken set-up per frame
            raise ValueError(f"the graph for {width}x{height} frames could not be opened: {failure}")
        try:
            backend = self._open_backend(height, width)
        except Exception as error:
            self._open_failures[(height, width)] = f"{type(error).__name__}: {error}"
            raise
        spec = backend.spec
        if (spec.camera_height, spec.camera_width) != (height, width):
            raise ValueError(
                f"the backend opened for {width}x{height} frames runs graph '{spec.key}' for "
                f"{spec.camera_width}x{spec.camera_height}; export the graph for this camera size"
            )
        if spec.exemplar and self._prototypes is None:
            raise ValueError(f"graph '{spec.key}' has the exemplar head: give FramePipeline a PrototypeStore")
        batch = np.empty((0, height, width, 3), np.uint8)
        graph = _Graph(backend, spec, batch, camera_to_grid_affine(spec))
        self._graphs[(height, width)] = graph
        return graph

    def process(self, frames: Sequence[CameraFrame]) -> list[FrameResult]:
        """One `infer` call per distinct resolution among `frames`; results in the order of `frames`."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, frame in enumerate(frames):
            by_size.setdefault(frame.size, []).append(index)
        results: list[FrameResult | None] = [None] * len(frames)
        for (height, width), indices in by_size.items():
            graph = self._graph(height, width)
            if graph.batch.shape[0] < len(indices):
                graph.batch = np.empty((len(indices), height, width, 3), np.uint8)
            batch = graph.batch[: len(indices)]
            for row, index in enumerate(indices):
                batch[row] = frames[index].image_rgb
            inputs = {"images": batch}
            if graph.spec.exemplar:
                inputs["prototypes"], inputs["prototype_classes"] = self._graph_prototypes(graph.spec)
            start = time.perf_counter()
            outputs = graph.backend.infer(inputs)
            inference_s = time.perf_counter() - start
            for row, index in enumerate(indices):
                results[index] = self._result(frames[index], graph, outputs, row, inference_s)
        return results

    def _graph_prototypes(self, spec: GraphSpec) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._prototype_inputs is None or self._prototype_inputs[0].shape[0] != spec.max_prototypes:
                self._prototype_inputs = self._prototypes.to_arrays(spec.max_prototypes, self.max_classes)
            return self._prototype_inputs

    def _result(
        self, frame: CameraFrame, graph: _Graph, outputs: dict[str, np.ndarray], row: int, inference_s: float
    ) -> FrameResult:
        depth = nan_where_no_return(outputs["depth"][row]) if "depth" in outputs else None
        if "features" in outputs and graph.spec.exemplar:
            with self._lock:
                self._features[frame.camera] = (outputs["features"][row], graph.spec)  # the backend's own array
        detections: list[Detection] = []
        if "detections" in outputs:
            detections = self._detections(frame, graph, outputs["detections"][row], outputs["masks"][row], depth)
        return FrameResult(frame, depth, detections, inference_s)

    def _detections(
        self, frame: CameraFrame, graph: _Graph, rows: np.ndarray, mask_logits: np.ndarray, depth: np.ndarray | None
    ) -> list[Detection]:
        # a row with a non-finite box or score (an fp16 engine overflowing) is dropped, not the whole frame
        finite = np.isfinite(rows[:, :5]).all(axis=1)
        keep = np.flatnonzero(finite & (rows[:, 4] >= self._score_threshold) & (rows[:, 4] > 0) & (rows[:, 5] >= 0))
        if keep.size == 0:
            return []
        labels = self.labels()
        boxes = rows[keep, :4].astype(np.float32)
        masks = [
            mask_to_camera(mask_logits[i], box, graph.camera_to_grid, frame.size)
            for i, box in zip(keep, boxes, strict=True)
        ]
        lift_depth, camera = (frame.depth if frame.depth is not None else depth), frame.camera_model
        # an oriented box where the points support one, else the axis-aligned box (and why not oriented)
        posed = np.flatnonzero(self._lifter.can_lift(lift_depth, camera, boxes, masks))
        fits = fit_from_depths(lift_depth, camera, [masks[k] for k in posed], boxes[posed]) if len(posed) else []
        oriented_of = dict(zip(posed.tolist(), fits, strict=True))
        aligned = [k for k in range(len(boxes)) if not isinstance(oriented_of.get(k), OrientedBox)]
        lifted = self._lifter.lift(lift_depth, camera, boxes[aligned], [masks[k] for k in aligned])
        lifted_of = dict(zip(aligned, lifted, strict=True))
        detections = []
        for k, (i, box, mask) in enumerate(zip(keep, boxes, masks, strict=True)):
            class_id = int(rows[i, 5])
            oriented = oriented_of.get(k)
            if isinstance(oriented, OrientedBox):
                centre, size, orientation = oriented.center, oriented.size, oriented.quaternion_xyzw
                why, no_pose = "", ""
            else:
                obj = lifted_of[k]
                centre, size, orientation, no_pose = obj.center, obj.size, obj.orientation_xyzw, obj.reason
                why = oriented or ""  # None: no pose at all, so nothing to orient
            detections.append(
                Detection(
                    class_id=class_id,
                    label=labels.get(class_id, str(class_id)),
                    score=float(rows[i, 4]),
                    box=box,
                    mask=mask,
                    centre=centre,
                    size=size,
                    orientation=orientation,
                    no_pose_reason=no_pose,
                    axis_aligned_reason=why,
                )
            )
        return detections

    def add_class_from_box(self, camera: str, name: str, box: Sequence[float]) -> int:
        """Teach `name` from the part inside `box` (camera pixels) on the camera's newest processed frame."""
        if self._prototypes is None:
            raise ValueError("this pipeline has no exemplar detector: classes come from a trained head")
        with self._lock:
            newest = self._features.get(camera)
            if newest is None:
                known = sorted(self._features)
                raise ValueError(
                    f"no processed frame from camera {camera!r} yet (cameras with frames: {known}); "
                    "wait for output from that camera, then call again"
                )
            features, spec = newest
            x1, y1, x2, y2 = (float(v) for v in box)
            if not (0 <= x1 < x2 <= spec.camera_width and 0 <= y1 < y2 <= spec.camera_height):
                raise ValueError(
                    f"box {[x1, y1, x2, y2]} must satisfy 0 <= x1 < x2 <= {spec.camera_width} and "
                    f"0 <= y1 < y2 <= {spec.camera_height} (x1, y1, x2, y2 in camera pixels)"
                )
            prototype = prototype_from_box(features, (x1, y1, x2, y2), spec.mapping())
            # teach a copy first, so a class that does not fit the graph leaves the store unchanged
            trial = copy.deepcopy(self._prototypes)
            class_id = trial.add_prototypes(name, prototype[None])
            inputs = trial.to_arrays(spec.max_prototypes, self.max_classes)
            self._prototypes = trial
            self._prototype_inputs = inputs  # the next frame's graph inputs, computed once
            return class_id

    def remove_class(self, name: str) -> None:
        if self._prototypes is None:
            raise ValueError("this pipeline has no exemplar detector: classes come from a trained head")
        with self._lock:
            self._prototypes.remove_class(name)
            self._prototype_inputs = None

    def save_prototypes(self, path: str | os.PathLike) -> None:
        """Write the taught classes to a prototype file (see PrototypeStore.save)."""
        if self._prototypes is None:
            raise ValueError("this pipeline has no exemplar detector: there are no prototypes to save")
        with self._lock:
            self._prototypes.save(path)

    def close(self) -> None:
        for graph in self._graphs.values():
            graph.backend.close()
        self._graphs.clear()
