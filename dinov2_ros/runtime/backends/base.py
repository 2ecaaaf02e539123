"""The one interface every inference backend offers: checked `infer`, context-manager lifetime, timing.

Subclasses implement `_infer_impl` only; `infer` checks names, dtypes and shapes against the
GraphSpec first, so TensorRT, ONNX Runtime and PyTorch refuse bad input with the same message.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping

import numpy as np

from dinov2_ros.runtime.graph_spec import GraphSpec, TensorSpec


class Backend(abc.ABC):
    """Runs one perception graph. Use as a context manager, or call `close()` when done.

    `last_infer_s` holds the wall time of the latest `infer` call (inputs checked to outputs on the host).
    `max_batch` (None: unlimited) is the most frames one run takes; `infer` splits larger batches.
    """

    kind: str = ""
    max_batch: int | None = None

    def __init__(self, spec: GraphSpec) -> None:
        self.spec = spec
        self.inputs = spec.input_specs()
        self.outputs = spec.output_specs()
        self.last_infer_s = 0.0
        self.closed = False

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on a batch: `images` uint8 (N,H,W,3) [+ prototypes (N,P,D) and prototype_classes
        (N,P), or (P,D) and (P,) for every frame alike]; returns outputs by name, as fresh arrays the
        caller owns (no backend reuses them for a later call)."""
        if self.closed:
            raise RuntimeError(f"this {self.kind} backend is closed; create a new one to run the graph")
        checked = check_inputs(self.inputs, per_frame(self.inputs, inputs))
        start = time.perf_counter()
        batch, step = checked["images"].shape[0], self.max_batch or checked["images"].shape[0]
        if batch <= step:
            outputs = self._infer_impl(checked)
        else:  # e.g. five cameras of one size on an engine built for four: two runs, one result
            parts = [
                self._infer_impl({name: array[i : i + step] for name, array in checked.items()})
                for i in range(0, batch, step)
            ]
            outputs = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        self.last_infer_s = time.perf_counter() - start
        return outputs

    @abc.abstractmethod
    def _infer_impl(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run checked, C-contiguous inputs; return every output of `self.outputs` by name."""

    def close(self) -> None:
        """Release the runtime's resources; the backend cannot run afterwards. Subclasses extend this."""
        self.closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def per_frame(specs: tuple[TensorSpec, ...], inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`inputs` with a batched input given once for the whole batch (prototypes (P, D) rather than
    (N, P, D)) repeated for each of the N frames of `images`: the node's frames of one call share
    their classes, while the graph takes them per frame."""
    images = inputs.get("images")
    if not isinstance(images, np.ndarray) or images.ndim == 0:
        return dict(inputs)  # check_inputs says what is wrong with it
    repeated = dict(inputs)
    for spec in specs:
        array = inputs.get(spec.name)
        if spec.name != "images" and isinstance(array, np.ndarray) and array.shape == spec.shape[1:]:
            repeated[spec.name] = np.repeat(array[None], images.shape[0], axis=0)  # contiguous, as runtimes take it
    return repeated


def check_inputs(specs: tuple[TensorSpec, ...], inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate `inputs` against `specs`; return them C-contiguous. Raises ValueError saying what to fix."""
    expected = {spec.name for spec in specs}
    missing = sorted(expected - set(inputs))
    unexpected = sorted(set(inputs) - expected)
    if missing or unexpected:
        raise ValueError(
            f"graph inputs are {sorted(expected)}; missing {missing}, unexpected {unexpected}. "
            "Pass exactly the inputs of the graph's GraphSpec"
        )
    checked = {}
    for spec in specs:
        array = inputs[spec.name]
        if not isinstance(array, np.ndarray):
            raise ValueError(f"input '{spec.name}' must be a numpy.ndarray, got {type(array).__name__}")
        if array.dtype != spec.dtype:
            raise ValueError(
                f"input '{spec.name}' must be {spec.dtype}, got {array.dtype}; convert it with "
                f"array.astype(numpy.{spec.dtype})"
            )
        shape_ok = array.ndim == len(spec.shape) and all(
            size == want if want is not None else size >= 1 for size, want in zip(array.shape, spec.shape, strict=True)
        )
        if not shape_ok:
            wanted = "x".join("N" if size is None else str(size) for size in spec.shape)
            if spec.name == "images":
                hint = " (camera frames must match the graph's camera resolution; export one per camera size)"
            else:
                hint = f" (or {'x'.join(map(str, spec.shape[1:]))} for every frame alike)"
            raise ValueError(
                f"input '{spec.name}' must have shape {wanted}, got {'x'.join(map(str, array.shape))}" + hint
            )
        checked[spec.name] = np.ascontiguousarray(array)
    batches = {name: array.shape[0] for name, array in checked.items()}
    if len(set(batches.values())) > 1:
        raise ValueError(
            f"every input holds one entry per frame, but their first dimensions differ: {batches}; give prototypes "
            "(N, P, D) and prototype_classes (N, P) for N images, or (P, D) and (P,) for all of them"
        )
    return checked
