"""Word-level tokenizer: splitting, deterministic vocabulary, encoding, JSON round trip."""

from __future__ import annotations

import json
import os

import pytest
import torch

from learnability.data.imageset import ImageSet
from learnability.pairs import WordTokenizer, build_vocab, render_pairs, split_words
from learnability.pairs.tokenizer import SPECIALS


def test_split_words() -> None:
    assert split_words("A photo of a T-shirt, top-left!") == ["a", "photo", "of", "a", "t", "shirt", "top", "left"]
    assert split_words("IMG_0423.JPG") == ["img", "0423", "jpg"]
    assert split_words("  ") == [] and split_words("Café au lait") == ["café", "au", "lait"]


def test_vocab_by_frequency_then_alphabet_and_deterministic() -> None:
    texts = ["b a c", "a b", "a d", "z"]
    vocab = build_vocab(texts)
    assert vocab == list(SPECIALS) + ["a", "b", "c", "d", "z"]
    assert build_vocab(list(reversed(texts))) == vocab
    assert build_vocab(texts, min_count=2) == list(SPECIALS) + ["a", "b"]
    assert build_vocab(texts, max_size=6) == list(SPECIALS) + ["a", "b"]
    with pytest.raises(ValueError, match="min_count"):
        build_vocab(texts, min_count=0)
    with pytest.raises(ValueError, match="max_size"):
        build_vocab(texts, max_size=3)


def test_encode_pads_truncates_and_decodes() -> None:
    tok = WordTokenizer.build(["a red bag", "a blue bag in the top left"], max_len=6)
    ids = tok.encode(["a red bag", "a green bag", "a blue bag in the top left", ""])
    assert ids.shape == (4, 6) and ids.dtype == torch.int64
    assert ids[0].tolist() == [tok.bos_id, tok.index["a"], tok.index["red"], tok.index["bag"], tok.eos_id, tok.pad_id]
    assert ids[1, 2] == tok.unk_id
    assert ids[2, -1] == tok.eos_id and ids[2, 1:5].tolist() == [tok.index[w] for w in ["a", "blue", "bag", "in"]]
    assert ids[3].tolist() == [tok.bos_id, tok.eos_id] + [tok.pad_id] * 4
    assert tok.pad_id == 0
    assert tok.decode(ids) == ["a red bag", "a <unk> bag", "a blue bag in", ""]
    with pytest.raises(ValueError, match="list"):
        tok.encode("a red bag")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_len"):
        WordTokenizer(tok.vocab, max_len=2)
    with pytest.raises(ValueError, match="special"):
        WordTokenizer(["a", "b"])
    with pytest.raises(ValueError, match="more than once"):
        WordTokenizer(list(SPECIALS) + ["a", "a"])


def test_save_load_round_trip(tmp_path) -> None:
    tok = WordTokenizer.build(["a small red sneaker in the top left", "photo of a large blue shirt"], max_len=12)
    path = str(tmp_path / "sub" / "tokenizer.json")
    tok.save(path)
    assert os.listdir(tmp_path / "sub") == ["tokenizer.json"]  # atomic: no temporary file left
    back = WordTokenizer.load(path)
    assert back == tok and torch.equal(back.encode(["a red shirt"]), tok.encode(["a red shirt"]))
    assert json.loads((tmp_path / "sub" / "tokenizer.json").read_text())["vocab"] == tok.vocab
    with pytest.raises(FileNotFoundError, match="does not exist"):
        WordTokenizer.load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a tokenizer JSON"):
        WordTokenizer.load(str(tmp_path / "bad.json"))
    (tmp_path / "other.json").write_text(json.dumps({"vocab": ["a"]}))
    with pytest.raises(ValueError, match="learnability.word_tokenizer"):
        WordTokenizer.load(str(tmp_path / "other.json"))


def test_synthetic_captions_fit_the_default_length() -> None:
    x = torch.full((300, 1, 28, 28), 1.0)
    p = render_pairs(ImageSet(x, torch.arange(300) % 10, torch.arange(300), 10), two_objects=1.0)
    tok = WordTokenizer.build(p.captions)
    assert max(len(split_words(c)) for c in p.captions) <= tok.max_len - 2  # nothing truncated at 32
    assert tok.vocab_size < 100 and tok.unk_id not in tok.encode(p.captions)
    assert WordTokenizer.build(list(reversed(p.captions))) == tok
