"""What a graph is made from, by content: the provenance of its weights, matched before a stored graph runs.

A checkpoint file is its sha256 (`weights.identity.weights_identity`, cached per file version);
"pretrained" is the name of Meta's released file, whose URL never serves other bytes, so a robot
without the file still finds its graph; "random" is the seeded network. A checkpoint path that is
not on this machine is UNVERIFIED (matched by the path it was exported from).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from dinov2_ros import __version__
from dinov2_ros.runtime.model_settings import ModelSettings
from dinov2_ros.weights.identity import weights_identity
from dinov2_ros.weights.variants import DINOTXT, get_variant

UNVERIFIED = "?"  # the identity of weights whose file is not on this machine


@dataclass(frozen=True)
class Provenance:
    """What a graph was exported from, by content: equal provenance and spec mean the same graph.

    Each weights field is a `weights_identity` (a sha256 for a file, Meta's release name for
    "pretrained", the seed for "random"); depth also names its dataset and kind. `sources` records
    the path each file had. A robot may hold the exported graph without the checkpoint it came
    from: that field is then UNVERIFIED, and a graph matches on the path it was exported from.
    """

    backbone: str
    depth: str  # "" without a depth head
    detector: str  # "" unless a trained (center) head
    exporter: str
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    dinotxt: str = ""  # dino.txt's vision head; "" without it (and in graphs stored before it existed)

    @property
    def unverified(self) -> list[str]:
        """The weights fields whose content could not be read here."""
        return [name for name in _WEIGHTS_FIELDS if getattr(self, name) == UNVERIFIED]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Provenance:
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError) as error:
            raise ValueError(f"unreadable provenance metadata ({error}); re-export the graph") from error

    def differences(self, other: Provenance) -> list[str]:
        """Readable `field other -> self` for each field in which `other` (a stored graph's) differs."""
        found = []
        for name in (*_WEIGHTS_FIELDS, "exporter"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine == UNVERIFIED:
                mine, theirs = self.sources.get(name), other.sources.get(name)
            if mine != theirs:
                found.append(f"{name} {theirs!r} -> {mine!r}")
        return found


_WEIGHTS_FIELDS = ("backbone", "depth", "detector", "dinotxt")


def provenance_of(settings: ModelSettings) -> Provenance:
    """What the graphs of `settings` are made from (see the module docstring)."""

    def identity(weights: str, pretrained) -> str:
        if weights == "pretrained":
            return f"pretrained:{pretrained().filename}"
        if weights != "random" and not Path(weights).expanduser().is_file():
            return UNVERIFIED
        return weights_identity(Path(weights).expanduser() if weights != "random" else weights)

    s = settings
    identities, sources = {"backbone": "", "depth": "", "detector": "", "dinotxt": ""}, {}
    identities["backbone"] = identity(s.weights, lambda: get_variant(s.variant).checkpoint)
    sources["backbone"] = _source(s.weights)
    if s.depth_weights:
        file = identity(s.depth_weights, lambda: get_variant(s.variant).depth_head_file(s.depth_dataset, s.depth_kind))
        identities["depth"] = file if file == UNVERIFIED else f"{s.depth_dataset}/{s.depth_kind}/{file}"
        sources["depth"] = _source(s.depth_weights)
    if s.detector == "center":
        identities["detector"] = identity(s.detector_weights, None)
        sources["detector"] = _source(s.detector_weights)
    if s.dinotxt_weights:
        identities["dinotxt"] = identity(s.dinotxt_weights, lambda: DINOTXT.vision_head)
        sources["dinotxt"] = _source(s.dinotxt_weights)
    return Provenance(**identities, exporter=f"dinov2_ros {__version__}", sources=sources)


def _source(weights: str) -> str:
    return weights if weights in ("random", "pretrained") else str(Path(weights).expanduser().resolve())
