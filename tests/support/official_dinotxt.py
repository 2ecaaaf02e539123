"""Meta's own dino.txt code as the oracle for ours, with every parameter drawn at random in its layout.

`official_dinotxt` runs Meta's builder `dinov2_vitl14_reg4_dinotxt_tet1280d20h24l` unchanged, from a
checkout of facebookresearch/dinov2 named by $DINOV2_SOURCE, with its three downloads
(`torch.hub.load_state_dict_from_url`: backbone, vision head, text encoder) answered from memory by
URL, so the URLs it asks for are checked too. Without a checkout, tests compare with the outputs
that `record_dinotxt_reference.py` saved from it (tests/data/dinotxt_reference.npz), from the same
seeded weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

SOURCE_ENV = "DINOV2_SOURCE"
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "dinotxt_reference.npz"
VOCABULARY_ENV = "DINOV2_ROS_TEST_VOCABULARY"
# prompts with punctuation, case, digits, accents (composed and not), full-width and CJK characters,
# emoji, HTML entities, mojibake that ftfy repairs, whitespace runs, an end token in the text, and
# texts longer than the 77-token context
PROMPTS = (
    "a photo of a blue connector.",
    "M3 Bolt, 12mm!!",
    "Café crème and cafe\u0301",
    "naïve ＦＵＬＬ-width Ｍ８",
    "日本語のテキスト",
    "emoji 🤖🔩",
    "it's the robot's gripper",
    "&amp; html &lt;tags&gt;",
    "mojibake cafÃ©",
    "TAB\tand\nnewline   spaces",
    "<|endoftext|> inside",
    "",
    "x" * 300,
    " ".join(["word"] * 100),
)
SEEDS = {"backbone": 1, "vision head": 2, "text encoder": 3}
IMAGE_SIZE = (112, 112)


def official_source() -> Path | None:
    """The facebookresearch/dinov2 checkout named by $DINOV2_SOURCE (the folder holding `dinov2/`), or None."""
    value = os.environ.get(SOURCE_ENV)
    return Path(value) if value and (Path(value) / "dinov2" / "hub" / "dinotxt.py").is_file() else None


def vocabulary_path() -> Path | None:
    """CLIP's real BPE vocabulary for the tests: $DINOV2_ROS_TEST_VOCABULARY, else the copy
    scripts/prepare_venv.sh takes from the open_clip_torch wheel (sha256 checked there)."""
    value = os.environ.get(VOCABULARY_ENV)
    path = Path(value) if value else Path(sys.prefix) / "test-data" / "bpe_simple_vocab_16e6.txt.gz"
    return path if path.is_file() else None


def random_state_dict(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Every tensor of `module`'s state_dict drawn at random, at scales that keep a deep network's
    activations finite: weights N(0, 1/fan_in), norms' and layer scales' weights around 1 and 0.5,
    biases, embeddings and tokens small. Keys in sorted order, so the draw does not depend on the
    module's definition order."""
    generator = torch.Generator().manual_seed(seed)
    drawn = {}
    for key, value in sorted(module.state_dict().items()):
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float32)
        name = key.rsplit(".", 1)[-1]
        if name == "gamma":
            drawn[key] = 0.5 + 0.1 * noise
        elif ("norm" in key or "ln_final" in key) and name == "weight":
            drawn[key] = 1.0 + 0.1 * noise
        elif name == "bias" or value.dim() < 2 or "token" in key or "embed" in key:
            drawn[key] = 0.02 * noise
        else:
            drawn[key] = noise / value[0].numel() ** 0.5
    return drawn


def fingerprint(*state_dicts: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the keys and bytes of the state_dicts: the record's weights, as drawn here."""
    digest = hashlib.sha256()
    for state_dict in state_dicts:
        for key in sorted(state_dict):
            digest.update(key.encode())
            digest.update(state_dict[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _importable(source: Path) -> Iterator[None]:
    os.environ.setdefault("XFORMERS_DISABLED", "1")  # Meta's layers fall back to plain PyTorch
    sys.path.insert(0, str(source))
    try:
        yield
    finally:
        sys.path.remove(str(source))


def official_dinotxt(
    source: Path, files_by_url: Mapping[str, Mapping[str, torch.Tensor]]
) -> tuple[nn.Module, list[str]]:
    """Meta's DinoTxt as its hub builder makes it, loading `files_by_url` (URL -> state_dict) in place
    of its downloads; and the URLs it asked for. An URL it asks for that is not given is a KeyError."""
    asked: list[str] = []

    def served(url: str, *args, **kwargs) -> dict[str, torch.Tensor]:
        asked.append(url)
        return {key: value.clone() for key, value in files_by_url[url].items()}

    with _importable(source), torch.no_grad():
        from dinov2.hub import dinotxt

        original = torch.hub.load_state_dict_from_url
        torch.hub.load_state_dict_from_url = served
        try:
            model = dinotxt.dinov2_vitl14_reg4_dinotxt_tet1280d20h24l()
        finally:
            torch.hub.load_state_dict_from_url = original
    return model.eval(), asked


def official_tokenizer(source: Path, vocabulary: Path):
    """Meta's dino.txt tokenizer (CLIP's SimpleTokenizer) on the vocabulary file `vocabulary`."""
    with _importable(source):
        from dinov2.hub.text.tokenizer import Tokenizer

        return Tokenizer(vocab_path=str(vocabulary))


def images(batch: int = 2) -> torch.Tensor:
    """Normalised model inputs (batch, 3, 112, 112), seeded."""
    generator = torch.Generator().manual_seed(11)
    return torch.randn((batch, 3, *IMAGE_SIZE), generator=generator)


def load_reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE, allow_pickle=False) as data:
        return dict(data)
