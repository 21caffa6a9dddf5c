"""Built-in compositional image-text pairs: rendering, captions, web-like noise, splits, PairSet."""

from __future__ import annotations

import os

import pytest
import torch

from learnability.data.imageset import ImageSet
from learnability.data.sources import FASHION_MNIST_DIR, load_source
from learnability.pairs import (CLEAN, KIND_NAMES, SWAPPED, UNINFORMATIVE, UNINFORMATIVE_TEXTS, WRONG_ATTRIBUTE, PairSet,
                                class_prompts, corrupt_pairs, describe, hard_negatives, make_pair_splits, render_pairs)
from learnability.pairs.captions import (CLASS_SYNONYMS, COLOUR_RGB, COLOURS, POSITION_SYNONYMS, SIZE_SYNONYMS,
                                         id_uniform)
from learnability.pairs.noise import change_one_attribute, synthetic_vocabulary
from learnability.pairs.pairset import DUPLICATE
from learnability.pairs.tokenizer import WordTokenizer, split_words
from learnability.pairs.synthetic import object_sizes


def _garments(n: int, id_offset: int = 1000) -> ImageSet:
    """Stand-in garments: a filled square at full intensity on black, labels cycling 0..9."""
    x = torch.full((n, 1, 28, 28), -1.0)
    x[:, :, 2:26, 2:26] = 1.0
    return ImageSet(x, torch.arange(n) % 10, torch.arange(n) + id_offset, 10)


def _mentions(caption: str, obj: list[int]) -> bool:
    k, c, s, q = obj
    return (any(w in caption for w in CLASS_SYNONYMS[k]) and COLOURS[c] in caption
            and any(w in caption for w in SIZE_SYNONYMS[s]) and any(w in caption for w in POSITION_SYNONYMS[q]))


# --- rendering ------------------------------------------------------------------------------


def test_render_shapes_and_per_id_seeding() -> None:
    src = _garments(60)
    p = render_pairs(src, seed=3)
    assert p.images.shape == (60, 3, 40, 40) and p.images.dtype == torch.float32
    assert float(p.images.min()) >= -1.0 and float(p.images.max()) <= 1.0
    assert p.ids.dtype == torch.int64 and torch.equal(p.ids, src.ids)
    assert torch.equal(p.labels, src.y) and p.attributes.shape == (60, 1, 4)
    again = render_pairs(src, seed=3)
    assert torch.equal(again.images, p.images) and again.captions == p.captions
    other = render_pairs(src, seed=4)
    assert other.captions != p.captions and not torch.equal(other.attributes, p.attributes)
    # an example looks the same whatever else is in the set (single objects)
    part = render_pairs(src.subset(torch.tensor([7, 3, 41])), seed=3)
    assert torch.equal(part.images, p.images[[7, 3, 41]]) and part.captions == [p.captions[i] for i in (7, 3, 41)]
    # a different salt (the test split) draws differently for the same ids
    assert render_pairs(src, seed=3, salt=1).captions != p.captions
    assert 0.4 < float(id_uniform(0, torch.arange(10_000), 0).mean()) < 0.6


def test_pixels_match_the_stated_attributes() -> None:
    p = render_pairs(_garments(80), seed=1)
    small, large = object_sizes(40)
    rgb = torch.tensor(COLOUR_RGB)
    for img, (k, c, s, q), caption in zip(p.images, p.attributes[:, 0].tolist(), p.captions):
        assert _mentions(caption, [k, c, s, q]), caption
        on = ((img + 1) / 2).amax(0) > 0.05
        rows, cols = on.nonzero(as_tuple=True)
        assert rows.min() >= q // 2 * 20 and rows.max() < q // 2 * 20 + 20
        assert cols.min() >= q % 2 * 20 and cols.max() < q % 2 * 20 + 20
        side = int(rows.max() - rows.min()) + 1
        assert (side > small) == (s == 1), (side, s)
        colour = ((img + 1) / 2)[:, on].mean(1)
        assert int(((rgb / rgb.amax(1, keepdim=True)) - colour / colour.max()).norm(dim=1).argmin()) == c


def test_two_objects() -> None:
    p = render_pairs(_garments(200), two_objects=0.5, seed=0)
    assert p.attributes.shape == (200, 2, 4)
    second = p.attributes[:, 1, 0] >= 0
    assert 60 < int(second.sum()) < 140
    assert (p.attributes[~second, 1] == -1).all()
    assert (p.attributes[second, 0, 3] != p.attributes[second, 1, 3]).all()  # distinct quadrants
    assert torch.equal(p.labels, p.attributes[:, 0, 0])
    for caption, objs in zip(p.captions, p.attributes.tolist()):
        assert all(_mentions(caption, o) for o in objs if o[0] >= 0), caption
    quadrants = ((p.images[second] + 1) / 2).amax(1).unflatten(1, (2, 20)).unflatten(3, (2, 20)).amax((2, 4)) > 0.05
    assert int(quadrants.sum()) == 2 * int(second.sum())
    assert (render_pairs(_garments(50), two_objects=1.0).attributes[:, 1, 0] >= 0).all()


def test_render_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="canvas"):
        render_pairs(_garments(4), canvas=41)
    with pytest.raises(ValueError, match="two_objects"):
        render_pairs(_garments(4), two_objects=1.5)
    with pytest.raises(ValueError, match="at least 2"):
        render_pairs(_garments(1), two_objects=0.5)
    rgb = ImageSet(torch.zeros(2, 3, 28, 28), torch.zeros(2, dtype=torch.int64), torch.arange(2), 10)
    with pytest.raises(ValueError, match="grayscale"):
        render_pairs(rgb)


def test_class_prompts() -> None:
    prompts = class_prompts()
    assert len(prompts) == 10 and prompts[7] == "a photo of a sneaker" and prompts[9] == "a photo of an ankle boot"
    assert class_prompts(["cat", "owl"], "a drawing of a {}") == ["a drawing of a cat", "a drawing of an owl"]
    with pytest.raises(ValueError, match="template"):
        class_prompts(["cat"], "a photo")


# --- noise and hard negatives --------------------------------------------------------------


def test_noise_fractions_exact_and_recorded_per_id() -> None:
    clean = render_pairs(_garments(300), two_objects=0.3, seed=2)
    p = corrupt_pairs(clean, swapped=0.2, uninformative=0.1, wrong_attribute=0.15, seed=5)
    counts = torch.bincount(p.corruption.long(), minlength=4).tolist()
    assert counts == [300 - 60 - 30 - 45, 60, 30, 45] and p.corruption.dtype == torch.int8
    assert torch.equal(p.ids, clean.ids) and torch.equal(p.images, clean.images) and p.true_captions == clean.captions
    own = set(clean.captions)
    junk = {t.format(n=0)[:3] for t in UNINFORMATIVE_TEXTS}
    for caption, truth, code in zip(p.captions, p.true_captions, p.corruption.tolist()):
        if code == CLEAN:
            assert caption == truth
        elif code == SWAPPED:
            assert caption != truth and caption in own
        elif code == UNINFORMATIVE:
            assert caption[:3] in junk
        else:
            assert code == WRONG_ATTRIBUTE and caption != truth
    again = corrupt_pairs(clean, swapped=0.2, uninformative=0.1, wrong_attribute=0.15, seed=5)
    assert again.captions == p.captions and torch.equal(again.corruption, p.corruption)
    assert corrupt_pairs(clean, swapped=0.2, seed=6).captions != corrupt_pairs(clean, swapped=0.2, seed=5).captions
    assert set(KIND_NAMES) == {0, 1, 2, 3, 4}


def test_duplicates_copy_clean_pairs_whole_and_keep_their_own_ids() -> None:
    clean = render_pairs(_garments(400), two_objects=0.3, seed=2)
    p = corrupt_pairs(clean, swapped=0.1, duplicates=0.2, seed=3)
    dup = (p.corruption == DUPLICATE).nonzero().flatten()
    assert len(dup) == 80 and torch.equal(p.ids, clean.ids)
    assert not torch.equal(clean.images, p.images) and torch.equal(clean.images[p.corruption == CLEAN], p.images[p.corruption == CLEAN])
    originals = set()
    for i in dup.tolist():  # each copy is a whole clean pair of the pool: image, caption, labels, attributes, style
        j = next(j for j in range(400) if p.corruption[j] == CLEAN and p.style[j] == p.style[i])  # styles are per-id hashes
        assert p.captions[i] == p.captions[j] == p.true_captions[i] and p.labels[i] == p.labels[j]
        assert torch.equal(p.attributes[i], p.attributes[j]) and torch.equal(p.images[i], p.images[j])
        originals.add(j)
    assert 1 <= len(originals) <= 80 // 4  # a few originals, each copied several times
    with pytest.raises(ValueError, match="below 1"):
        corrupt_pairs(clean, swapped=0.5, duplicates=0.5)


def test_synthetic_vocabulary_holds_every_word_and_ignores_the_noise() -> None:
    clean = render_pairs(_garments(300), two_objects=0.5, seed=1)
    noisy = corrupt_pairs(clean, swapped=0.2, uninformative=0.2, wrong_attribute=0.2, duplicates=0.1, seed=4)
    vocab = synthetic_vocabulary()
    assert vocab[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"] and vocab[4:] == sorted(vocab[4:])
    words = {w for text in [*clean.captions, *hard_negatives(clean), *class_prompts()] for w in split_words(text)}
    assert words <= set(vocab)
    junk = {w for text in noisy.captions for w in split_words(text)} - set(vocab)
    assert junk and all(any(ch.isdigit() for ch in w) for w in junk)  # only junk file numbers map to UNK
    assert WordTokenizer(vocab).encode(["a photo of a red tee"]).tolist() == \
        WordTokenizer(synthetic_vocabulary()).encode(["a photo of a red tee"]).tolist()


def test_change_one_attribute_and_hard_negatives() -> None:
    clean = render_pairs(_garments(200), two_objects=0.5, seed=0)
    changed = change_one_attribute(clean.attributes, torch.Generator().manual_seed(0))
    assert ((changed != clean.attributes).flatten(1).sum(1) == 1).all()
    two = changed[:, 1, 0] >= 0
    assert (changed[two, 0, 3] != changed[two, 1, 3]).all() and (changed[~two, 1] == -1).all()
    negs = hard_negatives(clean, seed=1)
    assert negs == hard_negatives(clean, seed=1) and all(n != c for n, c in zip(negs, clean.captions))
    assert describe(clean.attributes, clean.style) == clean.captions
    user = PairSet(clean.images[:3], clean.captions[:3], clean.ids[:3])
    with pytest.raises(ValueError, match="synthetic"):
        hard_negatives(user)
    with pytest.raises(ValueError, match="synthetic"):
        corrupt_pairs(user, wrong_attribute=0.4)
    assert corrupt_pairs(user, swapped=0.4, uninformative=0.3).corruption.tolist().count(SWAPPED) == 1


def test_noise_rejects_bad_fractions() -> None:
    p = render_pairs(_garments(10))
    with pytest.raises(ValueError, match="swapped"):
        corrupt_pairs(p, swapped=1.0)
    with pytest.raises(ValueError, match="below 1"):
        corrupt_pairs(p, swapped=0.5, uninformative=0.3, wrong_attribute=0.2)


# --- splits ----------------------------------------------------------------------------------


def test_splits_clean_reference_and_test() -> None:
    s = make_pair_splits(_garments(200, 0), _garments(40, 0), reference_size=50, pool_size=120, test_size=30,
                         swapped=0.3, uninformative=0.1, two_objects=0.3, seed=1)
    assert (len(s.pool), len(s.reference), len(s.test)) == (120, 50, 30)
    assert set(s.pool.ids.tolist()).isdisjoint(s.reference.ids.tolist())
    for clean in (s.reference, s.test):
        assert (clean.corruption == CLEAN).all() and clean.captions == clean.true_captions
    assert int((s.pool.corruption == SWAPPED).sum()) == 36 and int((s.pool.corruption == UNINFORMATIVE).sum()) == 12
    t = make_pair_splits(_garments(200, 0), _garments(40, 0), reference_size=50, pool_size=120, test_size=30,
                         swapped=0.3, uninformative=0.1, two_objects=0.3, seed=1)
    assert t.pool.captions == s.pool.captions and torch.equal(t.pool.ids, s.pool.ids)
    assert torch.equal(t.test.images, s.test.images)
    with pytest.raises(ValueError, match="test_size"):
        make_pair_splits(_garments(20), _garments(5), reference_size=5, test_size=-1)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_pairs_on_a_subset() -> None:
    train, test = load_source("fashion_mnist")
    s = make_pair_splits(train.subset(torch.arange(200)), test.subset(torch.arange(50)), reference_size=50,
                         swapped=0.3, seed=0)
    assert s.pool.images.shape == (150, 3, 40, 40) and s.test.images.shape == (50, 3, 40, 40)
    assert torch.equal(s.test.labels, test.y[:50]) and s.pool.class_names[9] == "ankle boot"
    for caption, obj, code in zip(s.pool.captions, s.pool.attributes[:, 0].tolist(), s.pool.corruption.tolist()):
        if code == CLEAN:
            assert _mentions(caption, obj), caption


# --- PairSet ---------------------------------------------------------------------------------


def test_pairset_checks_subset_and_fingerprint() -> None:
    p = render_pairs(_garments(6))
    sub = p.subset(torch.tensor([4, 1]))
    assert sub.captions == [p.captions[4], p.captions[1]] and torch.equal(sub.ids, p.ids[[4, 1]])
    assert torch.equal(sub.style, p.style[[4, 1]]) and sub.class_names == p.class_names
    assert p.subset(slice(0, 3)).captions == p.captions[:3]
    fp = p.fingerprint()
    assert fp == render_pairs(_garments(6)).fingerprint()
    changed = PairSet(p.images, ["x"] + p.captions[1:], p.ids)
    assert changed.fingerprint() != fp
    with pytest.raises(ValueError, match="captions"):
        PairSet(p.images, p.captions[:5], p.ids)
    with pytest.raises(ValueError, match="int64"):
        PairSet(p.images, p.captions, p.ids.int())
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        PairSet(p.images[:, :1], p.captions, p.ids)
    with pytest.raises(ValueError, match="float32"):
        PairSet(p.images.double(), p.captions, p.ids)
