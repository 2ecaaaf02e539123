"""dino.txt's text encoder to an ONNX graph in the artifact store, with its BPE vocabulary beside it.

The robot encodes prompts with this graph on ONNX Runtime (runtime/text_encoder.py) and needs no
torch. Batch and token count are dynamic (the node cuts a batch after its longest prompt's end token,
up to the 77-token context); opset as the core's. The released encoder's 2.2 GB of fp32 weights pass
protobuf's limit, so they go to `<graph>.onnx.data` (camera_graph.save_model).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from dinov2_ros.atomic_file import atomic_write
from dinov2_ros.export.camera_graph import quiet_onnx_tools, save_model_atomic, set_metadata
from dinov2_ros.export.core_export import DEFAULT_OPSET, MAX_BATCH
from dinov2_ros.model.dinotxt import TextEncoder
from dinov2_ros.runtime.text_encoder import (
    EMBEDDING_OUTPUT,
    TEXT_DIR,
    TOKEN_INPUT,
    TextEncoderGraph,
    text_encoder_metadata,
    vocabulary_beside,
)

LOG = logging.getLogger(__name__)
CHECK_TOLERANCE = 1e-3  # the written graph against torch on the example rows (float32 rounding is ~1e-6)


def text_encoder_path(graph_dir: str | Path, identity: str) -> Path:
    """Where the text encoder graph of `identity` (runtime.text_encoder.text_encoder_identity) is written."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return Path(graph_dir).expanduser() / TEXT_DIR / f"text-encoder-{digest}.onnx"


def export_text_encoder(
    encoder: TextEncoder, vocabulary: Path, path: Path, identity: str, source: str = "", opset: int = DEFAULT_OPSET
) -> Path:
    """Write `encoder` to `path` (atomically, checked against torch on example rows) and the BPE
    `vocabulary` beside it; returns `path`. `identity` and `source` (runtime.text_encoder's
    text_encoder_identity and text_encoder_source) are what a store lookup matches."""
    context = encoder.backbone.context
    vocab_size = encoder.backbone.token_embedding.num_embeddings
    example = torch.zeros((2, 6), dtype=torch.long)  # batch 2, 6 tokens: neither is specialised to a constant
    example[:, :5] = torch.tensor(
        [[vocab_size - 2, 5, 6, 7, vocab_size - 1], [vocab_size - 2, 8, vocab_size - 1, 0, 0]]
    )
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH * 4)
    length = torch.export.Dim("tokens", min=2, max=context)
    LOG.info("export: the dino.txt text encoder to %s (opset %d) ...", path, opset)
    start = time.monotonic()
    with torch.no_grad(), quiet_onnx_tools(), contextlib.redirect_stdout(io.StringIO()):  # its step prints
        program = torch.onnx.export(
            encoder.eval(),
            (example,),
            input_names=[TOKEN_INPUT],
            output_names=[EMBEDDING_OUTPUT],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes={TOKEN_INPUT: {0: batch, 1: length}},
        )
        expected = encoder(example).numpy()
    model = program.model_proto
    set_metadata(model, text_encoder_metadata(identity, source, context, encoder.embed_dim))

    def check(written: Path) -> None:
        error = float(np.abs(TextEncoderGraph(written).encode(example.numpy()) - expected).max())
        if error > CHECK_TOLERANCE:
            raise RuntimeError(f"the exported text encoder differs from torch by {error:.2g}; nothing was saved")

    with atomic_write(vocabulary_beside(path)) as temporary:  # first: a graph is never seen without it
        shutil.copyfile(vocabulary, temporary)
    save_model_atomic(model, path, check)
    LOG.info("exported the text encoder in %.0f s", time.monotonic() - start)
    return path
