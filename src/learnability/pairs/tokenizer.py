"""A word-level tokenizer built from training captions: no download, deterministic, saved as JSON.

Text is lowercased and split on anything that is not a letter or digit ("T-shirt, top-left!" ->
t, shirt, top, left). The vocabulary is the special tokens, then words sorted by frequency
(descending) and then alphabetically, so the same captions always give the same ids.
"""

from __future__ import annotations

import collections
import json
import os
import re
from collections.abc import Iterable

import torch

from learnability.io import atomic_write_text

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
FORMAT = "learnability.word_tokenizer"
_WORD = re.compile(r"[^\W_]+")


def split_words(text: str) -> list[str]:
    """Lowercased runs of letters and digits: 'Photo of a T-shirt!' -> ['photo', 'of', 'a', 't', 'shirt']."""
    return _WORD.findall(text.lower())


def build_vocab(texts: Iterable[str], *, min_count: int = 1, max_size: int = 0) -> list[str]:
    """Special tokens, then the words seen at least `min_count` times by descending count, ties
    alphabetical; `max_size` > 0 caps the whole vocabulary (specials included)."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1; got {min_count}")
    if max_size and max_size <= len(SPECIALS):
        raise ValueError(f"max_size must exceed the {len(SPECIALS)} special tokens (or be 0 for no cap); got {max_size}")
    counts = collections.Counter(w for t in texts for w in split_words(t))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    vocab = list(SPECIALS) + words
    return vocab[:max_size] if max_size else vocab


class WordTokenizer:
    """Maps captions to `[N, max_len]` int64 token ids: BOS, the first max_len - 2 words (unknown
    words -> UNK), EOS, then PAD (id 0). Holds the vocabulary; `split_words`/`build_vocab` do the work."""

    def __init__(self, vocab: list[str], max_len: int = 32):
        if list(vocab[:len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"the vocabulary must start with the special tokens {list(SPECIALS)}; got {list(vocab[:4])}")
        if len(set(vocab)) != len(vocab):
            dup = next(w for w, c in collections.Counter(vocab).items() if c > 1)
            raise ValueError(f"the vocabulary holds {dup!r} more than once")
        if max_len < 3:
            raise ValueError(f"max_len must be >= 3 (BOS, a word, EOS); got {max_len}")
        self.vocab, self.max_len = list(vocab), max_len
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = (self.index[s] for s in SPECIALS)

    @classmethod
    def build(cls, texts: Iterable[str], *, max_len: int = 32, min_count: int = 1, max_size: int = 0) -> "WordTokenizer":
        """A tokenizer whose vocabulary comes from `texts` (the training captions)."""
        return cls(build_vocab(texts, min_count=min_count, max_size=max_size), max_len)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """`[N, max_len]` int64 ids; rows longer than max_len - 2 words are truncated (EOS kept)."""
        if isinstance(texts, str):
            raise ValueError("encode takes a list of captions; wrap a single caption as [text]")
        out = torch.full((len(texts), self.max_len), self.pad_id, dtype=torch.int64)
        for row, text in enumerate(texts):
            ids = [self.bos_id] + [self.index.get(w, self.unk_id) for w in split_words(text)][:self.max_len - 2] + [self.eos_id]
            out[row, :len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Words of `[N, L]` ids joined by spaces, without special tokens other than UNK."""
        skip = {self.pad_id, self.bos_id, self.eos_id}
        return [" ".join(self.vocab[i] for i in row if i not in skip) for row in ids.tolist()]

    def save(self, path: str) -> None:
        """Write the tokenizer as JSON, atomically."""
        atomic_write_text(path, json.dumps({"format": FORMAT, "version": 1, "max_len": self.max_len,
                                            "vocab": self.vocab}, indent=0) + "\n")

    @classmethod
    def load(cls, path: str) -> "WordTokenizer":
        """Read a tokenizer written by `save`."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"tokenizer file {path!r} does not exist; build one with WordTokenizer.build(captions) and save it")
        try:
            with open(path) as f:
                d = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a tokenizer JSON file ({e}); rebuild it with WordTokenizer.build") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("vocab"), list):
            raise ValueError(f"{path} is not a {FORMAT} file (expected keys format, version, max_len, vocab)")
        if d.get("version") != 1:
            raise ValueError(f"{path}: tokenizer format version {d.get('version')!r} is not supported (expected 1)")
        return cls(d["vocab"], int(d["max_len"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and self.vocab == other.vocab and self.max_len == other.max_len
