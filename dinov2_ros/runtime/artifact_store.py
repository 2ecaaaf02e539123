"""The artifact store: exported graphs and TensorRT engines in one folder, keyed by what made them.

`<graph_dir>/<spec key>-<content digest>.onnx` holds one exported graph; its metadata carries the
GraphSpec and the provenance (what the backbone, depth and detector weights ARE, by content, and the
exporter version), and the digest in its name is taken over both. So `/runs/a/best.pt` and
`/runs/b/best.pt` give two graphs, and a retrained head never runs an old graph. Engines live in
`<graph_dir>/engines/`, keyed by the ONNX file's bytes (runtime/backends/tensorrt/engine_cache.py), and the cores
the graphs are composed from (`core_export.export_core`, one per model and input size) in
`<graph_dir>/cores/`, named and matched as graphs are. `dinov2-ros export` and `build-engine` write
here, and the node searches here and logs why it skips each other file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from dinov2_ros.runtime.graph_file import CORE_SPEC_KEY, PRECISION_KEY, PROVENANCE_KEY, SPEC_KEY, load_graph_metadata
from dinov2_ros.runtime.graph_spec import GraphSpec
from dinov2_ros.runtime.provenance import Provenance

DIGEST_LENGTH = 12  # hex digits of the content digest in a graph file's name


def graph_file_name(spec: GraphSpec, provenance: Provenance, core: bool = False) -> str:
    """`<spec key>-<digest>.onnx` (a core: `<spec core_key>-<digest>.onnx`), the digest taken over the
    spec and the provenance."""
    digest = hashlib.sha256((spec.to_json() + provenance.to_json()).encode()).hexdigest()
    return f"{spec.core_key if core else spec.key}-{digest[:DIGEST_LENGTH]}.onnx"


class ArtifactStore:
    """One folder of graphs (and `engines/`); finds the graph for a spec and provenance, saying why not."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    @property
    def engine_dir(self) -> Path:
        return self.directory / "engines"

    @property
    def core_dir(self) -> Path:
        return self.directory / "cores"

    def graph_path(self, spec: GraphSpec, provenance: Provenance) -> Path:
        """Where the fp32 graph for `spec` and `provenance` is written."""
        return self.directory / graph_file_name(spec, provenance)

    def core_path(self, core: GraphSpec, provenance: Provenance) -> Path:
        """Where the core `core` (a `GraphSpec.core()`) of `provenance` is written."""
        return self.core_dir / graph_file_name(core, provenance, core=True)

    def find(
        self, spec: GraphSpec, provenance: Provenance, precision: str = "fp32", required: Mapping[str, str] = {}
    ) -> tuple[Path | None, list[tuple[Path, str]]]:
        """(the graph for `spec`, `provenance` and `precision` whose metadata also holds `required`, or
        None; every other file with why it was skipped, except the same graph in another precision).

        Reads only the metadata of each `*.onnx` file (a few small reads each, not the weights).
        """
        return _find(self._entries(self.directory, SPEC_KEY), spec, provenance, precision, required)

    def find_core(
        self, core: GraphSpec, provenance: Provenance, precision: str = "fp32"
    ) -> tuple[Path | None, list[tuple[Path, str]]]:
        """`find` for the core `core` (a `GraphSpec.core()`) among the stored cores."""
        return _find(self._entries(self.core_dir, CORE_SPEC_KEY), core, provenance, precision, {})

    def graphs(self) -> list[tuple[Path, GraphSpec, dict[str, str]]]:
        """Every readable dinov2_ros graph in the store with its spec and metadata."""
        return [(path, spec, metadata) for path, spec, metadata, error in self._entries(self.directory) if not error]

    def cores(self) -> list[tuple[Path, GraphSpec, dict[str, str]]]:
        """`graphs` for the stored cores."""
        entries = self._entries(self.core_dir, CORE_SPEC_KEY)
        return [(path, spec, metadata) for path, spec, metadata, error in entries if not error]

    @staticmethod
    def _entries(directory: Path, key: str = SPEC_KEY):
        """(path, spec, metadata, "") of each `*.onnx` file, or (path, None, None, why it is unreadable)."""
        for path in sorted(directory.glob("*.onnx")) if directory.is_dir() else ():
            try:
                yield (path, *load_graph_metadata(path, key=key), "")
            except ValueError as error:  # ForeignGraphError is a ValueError; its fact without the advice
                yield path, None, None, getattr(error, "fact", str(error))


def _find(
    entries, spec: GraphSpec, provenance: Provenance, precision: str, required: Mapping[str, str]
) -> tuple[Path | None, list[tuple[Path, str]]]:
    skipped: list[tuple[Path, str]] = []
    found = None
    for path, stored, metadata, error in entries:
        reasons = [error] if error else mismatches(stored, metadata, spec, provenance, precision, required)
        if not reasons and found is None:
            found = path
        elif error:
            skipped.append((path, error))
        elif not all(reason.startswith("precision ") for reason in reasons):  # not the wanted one's sibling
            skipped.append((path, "it was made for other settings: " + "; ".join(reasons)))
    return found, skipped


def mismatches(
    stored: GraphSpec,
    metadata: dict[str, str],
    spec: GraphSpec,
    provenance: Provenance,
    precision: str = "fp32",
    required: Mapping[str, str] = {},
) -> list[str]:
    """Why a stored graph (its spec and metadata) is not the one for `spec`, `provenance`, `precision`
    and the `required` metadata values; [] if it is."""
    try:
        stored_provenance = Provenance.from_json(metadata.get(PROVENANCE_KEY, "{}"))
    except ValueError as error:
        return [str(error)]
    reasons = spec.differences(stored) + provenance.differences(stored_provenance)
    if metadata.get(PRECISION_KEY) != precision:  # a sibling in another precision: `required` is not its
        return [*reasons, f"precision {metadata.get(PRECISION_KEY)!r} -> {precision!r}"]
    reasons += [
        f"{key.removeprefix('dinov2_ros.')} {metadata.get(key)!r} -> {value!r}"
        for key, value in required.items()
        if metadata.get(key) != value
    ]
    return reasons
