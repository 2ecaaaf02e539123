"""Taught parts as prototypes: build them from examples, keep them in a versioned file, feed the graph.

A prototype is the mean of an example's L2-normalised patch tokens over the part's foreground; each
class keeps several (one per example, condensed by spherical k-means beyond `max_per_class`). Tokens
of another encoder, other weights or another input size live in another space, so a file records
what made it and is refused by any other. Class ids are stable: removing a class frees its id
without renumbering the others, so downstream label maps stay valid.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from dinov2_ros.atomic_file import atomic_write
from dinov2_ros.runtime.graph_spec import PATCH_SIZE, ResizeMapping

PROTOTYPE_FORMAT = "dinov2_ros.prototypes"
PROTOTYPE_FORMAT_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SAME_PROTOTYPE_COSINE = 1 - 1e-6  # a new prototype this close to one of its class's is that one again
_log = logging.getLogger(__name__)


class PrototypeFileError(ValueError):
    """A prototype file that is unreadable, of another format version, or made by another encoder."""


class FeatureSource(Protocol):
    """What teaching needs from an encoder: patch features and the camera -> model-input mapping."""

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 RGB images (H, W, 3) -> patch features (N, D, h, w)."""
        ...

    def mapping(self, width: int, height: int) -> ResizeMapping: ...


def coverage_from_box(box: Sequence[float], mapping: ResizeMapping, grid: tuple[int, int]) -> np.ndarray:
    """Fraction of each patch (h, w) covered by the camera-pixel xyxy `box`, computed exactly."""
    (x1, y1), (x2, y2) = mapping.camera_to_input(np.asarray(box, np.float64).reshape(2, 2))
    edges_x = np.arange(grid[1] + 1) * PATCH_SIZE
    edges_y = np.arange(grid[0] + 1) * PATCH_SIZE
    cover_x = np.clip(np.minimum(edges_x[1:], x2) - np.maximum(edges_x[:-1], x1), 0, None) / PATCH_SIZE
    cover_y = np.clip(np.minimum(edges_y[1:], y2) - np.maximum(edges_y[:-1], y1), 0, None) / PATCH_SIZE
    return np.outer(cover_y, cover_x)


def coverage_from_mask(mask: np.ndarray, mapping: ResizeMapping, grid: tuple[int, int]) -> np.ndarray:
    """Fraction of each patch (h, w) covered by a camera-resolution boolean `mask`."""
    canvas = np.zeros((grid[0] * PATCH_SIZE, grid[1] * PATCH_SIZE), np.float32)
    content = cv2.resize(
        mask.astype(np.float32), (mapping.content_width, mapping.content_height), interpolation=cv2.INTER_AREA
    )
    canvas[
        mapping.offset_y : mapping.offset_y + mapping.content_height,
        mapping.offset_x : mapping.offset_x + mapping.content_width,
    ] = content
    return canvas.reshape(grid[0], PATCH_SIZE, grid[1], PATCH_SIZE).mean(axis=(1, 3))


def foreground_prototype(features: np.ndarray, coverage: np.ndarray, min_coverage: float = 0.5) -> np.ndarray:
    """Mean normalised token (D,) over patches at least `min_coverage` covered by the part; unit length."""
    tokens = features.reshape(features.shape[0], -1)
    tokens = tokens / np.maximum(np.linalg.norm(tokens, axis=0, keepdims=True), 1e-12)
    selected = coverage.reshape(-1) >= min_coverage
    if not selected.any():
        raise ValueError(
            f"the example's part covers no patch by at least {min_coverage:.0%} (largest cover "
            f"{coverage.max():.0%}); use a larger view of the part, or a box/mask that covers more of it"
        )
    prototype = tokens[:, selected].mean(axis=1)
    return (prototype / np.linalg.norm(prototype)).astype(np.float32)


def condense(vectors: np.ndarray, count: int, iterations: int = 20) -> np.ndarray:
    """At most `count` unit vectors summarising `vectors` (n, D): spherical k-means, farthest-point seeded."""
    if len(vectors) <= count:
        return vectors
    centres = [vectors[0]]
    for _ in range(count - 1):
        nearest = np.max(vectors @ np.stack(centres).T, axis=1)
        centres.append(vectors[int(np.argmin(nearest))])
    centres = np.stack(centres)
    for _ in range(iterations):
        assignment = np.argmax(vectors @ centres.T, axis=1)
        for j in range(count):
            members = vectors[assignment == j]
            if len(members):
                mean = members.sum(axis=0)
                centres[j] = mean / max(np.linalg.norm(mean), 1e-12)
    return centres.astype(np.float32)


class PrototypeStore:
    """Classes and their prototypes for one encoder and input size; exported as fixed-size graph inputs."""

    def __init__(self, encoder: str, input_size: tuple[int, int], embed_dim: int, max_per_class: int = 8) -> None:
        if embed_dim < 1 or max_per_class < 1:
            raise ValueError(f"need embed_dim >= 1 and max_per_class >= 1, got {embed_dim} and {max_per_class}")
        self.encoder = encoder
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.embed_dim = embed_dim
        self.max_per_class = max_per_class
        self._ids: dict[str, int] = {}
        self._prototypes: dict[str, np.ndarray] = {}
        self._prompts: dict[str, list[str]] = {}  # the words a class was named in (dino.txt), by class

    @property
    def class_ids(self) -> dict[str, int]:
        """Class name -> the id the graph reports for it."""
        return dict(self._ids)

    @property
    def prototype_count(self) -> int:
        return sum(len(vectors) for vectors in self._prototypes.values())

    def prompts_of(self, name: str) -> list[str]:
        """The text prompts class `name` was taught with (dino.txt), [] for one taught by example only."""
        return list(self._prompts.get(name, []))

    def prototypes_of(self, name: str) -> np.ndarray:
        """The unit-length prototypes (n, D) of class `name`."""
        if name not in self._prototypes:
            raise ValueError(f"no class {name!r}; taught classes: {sorted(self._ids)}")
        return self._prototypes[name].copy()

    def add_prototypes(self, name: str, prototypes: np.ndarray, prompt: str | None = None) -> int:
        """Teach `name` more prototypes (n, D) (a new class gets the smallest free id); returns its id.
        `prompt`: the text they were encoded from, if any, kept with the class."""
        prototypes = np.asarray(prototypes, np.float32).reshape(-1, prototypes.shape[-1])
        if prototypes.shape[1] != self.embed_dim or not len(prototypes):
            raise ValueError(f"prototypes must be (n >= 1, {self.embed_dim}), got {prototypes.shape}")
        if not name:
            raise ValueError("a class needs a non-empty name")
        norms = np.linalg.norm(prototypes, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise ValueError("prototypes must be finite and non-zero")
        known = self._prototypes.get(name, np.zeros((0, self.embed_dim), np.float32))
        unit = prototypes / norms
        if len(known):  # the same example or prompt taught again adds nothing, not a duplicate slot
            unit = unit[(unit @ known.T).max(axis=1) < SAME_PROTOTYPE_COSINE]
        self._prototypes[name] = condense(np.concatenate([known, unit]), self.max_per_class)
        if name not in self._ids:
            used = set(self._ids.values())
            self._ids[name] = next(i for i in range(len(used) + 1) if i not in used)
        if prompt is not None and prompt not in self._prompts.get(name, []):
            self._prompts.setdefault(name, []).append(prompt)
        return self._ids[name]

    def remove_class(self, name: str) -> None:
        if name not in self._ids:
            raise ValueError(f"no class {name!r} to remove; taught classes: {sorted(self._ids)}")
        del self._ids[name], self._prototypes[name]
        self._prompts.pop(name, None)

    def to_arrays(self, max_prototypes: int, max_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """The graph inputs: prototypes (max_prototypes, D) float32, prototype_classes int32, -1 = empty."""
        if self.prototype_count > max_prototypes:
            raise ValueError(
                f"{self.prototype_count} prototypes do not fit the graph's {max_prototypes} slots; remove "
                "classes, lower max_per_class, or export the graph with a larger max_prototypes"
            )
        if self._ids and max(self._ids.values()) >= max_classes:
            raise ValueError(
                f"class id {max(self._ids.values())} exceeds the head's {max_classes} classes; remove classes "
                "or build the exemplar head with a larger max_classes"
            )
        prototypes = np.zeros((max_prototypes, self.embed_dim), np.float32)
        classes = np.full(max_prototypes, -1, np.int32)
        row = 0
        for name, vectors in self._prototypes.items():
            prototypes[row : row + len(vectors)] = vectors
            classes[row : row + len(vectors)] = self._ids[name]
            row += len(vectors)
        return prototypes, classes

    def save(self, path: str | os.PathLike) -> Path:
        """Write a versioned .npz (prototypes, their class ids, JSON metadata) atomically."""
        path = Path(path)
        names = list(self._prototypes)
        metadata = {
            "format": PROTOTYPE_FORMAT,
            "version": PROTOTYPE_FORMAT_VERSION,
            "encoder": self.encoder,
            "input_size": list(self.input_size),
            "embed_dim": self.embed_dim,
            "max_per_class": self.max_per_class,
            "classes": {name: self._ids[name] for name in names},
            "prompts": {name: prompts for name, prompts in self._prompts.items() if prompts},
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            metadata=np.array(json.dumps(metadata)),
            prototypes=np.concatenate([self._prototypes[n] for n in names] or [np.zeros((0, self.embed_dim))]),
            prototype_classes=np.array([self._ids[n] for n in names for _ in self._prototypes[n]], np.int32),
        )
        with atomic_write(path) as temporary:
            temporary.write_bytes(buffer.getvalue())
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, encoder: str | None = None, input_size: Sequence[int] | None = None
    ) -> PrototypeStore:
        """Read a file written by save(); refuse another format version, encoder or input size."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                metadata = json.loads(str(data["metadata"]))
                prototypes, prototype_classes = data["prototypes"], data["prototype_classes"]
        except (OSError, ValueError, KeyError) as error:
            raise PrototypeFileError(
                f"cannot read prototype file {path} ({error}); pass a file written by `dinov2-ros teach`"
            ) from error
        if metadata.get("format") != PROTOTYPE_FORMAT:
            raise PrototypeFileError(f"{path} is not a prototype file (format {metadata.get('format')!r})")
        if metadata.get("version") != PROTOTYPE_FORMAT_VERSION:
            raise PrototypeFileError(
                f"{path} has prototype format version {metadata.get('version')}, this dinov2_ros reads version "
                f"{PROTOTYPE_FORMAT_VERSION}; teach the parts again with `dinov2-ros teach`"
            )
        if encoder is not None and metadata["encoder"] != encoder:
            raise PrototypeFileError(
                f"{path} was taught with encoder {metadata['encoder']!r}, but the graph runs {encoder!r}: "
                "its prototypes live in another feature space; teach the parts again with this encoder"
            )
        if input_size is not None and tuple(metadata["input_size"]) != tuple(input_size):
            raise PrototypeFileError(
                f"{path} was taught at input size {tuple(metadata['input_size'])} (height, width), the graph "
                f"uses {tuple(input_size)}; parts appear at another scale there: teach them again at this size"
            )
        store = cls(
            metadata["encoder"], tuple(metadata["input_size"]), metadata["embed_dim"], metadata["max_per_class"]
        )
        for name, class_id in metadata["classes"].items():
            store._ids[name] = class_id
            store._prototypes[name] = prototypes[prototype_classes == class_id].astype(np.float32)
        store._prompts = {name: list(prompts) for name, prompts in metadata.get("prompts", {}).items()}
        return store


def open_store(path: str, encoder: str, input_size: tuple[int, int], embed_dim: int) -> tuple[PrototypeStore, bool]:
    """(the store of the prototype file at `path` (`~` expanded) when it exists, else an empty one for
    `encoder`, True when it was loaded). A file for another encoder or input size is refused."""
    file = Path(path).expanduser() if path else None
    if file is not None and file.is_file():
        return PrototypeStore.load(file, encoder=encoder, input_size=input_size), True
    return PrototypeStore(encoder, input_size, embed_dim), False


def prototype_from_box(features: np.ndarray, box: Sequence[float], mapping: ResizeMapping) -> np.ndarray:
    """Prototype (D,) of the part inside camera-pixel `box` on a live frame's features (D, h, w)."""
    return foreground_prototype(features, coverage_from_box(box, mapping, features.shape[1:]))


def find_examples(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """Example images per class: `folder/<class name>/<image>`; `<stem>.mask.png` and `<stem>.box.txt`
    beside an image are its annotations."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"examples folder {folder} does not exist; expected one sub-folder of images per class")
    examples = {
        sub.name: sorted(
            p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.endswith(".mask.png")
        )
        for sub in sorted(folder.iterdir())
        if sub.is_dir()
    }
    empty = [name for name, images in examples.items() if not images]
    if not examples or empty:
        raise ValueError(
            f"{folder} needs one sub-folder per class with images ({', '.join(IMAGE_SUFFIXES)}); "
            f"found {'no sub-folders' if not examples else f'no images in {empty}'}"
        )
    return examples


def example_coverage(
    image_path: Path, width: int, height: int, mapping: ResizeMapping, grid: tuple[int, int]
) -> np.ndarray:
    """Patch coverage of the part in one example: from its mask, else its box, else the whole image."""
    mask_path = image_path.with_name(image_path.stem + ".mask.png")
    box_path = image_path.with_name(image_path.stem + ".box.txt")
    if mask_path.is_file():
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if mask is None or mask.shape != (height, width):
            raise ValueError(f"mask {mask_path} must be a {width}x{height} greyscale image like its example")
        return coverage_from_mask(mask > 0, mapping, grid)
    if box_path.is_file():
        values = box_path.read_text().split()
        if len(values) != 4:
            raise ValueError(f"{box_path} must hold one box as 'x1 y1 x2 y2' in pixels, found {values}")
        return coverage_from_box([float(v) for v in values], mapping, grid)
    return coverage_from_box([0, 0, width, height], mapping, grid)


def teach_from_folder(folder: str | os.PathLike, source: FeatureSource, store: PrototypeStore) -> dict[str, int]:
    """Add one prototype per example image in `folder` (see find_examples); returns examples per class."""
    examples = find_examples(folder)
    total, done = sum(len(paths) for paths in examples.values()), 0
    counts = {}
    for name, paths in examples.items():
        prototypes = []
        for path in paths:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot read example image {path}; is it a valid {path.suffix} file?")
            height, width = bgr.shape[:2]
            features = source([cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)])[0]
            grid = features.shape[1:]
            coverage = example_coverage(path, width, height, source.mapping(width, height), grid)
            prototypes.append(foreground_prototype(features, coverage))
            done += 1
            _log.info("taught %d/%d examples (%s)", done, total, path.name)
        store.add_prototypes(name, np.stack(prototypes))
        counts[name] = len(paths)
    return counts
