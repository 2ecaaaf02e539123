"""Record Meta's dino.txt outputs for tests/model/test_dinotxt_parity.py (tests/data/dinotxt_reference.npz).

    DINOV2_SOURCE=<facebookresearch/dinov2 checkout> .venv/bin/python tests/support/record_dinotxt_reference.py

Runs Meta's code (official_dinotxt.py) on the seeded random weights `dinotxt_weights` draws, the
seeded images and PROMPTS (tokens of every prompt with the real CLIP vocabulary; text embeddings of
the first TEXT_PROMPTS, padded to 77 as Meta's tokenizer writes them). Re-record after changing the
draw, the prompts or the images.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from dinotxt_weights import TEXT_PROMPTS, official_files, our_dinotxt_state_dicts
from official_dinotxt import (
    PROMPTS,
    REFERENCE,
    fingerprint,
    images,
    official_dinotxt,
    official_source,
    official_tokenizer,
    vocabulary_path,
)


def main() -> int:
    source, vocabulary = official_source(), vocabulary_path()
    if source is None or vocabulary is None:
        print("needs $DINOV2_SOURCE (a facebookresearch/dinov2 checkout) and the CLIP vocabulary", file=sys.stderr)
        return 2
    state_dicts = our_dinotxt_state_dicts()
    model, asked = official_dinotxt(source, official_files(state_dicts))
    tokens = official_tokenizer(source, vocabulary).tokenize(list(PROMPTS))
    with torch.no_grad():
        class_tokens, patch_tokens = model.get_visual_class_and_patch_tokens(images())
        image_embedding = model.encode_image(images())
        text_embedding = model.encode_text(tokens[:TEXT_PROMPTS])
    np.savez_compressed(
        REFERENCE,
        fingerprint=np.array(fingerprint(*state_dicts.values())),
        urls=np.array(asked),
        tokens=tokens.numpy(),
        class_tokens=class_tokens.numpy(),
        patch_tokens=patch_tokens.numpy(),
        image_embedding=image_embedding.numpy(),
        text_embedding=text_embedding.numpy(),
    )
    print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
