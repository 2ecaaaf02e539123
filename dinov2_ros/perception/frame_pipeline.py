"""The one owner of a frame, without ROS: camera frames in, depth and tracked 3D objects out.

`process` does, per batch of frames: admit (is the graph of the frame's size ready? see
GraphPreparation) -> infer (one `Backend.infer` call per size) -> decode (the rows above the score
threshold, in camera pixels) -> track (per-camera ids; the untracked are dropped) -> lift only what
is published (masks, 3D boxes) -> results; `infer` and `finish` are its two halves, so the graph
call of one batch can overlap the CPU work of the previous one. A frame that cannot be processed
comes back as its Rejection, in its place, and never costs the frames around it. The prototype store is held here so
classes change between frames without rebuilding anything. Tests and tools drive this class directly.
"""

from __future__ import annotations

import copy
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dinov2_ros.perception.camera_model import PinholeCameraModel
from dinov2_ros.perception.depth import nan_where_no_return
from dinov2_ros.perception.depth_completion import complete_depth, fit_model_depth
from dinov2_ros.perception.detection_decoding import (
    DecodedRows,
    box_window,
    camera_to_grid_affine,
    decode_rows,
    mask_to_camera,
)
from dinov2_ros.perception.frame import CameraFrame, Detection, FrameResult, lifting_depth
from dinov2_ros.perception.graph_preparation import GraphPreparation
from dinov2_ros.perception.object_lifting import ObjectLifter
from dinov2_ros.perception.object_tracking import ObjectTracker
from dinov2_ros.perception.oriented_box import OrientedBox, fit_from_depths
from dinov2_ros.perception.prototypes import PrototypeStore, prototype_from_box
from dinov2_ros.perception.rejection import Rejection
from dinov2_ros.runtime.backends import Backend
from dinov2_ros.runtime.graph_spec import GraphSpec

GRAPH_CALL_WINDOW = 16  # recent graph calls `graph_call_s` is the median of
# (camera height, camera width) -> a ready backend for that resolution
BackendOpener = Callable[[int, int], Backend]


@dataclass(frozen=True)
class _Inferred:
    """One frame's share of a graph call: row `row` of the outputs of the graph `spec`."""

    spec: GraphSpec
    outputs: dict[str, np.ndarray]
    row: int
    inference_s: float


@dataclass(frozen=True)
class InferredBatch:
    """A batch between FramePipeline.infer and FramePipeline.finish: per frame its graph outputs, or
    the Rejection that already says why it is skipped."""

    frames: list[CameraFrame]
    graphs: list[_Inferred | Rejection]


@dataclass
class _Batch:
    """The reused (N, H, W, 3) input buffer of one size, grown on demand, and its mask warp."""

    images: np.ndarray
    camera_to_grid: np.ndarray  # 2x3 camera pixel (u, v) -> patch-grid sample, for cv2.warpAffine


class FramePipeline:
    """Runs batches of camera frames through one graph per size; thread-safe for class changes.

    `graphs` is the GraphPreparation that serves the sizes, or an opener `(height, width) -> Backend`
    that a default one (first use waits, no bound) wraps. `prototypes` is required for an exemplar
    graph; `class_names` names a trained head's class ids. With a `tracker`, detections carry
    per-camera track ids and only tracked ones are published (ByteTrack confirms on the second
    sighting, and a tracked part stays while its score dips to the tracker's low_score_threshold);
    the tracker may outlive the pipeline, so ids are never reused. With `fill_depth_holes`, a frame's
    sensor depth has its holes filled from the model's depth fitted to it (depth_completion.py), and
    objects are lifted from the result.
    """

    def __init__(
        self,
        graphs: GraphPreparation | BackendOpener,
        prototypes: PrototypeStore | None = None,
        class_names: Mapping[int, str] | None = None,
        score_threshold: float = 0.5,
        max_classes: int = 16,
        max_prototypes: int = 64,
        lifter: ObjectLifter | None = None,
        tracker: ObjectTracker | None = None,
        fill_depth_holes: bool = True,
    ) -> None:
        self.fill_depth_holes = fill_depth_holes
        self.preparation = graphs if isinstance(graphs, GraphPreparation) else GraphPreparation(graphs)
        self._prototypes = prototypes
        self.class_names = class_names
        self.score_threshold = score_threshold
        self.max_classes = max_classes
        self.max_prototypes = max_prototypes  # the graphs' prototype slots, until a graph says (spec.max_prototypes)
        self._lifter = lifter or ObjectLifter()
        self._tracker = tracker
        self._batches: dict[tuple[int, int], _Batch] = {}
        self._lock = threading.Lock()
        self._prototype_inputs: tuple[np.ndarray, np.ndarray] | None = None
        self._features: dict[str, tuple[np.ndarray, GraphSpec]] = {}
        self._graph_calls_s: deque[float] = deque(maxlen=GRAPH_CALL_WINDOW)

    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {value}")
        self._score_threshold = float(value)

    @property
    def class_names(self) -> dict[int, str]:
        return self._class_names

    @class_names.setter
    def class_names(self, names: Mapping[int, str] | None) -> None:
        """A trained head's class names by id (the node sets them once its graph is stored)."""
        self._class_names = dict(names or {})

    @property
    def graph_call_s(self) -> float | None:
        """The median of the recent graph calls (s), None before the first."""
        calls = list(self._graph_calls_s)
        return statistics.median(calls) if calls else None

    @property
    def graphs(self) -> dict[tuple[int, int], GraphSpec]:
        """The graphs opened so far, by (height, width)."""
        return self.preparation.graphs

    def labels(self) -> dict[int, str]:
        """Class id -> name for every class the pipeline can report now."""
        with self._lock:
            if self._prototypes is not None:
                return {class_id: name for name, class_id in self._prototypes.class_ids.items()}
            return dict(self._class_names)

    def open_graph(self, height: int, width: int) -> GraphSpec:
        """Open the graph for `height` x `width` camera frames now (GraphPreparation.open_graph)."""
        return self.preparation.open_graph(height, width)

    def process(self, frames: Sequence[CameraFrame]) -> list[FrameResult | Rejection]:
        """Each frame's FrameResult, or the Rejection that says why it was skipped, in frame order:
        `finish(infer(frames))`."""
        return self.finish(self.infer(frames))

    def infer(self, frames: Sequence[CameraFrame]) -> InferredBatch:
        """The graph calls of a batch (one per size): the first half of `process`. With a GPU backend
        the call waits on the device with the GIL released, so another thread can `finish` the
        previous batch meanwhile (the node's FrameWorker does); backends return arrays the caller owns."""
        graphs: list[_Inferred | Rejection | None] = [None] * len(frames)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, frame in enumerate(frames):
            rejection = self.preparation.admit(frame.camera, frame.size)
            if rejection is not None:
                graphs[index] = rejection
            else:
                by_size.setdefault(frame.size, []).append(index)
        for size, indices in by_size.items():
            try:
                spec, outputs, inference_s = self._infer(size, [frames[i] for i in indices])
            except Exception as error:  # a failing graph call costs its frames, not the other sizes'
                for index in indices:
                    graphs[index] = Rejection("inference", type(error).__name__, f"{type(error).__name__}: {error}")
                continue
            for row, index in enumerate(indices):
                graphs[index] = _Inferred(spec, outputs, row, inference_s)
        return InferredBatch(list(frames), graphs)

    def finish(self, inferred: InferredBatch) -> list[FrameResult | Rejection]:
        """Decode, track and lift what `infer` gave, in frame order (the second half of `process`;
        batches must be finished in the order they were inferred: the tracker sees time go forward)."""
        results: list[FrameResult | Rejection] = []
        for frame, graph in zip(inferred.frames, inferred.graphs, strict=True):
            if isinstance(graph, Rejection):
                results.append(graph)
                continue
            try:
                results.append(self._result(frame, graph.spec, graph.outputs, graph.row, graph.inference_s))
            except Exception as error:  # never the other frames' output
                results.append(
                    Rejection("processing", type(error).__name__, f"{type(error).__name__}: {str(error).strip()}")
                )
        return results

    def _infer(self, size: tuple[int, int], frames: list[CameraFrame]):
        """(spec, outputs, seconds) of one graph call on `frames`, all of `size`."""
        backend = self.preparation.backend(size)
        batch = self._batches.get(size)
        if batch is None or batch.images.shape[0] < len(frames):
            batch = self._batches[size] = _Batch(
                np.empty((len(frames), *size, 3), np.uint8), camera_to_grid_affine(backend.spec)
            )
        images = batch.images[: len(frames)]
        for row, frame in enumerate(frames):
            images[row] = frame.image_rgb
        inputs = {"images": images}
        if backend.spec.exemplar:
            inputs["prototypes"], inputs["prototype_classes"] = self._graph_prototypes(backend.spec)
        start = time.perf_counter()
        outputs = backend.infer(inputs)
        seconds = time.perf_counter() - start
        self._graph_calls_s.append(seconds)
        return backend.spec, outputs, seconds

    def _graph_prototypes(self, spec: GraphSpec) -> tuple[np.ndarray, np.ndarray]:
        if self._prototypes is None:
            raise ValueError(f"graph '{spec.key}' has the exemplar head: give FramePipeline a PrototypeStore")
        with self._lock:
            if self._prototype_inputs is None or self._prototype_inputs[0].shape[0] != spec.max_prototypes:
                self._prototype_inputs = self._prototypes.to_arrays(spec.max_prototypes, self.max_classes)
            return self._prototype_inputs

    def _result(
        self, frame: CameraFrame, spec: GraphSpec, outputs: dict[str, np.ndarray], row: int, inference_s: float
    ) -> FrameResult:
        depth = nan_where_no_return(outputs["depth"][row]) if "depth" in outputs else None
        completed, fit, filled = None, None, None
        if frame.depth is not None and depth is not None and self.fill_depth_holes:
            fit = fit_model_depth(depth, frame.depth)
            completed, filled = complete_depth(frame.depth, depth, fit)
        lift_depth = lifting_depth(completed, frame.depth, depth)
        if "features" in outputs and spec.exemplar:
            with self._lock:
                self._features[frame.camera] = (outputs["features"][row], spec)  # the backend's own array
        if "detections" not in outputs:
            return FrameResult(frame, depth, [], inference_s, None, completed, fit)
        tracker = self._tracker
        # the tracker also takes the low detections, which only continue its tracks (ByteTrack)
        floor = min(self._score_threshold, tracker.low_score_threshold) if tracker else self._score_threshold
        decoded = decode_rows(outputs["detections"][row], floor)
        track_ids = np.zeros(len(decoded), np.int64)
        if tracker is not None:
            time_s = time.monotonic() if frame.time_s is None else frame.time_s
            track_ids = tracker.update(frame.camera, time_s, decoded.boxes, decoded.scores, self._score_threshold)
            decoded, track_ids = decoded.subset(track_ids > 0), track_ids[track_ids > 0]
        without_3d = _without_3d(frame, lift_depth, "the model's depth" if frame.depth is None else frame.depth_source)
        batch = self._batches[frame.size]
        detections = self._detections(frame, batch, outputs["masks"][row], decoded, track_ids, lift_depth, filled)
        return FrameResult(frame, depth, detections, inference_s, without_3d, completed, fit)

    def _detections(
        self,
        frame: CameraFrame,
        batch: _Batch,
        mask_logits: np.ndarray,
        decoded: DecodedRows,
        track_ids: np.ndarray,
        lift_depth: np.ndarray | None,
        filled: np.ndarray | None,
    ) -> list[Detection]:
        """The published detections: masks in camera pixels, then an oriented 3D box where the points
        support one, else the axis-aligned box (and why not oriented), else why there is no pose;
        with a completed depth, the share of each one's depth that was `filled` from the model."""
        if len(decoded) == 0:
            return []
        labels = self.labels()
        masks = [
            mask_to_camera(mask_logits[i], box, batch.camera_to_grid, frame.size)
            for i, box in zip(decoded.rows, decoded.boxes, strict=True)
        ]
        camera: PinholeCameraModel | None = frame.camera_model
        boxes = decoded.boxes
        posed = np.flatnonzero(self._lifter.can_lift(lift_depth, camera, boxes, masks))
        fits = fit_from_depths(lift_depth, camera, [masks[k] for k in posed], boxes[posed]) if len(posed) else []
        oriented_of = dict(zip(posed.tolist(), fits, strict=True))
        aligned = [k for k in range(len(boxes)) if not isinstance(oriented_of.get(k), OrientedBox)]
        lifted = self._lifter.lift(lift_depth, camera, boxes[aligned], [masks[k] for k in aligned])
        lifted_of = dict(zip(aligned, lifted, strict=True))
        detections = []
        for k, (box, mask) in enumerate(zip(boxes, masks, strict=True)):
            class_id = int(decoded.classes[k])
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
                    score=float(decoded.scores[k]),
                    box=box,
                    mask=mask,
                    centre=centre,
                    size=size,
                    orientation=orientation,
                    no_pose_reason=no_pose,
                    axis_aligned_reason=why,
                    track_id=int(track_ids[k]),
                    filled_depth_fraction=_filled_fraction(box, mask, lift_depth, filled),
                )
            )
        return detections

    def add_class_from_box(self, camera: str, name: str, box: Sequence[float]) -> int:
        """Teach `name` from the part inside `box` (camera pixels) on the camera's newest processed frame."""
        return self.add_class(name, camera=camera, box=box)

    def add_class(
        self,
        name: str,
        *,
        camera: str | None = None,
        box: Sequence[float] | None = None,
        text_prototypes: np.ndarray | None = None,
        prompt: str | None = None,
    ) -> int:
        """Teach `name` in one change: the part inside `box` (camera pixels) on `camera`'s newest processed
        frame, and/or `text_prototypes` (n, D), a prompt's (text_prompts.PromptEncoder, computed off the
        frame thread; `prompt` is recorded with the class). Returns the class id. ValueError, with the
        store unchanged, for a box outside the frame, no frame yet, or a class that does not fit the graph."""
        if self._prototypes is None:
            raise ValueError("this pipeline has no exemplar detector: classes come from a trained head")
        if box is None and text_prototypes is None:
            raise ValueError("give a box, a text prompt, or both, to teach a class")
        with self._lock:
            taught = [] if text_prototypes is None else [np.asarray(text_prototypes, np.float32)]
            max_prototypes = next((spec.max_prototypes for spec in self.graphs.values()), self.max_prototypes)
            if box is not None:
                features, spec = self._newest_features(camera)
                taught.append(prototype_from_box(features, _checked_box(box, spec), spec.mapping())[None])
                max_prototypes = spec.max_prototypes
            # teach a copy first, so a class that does not fit the graph leaves the store unchanged (a text
            # may come before any graph is open: then the slots the settings give the graphs are checked)
            trial = copy.deepcopy(self._prototypes)
            class_id = trial.add_prototypes(name, np.concatenate(taught), prompt)
            inputs = trial.to_arrays(max_prototypes, self.max_classes)
            self._prototypes = trial
            self._prototype_inputs = inputs  # the next frame's graph inputs, computed once
            return class_id

    def _newest_features(self, camera: str | None) -> tuple[np.ndarray, GraphSpec]:
        newest = self._features.get(camera)
        if newest is None:
            known = sorted(self._features)
            raise ValueError(
                f"no processed frame from camera {camera!r} yet (cameras with frames: {known}); "
                "wait for output from that camera, then call again"
            )
        return newest

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
        """Close the graphs' backends (GraphPreparation.close)."""
        self.preparation.close()


def _checked_box(box: Sequence[float], spec: GraphSpec) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (0 <= x1 < x2 <= spec.camera_width and 0 <= y1 < y2 <= spec.camera_height):
        raise ValueError(
            f"box {[x1, y1, x2, y2]} must satisfy 0 <= x1 < x2 <= {spec.camera_width} and "
            f"0 <= y1 < y2 <= {spec.camera_height} (x1, y1, x2, y2 in camera pixels)"
        )
    return x1, y1, x2, y2


def _filled_fraction(box: np.ndarray, mask: np.ndarray, depth: np.ndarray | None, filled: np.ndarray | None) -> float:
    """Of the mask's pixels (inside `box`) with depth, the share `filled` from the model's depth."""
    if filled is None or depth is None:
        return 0.0
    window = box_window(box, filled.shape)
    inside = mask[window] & np.isfinite(depth[window])
    count = np.count_nonzero(inside)
    return float(np.count_nonzero(filled[window] & inside) / count) if count else 0.0


def _without_3d(frame: CameraFrame, depth: np.ndarray | None, depth_source: str) -> Rejection | None:
    """Why `frame` can have no 3D objects at all, or None."""
    if frame.camera_model is None:
        return Rejection(
            "camera_info",
            "uncalibrated",
            "CameraInfo K (P for a rectified camera) is all zeros, the convention for an uncalibrated camera: "
            "no 3D objects until the camera is calibrated (camera_calibration; the driver's camera_info_url)",
        )
    # a sparse look first: a frame with valid depth almost always shows it there (0.005 ms, not 0.3)
    if depth is not None and not (np.isfinite(depth[::8, ::8]).any() or np.isfinite(depth).any()):
        return Rejection(
            "depth",
            "no valid depth",
            f"{depth_source} has no valid pixel (all 0 or NaN): no 3D objects for this frame, rather than an empty "
            "list that says the view is empty; check the depth camera (its range, exposure, emitter, driver)",
        )
    return None
