"""`pairs.renderings`: each pool garment rendered K times, with its own draws and its own id."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learnability import config as C
from learnability.data.imageset import ImageSet
from learnability.data.lazy import LazyImages
from learnability.pairs import CLEAN, DUPLICATE, make_pair_splits, render_pairs
from learnability.pairs.synthetic import rendering_ids


def _garments(n: int, id_offset: int = 0, seed: int = 0) -> ImageSet:
    """Random grayscale textures, one per garment, so renderings of different garments differ."""
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.rand((n, 1, 28, 28), generator=g) * 2 - 1, torch.arange(n) % 10, torch.arange(n) + id_offset, 10)


def test_renderings_have_distinct_stable_ids_garment_major() -> None:
    src = _garments(50, id_offset=1000)
    p = render_pairs(src, renderings=4, seed=3)
    assert len(p) == 200 and p.images.shape == (200, 3, 40, 40)
    assert torch.equal(p.ids, (src.ids[:, None] * 4 + torch.arange(4)).flatten())
    assert len(set(p.ids.tolist())) == 200
    assert torch.equal(p.labels, src.y.repeat_interleave(4))  # every rendering shows its garment's class
    # one rendering does not depend on the others: the same id renders the same pair alone
    alone = render_pairs(src.subset(torch.tensor([7])), renderings=4, seed=3)
    assert torch.equal(alone.images, p.images[28:32]) and alone.captions == p.captions[28:32]
    assert torch.equal(render_pairs(src, renderings=1, seed=3).ids, src.ids)  # K = 1: the garments' own ids


def test_renderings_of_a_garment_share_it_but_differ_in_attributes_and_caption() -> None:
    p = render_pairs(_garments(100), renderings=4, seed=1)
    attrs = p.attributes[:, 0, 1:].reshape(100, 4, 3)  # colour, size, position of each rendering
    distinct = [len({tuple(r) for r in g.tolist()}) for g in attrs]
    assert np.mean([d == 4 for d in distinct]) > 0.8 and min(distinct) >= 2, distinct  # 48 combinations
    captions = np.array(p.captions).reshape(100, 4)
    assert all(len(set(row)) == 4 for row in captions)
    assert len(set(p.captions)) > 380
    # the garment is the same: turning each rendering back to grayscale and undoing its colour and
    # placement is not easy, so check the renderer drew the garment row: class and a
    # garment-specific pixel sum at equal size and colour
    big = render_pairs(_garments(100), renderings=8, seed=1)
    a = big.attributes[:, 0]
    same = [(i, j) for i in range(0, 800, 8) for j in range(i + 1, i + 8)
            if a[i, 1] == a[j, 1] and a[i, 2] == a[j, 2]]
    assert len(same) > 20
    mass = ((big.images + 1) / 2).sum((1, 2, 3))
    assert all(abs(float(mass[i] - mass[j])) < 1e-3 * float(mass[i]) for i, j in same)


def test_renderings_are_deterministic_and_seeded() -> None:
    src = _garments(30)
    p, q = render_pairs(src, renderings=3, seed=5), render_pairs(src, renderings=3, seed=5)
    assert torch.equal(p.images, q.images) and p.captions == q.captions and torch.equal(p.ids, q.ids)
    assert render_pairs(src, renderings=3, seed=6).captions != p.captions
    first = render_pairs(src, renderings=3, rendered=1, seed=5)  # rendering 0 of each garment
    assert torch.equal(first.ids, p.ids[::3]) and first.captions == p.captions[::3]
    assert torch.equal(first.images, p.images[::3])


def test_compact_images_are_uint8_backed_and_within_a_step() -> None:
    src = _garments(40)
    full = render_pairs(src, renderings=2, seed=2)
    small = render_pairs(src, renderings=2, seed=2, compact=True)
    assert isinstance(small.images, LazyImages) and small.images.store.array.dtype == np.uint8
    assert small.images.shape == full.images.shape and small.captions == full.captions
    assert float((small.images[:] - full.images).abs().max()) <= 1 / 255 + 1e-6
    assert torch.equal(small.subset(torch.tensor([5, 1])).images[:], small.images[torch.tensor([5, 1])])


def test_rendering_ids_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="renderings"):
        rendering_ids(np.arange(3), 0, 1)
    with pytest.raises(ValueError, match="rendered"):
        rendering_ids(np.arange(3), 2, 3)
    with pytest.raises(ValueError, match="overflow"):
        rendering_ids(np.array([2 ** 62]), 4, 4)
    with pytest.raises(ValueError, match="renderings"):
        make_pair_splits(_garments(20), _garments(5), reference_size=5, renderings=0)


def _splits(renderings: int):
    return make_pair_splits(_garments(500), _garments(60, seed=1), reference_size=100, pool_size=400, test_size=50,
                            swapped=0.2, uninformative=0.1, wrong_attribute=0.1, duplicates=0.1, renderings=renderings,
                            seed=4)


def test_pool_renderings_noise_per_pair_and_the_oracle_keeps_the_garments() -> None:
    one, four = _splits(1), _splits(4)
    pool = four.pool
    assert len(pool) == 1600 and len(set(pool.ids.tolist())) == 1600 and isinstance(pool.images, LazyImages)
    assert set((pool.ids // 4).tolist()) == set(one.pool.ids.tolist())  # the same 400 garments, 4 times each
    assert int((pool.corruption == CLEAN).sum()) == 800  # noise per pair: exactly half of 1600 corrupted
    # reference: one clean pair per garment, ids garment * 4 (disjoint from the pool's); test as with K = 1
    assert len(four.reference) == 100 and (four.reference.ids % 4 == 0).all()
    assert set(four.reference.ids.tolist()).isdisjoint(pool.ids.tolist())
    assert torch.equal(four.test.images, one.test.images) and four.test.captions == one.test.captions
    # duplicates on uint8 images: each copy shows its original's image and caption
    dup = (pool.corruption == DUPLICATE).nonzero()[:, 0]
    assert len(dup) == 160
    imgs = pool.images[dup]
    for row, i in zip(imgs, dup.tolist()):
        match = [j for j in range(len(pool)) if j != i and pool.captions[j] == pool.captions[i]
                 and pool.corruption[j] == CLEAN]
        assert match and any(torch.equal(row, pool.images[j]) for j in match)
    # the oracle (clean pairs only) keeps about 1 - 0.5**4 of the garments, not half of them
    def kept(s, k):
        return len(set((s.pool.ids[s.pool.corruption == CLEAN] // k).tolist())) / 400
    assert kept(one, 1) == 0.5
    assert kept(four, 4) > 0.88


def test_config_validates_renderings() -> None:
    base = C.RunConfig()
    for bad in (["--pairs.renderings=0"], ["--pairs.renderings=2", "--pairs.source=jsonl"]):
        with pytest.raises(C.ConfigError, match=r"pairs\.renderings"):
            C.validate(C.apply_overrides(base, ["--task=clip", *bad]))
    with pytest.raises(C.ConfigError, match=r"pairs\.renderings"):
        C.apply_overrides(base, ["--task=clip", "--pairs.renderings=two"])
    assert C.apply_overrides(base, ["--task=clip", "--pairs.renderings=4"]).pairs.renderings == 4
