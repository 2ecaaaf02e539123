"""The error of an input message the node cannot use, with the kind of problem it is."""

from __future__ import annotations


class InputError(ValueError):
    """A message that cannot be used: the text says what was expected, what was found and what to do.

    `problem` names the kind of fault without the numbers that change from message to message
    ("unknown encoding 'yuv420'", "step", "truncated"); the node throttles its warnings per camera
    and problem, so different faults of one camera are each reported.
    """

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem
