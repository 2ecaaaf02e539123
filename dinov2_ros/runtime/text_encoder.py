"""dino.txt's text encoder in the robot process: its stored ONNX graph on ONNX Runtime, no torch.

Prompts are encoded only when a class is named in words (a service call, `teach --text`), never per
frame, so the graph runs on the CPU beside the vision backend whatever that is (TensorRT, Triton...).
`dinov2-ros export` writes the graph into the artifact store's `text/` folder with CLIP's BPE
vocabulary beside it (`<graph>.vocab.txt.gz`), so a store copied to a robot carries everything a
prompt needs. The graph's metadata records what its weights are (TEXT_ENCODER_KEY); a graph of other
weights or of another dinov2_ros version is skipped with the reason, as vision graphs are.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from dinov2_ros import __version__
from dinov2_ros.runtime.graph_file import read_metadata
from dinov2_ros.runtime.model_settings import ModelSettings
from dinov2_ros.weights.identity import weights_identity
from dinov2_ros.weights.variants import DINOTXT, dinotxt_text_encoder_path

LOG = logging.getLogger(__name__)

TEXT_ENCODER_KEY = "dinov2_ros.text_encoder"  # JSON: weights identity, exporter, context, embed_dim
TEXT_DIR = "text"
TOKEN_INPUT = "token_ids"  # (N, L) int64, L <= context: start, ids, end token, padding
EMBEDDING_OUTPUT = "text_embedding"  # (N, embed_dim) float32, unnormalised (DinoTxt.encode_text)
UNVERIFIED = "unverified:"  # prefixes the path of a text encoder file that is not on this machine


def text_encoder_identity(settings: ModelSettings) -> str:
    """What the text encoder of `settings.dinotxt_weights` is, by content ('pretrained:<file>', the
    random tag, or the sha256 of the `<name>_text_encoder.pth` beside a vision head file). Where that
    file is not on this machine (a robot with a copied store), UNVERIFIED and its path: a graph
    exported from that path is taken, as provenance.UNVERIFIED does for the vision graphs."""
    weights = settings.dinotxt_weights
    if weights == "pretrained":
        return f"pretrained:{DINOTXT.text_encoder.filename}"
    if weights == "random":
        return weights_identity("random")
    path = text_encoder_source(settings)
    return weights_identity(path) if Path(path).is_file() else UNVERIFIED + path


def text_encoder_source(settings: ModelSettings) -> str:
    """'pretrained', 'random', or the absolute path of the text encoder file (for the graph's record)."""
    weights = settings.dinotxt_weights
    if weights in ("pretrained", "random"):
        return weights
    return str(dinotxt_text_encoder_path(Path(weights).expanduser()).resolve())


def vocabulary_beside(graph: Path) -> Path:
    """Where the BPE vocabulary of the text encoder graph `graph` is kept."""
    return graph.with_name(graph.stem + ".vocab.txt.gz")


def text_encoder_metadata(identity: str, source: str, context: int, embed_dim: int) -> dict[str, str]:
    """The metadata_props a text encoder graph is written with (`source`: text_encoder_source)."""
    record = {
        "weights": identity,
        "source": source,
        "exporter": __version__,
        "context": context,
        "embed_dim": embed_dim,
    }
    return {TEXT_ENCODER_KEY: json.dumps(record, sort_keys=True)}


def find_text_encoder(graph_dir: str | os.PathLike, identity: str) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the stored text encoder graph of `identity` made by this dinov2_ros, with its vocabulary, or
    None; every other graph in `text/` with why it was skipped)."""
    found, skipped = None, []
    folder = Path(graph_dir).expanduser() / TEXT_DIR
    for path in sorted(folder.glob("*.onnx")) if folder.is_dir() else ():
        try:
            record = json.loads(read_metadata(path)[TEXT_ENCODER_KEY])
        except (ValueError, KeyError) as error:
            skipped.append((path, f"not a dinov2_ros text encoder graph ({error})"))
            continue
        # weights not on this machine: the graph exported from their path
        by = ("source", identity.removeprefix(UNVERIFIED)) if identity.startswith(UNVERIFIED) else ("weights", identity)
        reasons = [
            f"{name} {record.get(name)!r} -> {wanted!r}"
            for name, wanted in (by, ("exporter", __version__))
            if record.get(name) != wanted
        ]
        if not vocabulary_beside(path).is_file():
            reasons.append(f"its vocabulary {vocabulary_beside(path).name} is missing")
        if reasons:
            skipped.append((path, "; ".join(reasons)))
        elif found is None:
            found = path
    return found, skipped


class TextEncoderGraph:
    """`encode(token_ids)`: token ids (N, L) int64 -> text embeddings (N, embed_dim) float32, on ONNX
    Runtime's CPU provider (`threads` 0: its choice)."""

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        record = json.loads(read_metadata(self.path)[TEXT_ENCODER_KEY])
        self.context, self.embed_dim = int(record["context"]), int(record["embed_dim"])
        LOG.info("onnxruntime %s: text encoder %s on the CPU", ort.__version__, self.path.name)

    def encode(self, token_ids: np.ndarray) -> np.ndarray:
        token_ids = np.ascontiguousarray(token_ids, dtype=np.int64)
        if token_ids.ndim != 2 or not 2 <= token_ids.shape[1] <= self.context:
            raise ValueError(f"token ids must have shape (N, L) with 2 <= L <= {self.context}, got {token_ids.shape}")
        return self.session.run([EMBEDDING_OUTPUT], {TOKEN_INPUT: token_ids})[0]
