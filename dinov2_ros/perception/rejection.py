"""Why a frame, or its 3D objects, is skipped: one type from wherever a frame is refused to the node's
warning and /diagnostics."""

from __future__ import annotations

# the category of a frame skipped only because its graph is still being prepared: counted apart from
# the rejected frames, and logged as info (nothing is wrong with it)
WAITING_FOR_GRAPH = "waiting for graph"


class Rejection(ValueError):
    """A frame that cannot be used, raised by the converter or check that found the fault.

    `category` is the input or stage at fault ("image", "camera_info", "depth", "size", "pairing",
    "inference", ...): /diagnostics counts rejections by it. `problem` names the kind of fault without
    the numbers that change from message to message ("unknown encoding 'yuv420'", "step", "depth
    size"): the node throttles its warnings per camera and problem, so different faults of one camera
    are each reported. `detail` (the exception's text) says what was expected, what was found and what
    to do.
    """

    def __init__(self, category: str, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.category = category
        self.problem = problem
        self.detail = detail

    @property
    def waiting(self) -> bool:
        """The frame waits for its graph to be prepared: expected, not a fault."""
        return self.category == WAITING_FOR_GRAPH

    def __repr__(self) -> str:
        return f"Rejection({self.category!r}, {self.problem!r}, {self.detail!r})"
