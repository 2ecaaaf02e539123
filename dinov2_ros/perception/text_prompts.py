"""Classes named in words: a prompt becomes a prototype in dino.txt's patch-aligned space.

A prompt is set into each template ("a photo of a {}."), the texts are tokenised and encoded, and
the patch-aligned half of each embedding (its second half) is normalised; their mean, normalised
again, is the class's prototype. This is the zero-shot recipe of Meta's dino.txt notebook (normalise
each template's embedding, average, normalise; the patch half compared with patch tokens), and of
CLIP's ImageNet prompts before it. The prototype sits beside prototypes taught from boxes: the
dino.txt graph's patch features are the vision head's aligned patch tokens, the same space.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dinov2_ros.perception.clip_tokenizer import ClipTokenizer, trim_padding
from dinov2_ros.perception.prompt_templates import DEFAULT_TEMPLATES, check_templates
from dinov2_ros.runtime.text_encoder import TextEncoderGraph, vocabulary_beside


class PromptEncoder:
    """`prototype(prompt)`: a unit vector (D,) in the patch-aligned space, for the exemplar head.

    `encode`: token ids (N, L) int64 -> text embeddings (N, 2D) (runtime.text_encoder.TextEncoderGraph
    on the robot, the torch TextEncoder in `dinov2-ros teach`); `templates`: see check_templates.
    """

    def __init__(
        self,
        tokenizer: ClipTokenizer,
        encode: Callable[[np.ndarray], np.ndarray],
        templates: Sequence[str] = DEFAULT_TEMPLATES,
    ) -> None:
        self.tokenizer = tokenizer
        self.encode = encode
        self.templates = check_templates(templates)

    def prototype(self, prompt: str, templates: Sequence[str] | None = None) -> np.ndarray:
        """The prototype of `prompt` set into `templates` (checked; default: this encoder's)."""
        prompt = prompt.strip()
        if not prompt:
            raise ValueError("a text prompt must hold words, like 'blue connector'; got an empty one")
        templates = self.templates if templates is None else check_templates(templates)
        rows = trim_padding(self.tokenizer([template.format(prompt) for template in templates]))
        embeddings = np.asarray(self.encode(rows), np.float64)
        aligned = embeddings[:, embeddings.shape[1] // 2 :]
        aligned /= np.linalg.norm(aligned, axis=1, keepdims=True)
        mean = aligned.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


class StoredPromptEncoder:
    """`prototype(prompt, templates)` with the artifact store's text encoder graph, opened on first use
    (the released one holds 2.2 GB of weights: seconds to open, kept open after). `find_graph()` gives
    the graph's path or None while it is not made yet (a ValueError that says so)."""

    def __init__(self, find_graph: Callable[[], Path | None], threads: int = 0) -> None:
        self._find_graph = find_graph
        self._threads = threads
        self._lock = threading.Lock()
        self._encoder: PromptEncoder | None = None

    def prototype(self, prompt: str, templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
        with self._lock:
            if self._encoder is None:
                graph = self._find_graph()
                if graph is None:
                    raise ValueError(
                        "the dino.txt text encoder graph is not in the artifact store yet (the node makes it with "
                        "its first graph, or `dinov2-ros export` with the node's settings); try again when the "
                        "node reports its graph ready"
                    )
                text_graph = TextEncoderGraph(graph, self._threads)
                tokenizer = ClipTokenizer(vocabulary_beside(graph), context_length=text_graph.context)
                self._encoder = PromptEncoder(tokenizer, text_graph.encode)
            return self._encoder.prototype(prompt, templates)
