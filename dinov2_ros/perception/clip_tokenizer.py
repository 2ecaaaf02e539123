"""CLIP's byte-level BPE tokenizer, which dino.txt's text encoder reads: text -> token ids, without torch.

The behaviour is that of CLIP's `SimpleTokenizer` as Meta's `dinov2/hub/text/tokenizer.py` uses it
(the tests compare token for token): the text is repaired by ftfy, HTML entities are unescaped twice,
whitespace runs become one space and everything is lowercased; words, single digits and runs of
other symbols are split off by CLIP's pattern, their UTF-8 bytes mapped to printable characters and
merged by the ranked BPE merges of the vocabulary file. A row is start token, the text's ids, end
token, zero padding; a text too long for the context is cut and keeps its end token last.

The vocabulary is data (`bpe_simple_vocab_16e6.txt.gz`, fetched with the dino.txt weights), read
from a file given here, never downloaded. Needs the `regex` (Unicode classes) and `ftfy` packages.
"""

from __future__ import annotations

import functools
import gzip
import html
import itertools
import os
from collections.abc import Sequence

import numpy as np

try:
    import ftfy
    import regex
except ModuleNotFoundError as missing:  # installed with requirements/runtime.txt, needed only for dino.txt
    raise ModuleNotFoundError(
        f"dino.txt's tokenizer needs the `{missing.name}` package (CLIP's text repair and Unicode word pattern), "
        "which is not installed: python3 -m pip install -r requirements/runtime.txt (or `pip install regex ftfy`)",
        name=missing.name,
    ) from missing

START = "<|startoftext|>"
END = "<|endoftext|>"
CONTEXT_LENGTH = 77  # every CLIP-tokenised model, dino.txt's text encoder included
_MERGES_USED = 49152 - 256 - 2  # CLIP's vocabulary: 256 bytes x 2 (word-final or not) + merges + 2 specials
_WORDS = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", regex.IGNORECASE
)
_WHITESPACE = regex.compile(r"\s+")


@functools.cache
def byte_characters() -> dict[int, str]:
    """The printable character each byte stands for in the vocabulary (GPT-2's byte-level map: printable
    Latin-1 bytes stand for themselves, the others for the characters from U+0100 on, in byte order).
    In vocabulary order: the printable bytes first, then the others, as the vocabulary lists them."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return {byte: chr(byte) for byte in printable} | {byte: chr(256 + n) for n, byte in enumerate(others)}


def normalise(text: str) -> str:
    """The text as the tokenizer sees it: ftfy-repaired, HTML-unescaped twice, whitespace collapsed, lowercase."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


class ClipTokenizer:
    """Token ids of texts for a CLIP-vocabulary text encoder (see the module docstring).

    `vocabulary`: the path of `bpe_simple_vocab_16e6.txt.gz` (or a file of the same format). Raises
    ValueError naming the file when it cannot be read as one.
    """

    def __init__(self, vocabulary: str | os.PathLike[str], context_length: int = CONTEXT_LENGTH) -> None:
        try:
            with gzip.open(vocabulary, "rt", encoding="utf-8") as stream:
                lines = stream.read().rstrip("\n").split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as error:
            raise ValueError(
                f"cannot read the BPE vocabulary {vocabulary} ({error}); fetch it with `dinov2-ros weights fetch "
                "dinotxt`"
            ) from error
        merges = [tuple(line.split()) for line in lines[1 : _MERGES_USED + 1]]
        if not merges or any(len(pair) != 2 for pair in merges):
            raise ValueError(f"{vocabulary} is not a BPE vocabulary: expected a header line, then 'a b' merges")
        symbols = list(byte_characters().values())
        symbols += [symbol + "</w>" for symbol in symbols]
        symbols += ["".join(pair) for pair in merges] + [START, END]
        self.ids = {symbol: index for index, symbol in enumerate(symbols)}
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.context_length = context_length
        self.start_id, self.end_id = self.ids[START], self.ids[END]
        self._pieces: dict[str, tuple[str, ...]] = {START: (START,), END: (END,)}

    @property
    def vocab_size(self) -> int:
        return len(self.ids)

    def encode(self, text: str) -> list[int]:
        """The ids of `text`, without start and end tokens."""
        characters = byte_characters()
        ids = []
        for word in _WORDS.findall(normalise(text)):
            word = "".join(characters[byte] for byte in word.encode("utf-8"))
            ids += [self.ids[piece] for piece in self._merged(word)]
        return ids

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """Rows of ids (N, context_length) int64: start, text, end, zeros; an over-long text is cut to
        fit and ends with the end token."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        rows = np.zeros((len(texts), self.context_length), np.int64)
        for row, text in zip(rows, texts, strict=True):
            ids = [self.start_id, *self.encode(text), self.end_id][: self.context_length]
            ids[-1] = self.end_id
            row[: len(ids)] = ids
        return rows

    def _merged(self, word: str) -> tuple[str, ...]:
        """A word's BPE pieces: its characters (the last marked word-final), merged pair by pair, lowest
        rank first, until no adjacent pair is a merge."""
        if word in self._pieces:
            return self._pieces[word]
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            pairs = set(itertools.pairwise(pieces))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, index = [], 0
            while index < len(pieces):
                if index + 1 < len(pieces) and (pieces[index], pieces[index + 1]) == best:
                    merged.append(pieces[index] + pieces[index + 1])
                    index += 2
                else:
                    merged.append(pieces[index])
                    index += 1
            pieces = merged
        self._pieces[word] = tuple(pieces)
        return self._pieces[word]


def trim_padding(rows: np.ndarray) -> np.ndarray:
    """`rows` (N, L) cut after the last end token of any row: a causal encoder's pooled outputs do not
    depend on the padding after a row's end, so the cut rows cost less and encode the same."""
    last = int((rows.argmax(axis=1)).max()) + 1
    return rows[:, :last]
