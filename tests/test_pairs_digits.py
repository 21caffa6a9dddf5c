"""Built-in image-text pairs rendered from scikit-learn's digits (`--data.source=digits`): the second
built-in dataset of the image-text task, with its own class words and the same caption grammar."""

from __future__ import annotations

import json

import pytest
import torch

from learnability import config as C
from learnability.cli import main
from learnability.clip_eval import attribute_accuracy
from learnability.io import read_jsonl
from learnability.pairs import CLEAN, WRONG_ATTRIBUTE, class_prompts, describe, hard_negatives
from learnability.pairs.captions import CLASS_SYNONYMS, DIGIT_SYNONYMS, class_synonyms
from learnability.pairs.noise import synthetic_vocabulary
from learnability.pairs.synthetic import synthetic_pairs
from learnability.pairs.tokenizer import split_words

GARMENT_WORDS = {w for group in CLASS_SYNONYMS for name in group for w in split_words(name)} - {"shirt", "boot"}


def _digits(**kw):
    opts = dict(source="digits", reference_size=100, pool_size=200, test_size=50, canvas=24, swapped=0.2,
                wrong_attribute=0.3, seed=0)
    return synthetic_pairs(**{**opts, **kw})


def test_digit_pairs_name_digits_in_their_captions_and_prompts() -> None:
    s = _digits()
    assert (len(s.pool), len(s.reference), len(s.test)) == (200, 100, 50)
    assert s.pool.images.shape[1:] == (3, 24, 24) and s.pool.class_names[7] == "seven"
    assert class_prompts(s.test.class_names)[8] == "a photo of an eight"
    digit_word = {k: set(w for name in group for w in split_words(name)) for k, group in enumerate(DIGIT_SYNONYMS)}
    for caption, k, code in zip(s.pool.captions, s.pool.labels.tolist(), s.pool.corruption.tolist()):
        words = set(split_words(caption))
        assert not words & GARMENT_WORDS, caption
        if code == CLEAN:
            assert words & (digit_word[k] - {"digit", "number"}), caption
    wrong = [c for c, code in zip(s.pool.captions, s.pool.corruption.tolist()) if code == WRONG_ATTRIBUTE]
    assert len(wrong) == 60 and not any(set(split_words(c)) & GARMENT_WORDS for c in wrong)
    # captions are re-rendered from attributes and style with the digits' grammar (hard negatives, eval)
    assert describe(s.test.attributes, s.test.style, class_synonyms(s.test.class_names)) == s.test.captions
    assert not any(set(split_words(c)) & GARMENT_WORDS for c in hard_negatives(s.test))


def test_digit_vocabulary_covers_its_captions_and_differs_from_the_garments() -> None:
    s = _digits(swapped=0.0, wrong_attribute=0.0)
    vocab = set(synthetic_vocabulary(s.pool.class_names))
    assert {"seven", "digit", "number"} <= vocab and not vocab & {"sneaker", "trousers"}
    for caption in s.pool.captions + s.test.captions + class_prompts(s.test.class_names):
        assert set(split_words(caption)) <= vocab, caption
    # Fashion-MNIST's vocabulary is what it was (the default), so earlier runs tokenize as before
    assert synthetic_vocabulary() == synthetic_vocabulary(tuple(g[0] for g in CLASS_SYNONYMS))


def test_digit_splits_are_seeded_and_disjoint() -> None:
    a, b = _digits(), _digits()
    assert a.pool.captions == b.pool.captions and torch.equal(a.test.images, b.test.images)
    assert set(a.pool.ids.tolist()).isdisjoint(a.reference.ids.tolist())
    other = _digits(seed=1)  # the test split is drawn by the seed too
    assert not torch.equal(other.test.ids, a.test.ids)


def test_digit_pairs_validation_split_replaces_the_test_pairs_with_held_out_digits() -> None:
    a, v = _digits(pool_size=0), _digits(pool_size=0, val_size=120, test_size=0)
    train_ids = set(a.pool.ids.tolist()) | set(a.reference.ids.tolist())
    assert len(v.test) == 120 and set(v.test.ids.tolist()) <= train_ids  # held-out training digits, not the test ones
    assert set(v.test.ids.tolist()).isdisjoint(v.pool.ids.tolist()) and set(v.test.ids.tolist()).isdisjoint(v.reference.ids.tolist())
    assert set(v.test.ids.tolist()).isdisjoint(a.test.ids.tolist())
    assert torch.equal(v.reference.images, a.reference.images) and len(v.pool) == len(a.pool) - 120
    assert (v.test.corruption == CLEAN).all()  # clean captions, like the test pairs
    with pytest.raises(ValueError, match="val_size"):
        _digits(pool_size=0, val_size=2000)


def test_attribute_accuracy_uses_the_digits_class_words() -> None:
    s = _digits(swapped=0.0, wrong_attribute=0.0)
    seen: list[str] = []

    def encode(texts: list[str]) -> torch.Tensor:  # a text tower that reads only the class word
        seen.extend(texts)
        return torch.stack([torch.tensor([float(k in split_words(t)) for k in
                                          ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")])
                            for t in texts])

    images = encode(s.test.captions)  # an image tower that knows the digit
    seen.clear()
    acc = attribute_accuracy(images, s.test.attributes, s.test.style, encode, s.test.class_names)
    assert acc["attr_class"] == 1.0
    assert seen and not any(set(split_words(t)) & GARMENT_WORDS for t in seen)


def test_bad_sources_and_sizes_are_refused_with_what_to_fix() -> None:
    with pytest.raises(ValueError, match="fashion_mnist or digits"):
        synthetic_pairs(source="npz", reference_size=10)
    with pytest.raises(ValueError, match="reference_size=5000 leaves no pool.*lower it"):
        synthetic_pairs(source="digits", reference_size=5000)
    with pytest.raises(ValueError, match="no built-in caption grammar"):
        class_synonyms(("cat", "dog"))
    cfg = C.apply_overrides(C.RunConfig(), ["--task=clip", "--data.source=npz"])
    with pytest.raises(C.ConfigError, match=r"data\.source"):
        C.validate(cfg)


def test_clip_run_on_digit_pairs(tmp_path) -> None:
    out = tmp_path / "digits"
    args = ["run", f"--out={out}", "--task=clip", "--data.source=digits", "--data.reference_size=200",
            "--data.test_size=100", "--pairs.image_size=24", "--pairs.renderings=2", "--pairs.swapped=0.3",
            "--train.steps=6", "--train.batch_size=32", "--train.eval_every=3", "--reference.epochs=1",
            "--progress=false", "--train.threads=1", "--pairs.retrieval_size=50"]
    assert main(args) == 0
    rows = read_jsonl(str(out / "metrics.jsonl"))
    final = [r for r in rows if "attr_class" in r][-1]
    assert 0 <= final["zero_shot"] <= 1 and 0 <= final["attr_class"] <= 1
    vocab = json.loads((out / "tokenizer.json").read_text())["vocab"]
    assert "seven" in vocab and "sneaker" not in vocab
