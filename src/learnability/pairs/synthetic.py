"""Built-in compositional image-text pairs from Fashion-MNIST (or scikit-learn's 8x8 digits).

Each 28x28 garment (or digit: `OBJECT_WORDS` names each source's classes) is coloured (`COLOURS`),
scaled (small: 0.3 of the canvas side, large: half) and placed in one quadrant of a black `canvas` x
`canvas` RGB image, with a random offset inside the quadrant when small. With `two_objects` > 0 that
fraction of images holds a second garment (an image drawn from the same split) in another quadrant,
and the caption describes both. Captions come from templates and synonyms (`pairs.captions`). Every
draw is a hash of (seed, id), so an example looks the same whatever else is in the set, except the
choice of second garment, which indexes the split it is rendered from.

With `renderings` K > 1 each garment is rendered K times, each rendering with its own colour, size,
position and caption-style draws and its own stable id `garment_id * K + k` (k < K): K distinct
pairs of one garment, so a filter that drops some pairs rarely drops a garment outright.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from learnability.data.imageset import ImageSet
from learnability.data.lazy import ArrayImages, LazyImages
from learnability.data.sources import load_source
from learnability.data.splits import make_splits
from learnability.pairs.captions import (CLASS_SYNONYMS, COLOUR_RGB, COLOURS, OBJECT_WORDS, POSITIONS, SIZES, describe,
                                         id_hash, id_uniform)
from learnability.pairs.noise import corrupt_pairs
from learnability.pairs.pairset import PairSet, PairSplits

_CHUNK = 4096
# id_hash streams: one per independent draw
_COLOUR, _SIZE, _POS, _JY, _JX, _TWO, _PARTNER, _COLOUR2, _SIZE2, _POS2, _JY2, _JX2, _STYLE = range(13)


def object_sizes(canvas: int) -> tuple[int, int]:
    """Side in pixels of a small and a large object on a `canvas`-pixel canvas."""
    return max(4, round(0.3 * canvas)), canvas // 2


def _draw(seed: int, ids: np.ndarray, streams: tuple[int, ...], counts: tuple[int, ...]) -> list[np.ndarray]:
    return [(id_uniform(seed, ids, s) * k).astype(np.int64) for s, k in zip(streams, counts)]


def rendering_ids(ids: np.ndarray, renderings: int, rendered: int) -> np.ndarray:
    """`[N * rendered]` int64 ids `id * renderings + k` for k < `rendered`, garment-major: unique
    across garments and renderings, and the same for a garment whatever else is in the set."""
    if renderings < 1 or not 1 <= rendered <= renderings:
        raise ValueError(f"renderings must be >= 1 and rendered in [1, renderings]; got {renderings} and {rendered}")
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) and renderings > 1 and (int(ids.max()) > (2 ** 63 - 1) // renderings - 1
                                        or int(ids.min()) < -(2 ** 63) // renderings):
        raise ValueError(f"garment ids up to {int(np.abs(ids).max())} times renderings={renderings} overflow int64 ids")
    return (ids[:, None] * renderings + np.arange(rendered, dtype=np.int64)[None]).reshape(-1)


def render_pairs(source: ImageSet, *, canvas: int = 40, two_objects: float = 0.0, seed: int = 0, salt: int = 0,
                 renderings: int = 1, rendered: int | None = None, compact: bool = False,
                 synonyms: tuple[tuple[str, ...], ...] = CLASS_SYNONYMS) -> PairSet:
    """Render `source` (grayscale `[N, 1, h, w]` objects in [-1, 1], class k named by `synonyms[k]`,
    default Fashion-MNIST's garments) as
    clean image-text pairs: images `[M, 3, canvas, canvas]`, attributes `[M, O, 4]` with O = 2 when
    `two_objects` > 0 (else 1), M = N * `rendered`. `salt` separates splits whose ids overlap (train
    0, test 1). Each garment gets the first `rendered` (default all) of its `renderings` renderings,
    rows garment-major, ids `rendering_ids` (the garment's own ids when K = 1). `compact`: hold the
    images as uint8 (`LazyImages` over `ArrayImages`, a quarter of the memory, values rounded to
    steps of 2/255), read as float32 in [-1, 1] per batch."""
    if canvas < 16 or canvas % 2:
        raise ValueError(f"the canvas side must be an even number of pixels >= 16; got {canvas}")
    if not 0.0 <= two_objects <= 1.0:
        raise ValueError(f"two_objects is the fraction of images with a second object, in [0, 1]; got {two_objects}")
    if source.x.shape[1] != 1:
        raise ValueError(f"render_pairs needs grayscale garments [N, 1, H, W]; got {tuple(source.x.shape)}")
    if source.num_classes > len(synonyms):
        raise ValueError(f"the source has {source.num_classes} classes but its captions name {len(synonyms)}")
    n_garments, rendered = len(source), renderings if rendered is None else rendered
    if two_objects > 0 and n_garments < 2:
        raise ValueError("two_objects needs at least 2 source images to pair up")
    ids = rendering_ids(source.ids.numpy(), renderings, rendered)
    garment = np.repeat(np.arange(n_garments), rendered)  # [M] the source row each rendering shows
    n = len(ids)
    key = seed + salt * 0x9E3779B97F4A7C15  # id_hash reduces it mod 2**64
    colour, size, pos = _draw(key, ids, (_COLOUR, _SIZE, _POS), (len(COLOURS), len(SIZES), len(POSITIONS)))
    two = id_uniform(key, ids, _TWO) < two_objects
    partner = (garment + 1 + (id_hash(key, ids, _PARTNER) % np.uint64(max(n_garments - 1, 1))).astype(np.int64)) % n_garments
    colour2, size2, shift = _draw(key, ids, (_COLOUR2, _SIZE2, _POS2), (len(COLOURS), len(SIZES), len(POSITIONS) - 1))
    pos2 = (pos + 1 + shift) % len(POSITIONS)
    objects = [(garment, np.ones(n, bool), colour, size, pos, (_JY, _JX))]
    if two_objects > 0:
        objects.append((partner, two, colour2, size2, pos2, (_JY2, _JX2)))
    labels = source.y.numpy()
    attributes = np.full((n, len(objects), 4), -1, dtype=np.int64)
    out = (np.empty((n, 3, canvas, canvas), dtype=np.uint8) if compact
           else torch.empty((n, 3, canvas, canvas), dtype=torch.float32))
    small, large = object_sizes(canvas)
    half = canvas // 2
    rgb = torch.tensor(COLOUR_RGB, dtype=torch.float32)
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        img = torch.zeros((hi - lo, canvas, canvas, 3))
        for slot, (src, present, col, sz, q, (sy, sx)) in enumerate(objects):
            for s_code, side in enumerate((small, large)):
                rows = np.nonzero(present[lo:hi] & (sz[lo:hi] == s_code))[0]
                if not len(rows):
                    continue
                at = rows + lo
                attributes[at, slot] = np.stack([labels[src[at]], col[at], sz[at], q[at]], 1)
                obj = F.interpolate((source.x[torch.from_numpy(src[at])] + 1) / 2, size=(side, side), mode="bilinear",
                                    antialias=True, align_corners=False).clamp_(0, 1)[:, 0]
                jy = (id_uniform(key, ids[at], sy) * (half - side + 1)).astype(np.int64)
                jx = (id_uniform(key, ids[at], sx) * (half - side + 1)).astype(np.int64)
                corner = torch.from_numpy(rows * canvas * canvas + (q[at] // 2 * half + jy) * canvas + q[at] % 2 * half + jx)
                flat = (corner[:, None, None] + torch.arange(side)[:, None] * canvas + torch.arange(side)).flatten()
                # objects sit in distinct quadrants, so they never overlap: a plain copy places them
                img.view(-1, 3).index_copy_(0, flat, (obj[..., None] * rgb[torch.from_numpy(col[at])][:, None, None]).view(-1, 3))
        chw = img.permute(0, 3, 1, 2)
        if compact:
            out[lo:hi] = chw.mul(255).round_().clamp_(0, 255).to(torch.uint8).numpy()
        else:
            out[lo:hi] = chw.mul_(2).sub_(1)
    attributes_t = torch.from_numpy(attributes)
    style = torch.from_numpy((id_hash(key, ids, _STYLE) >> np.uint64(1)).astype(np.int64))
    captions = describe(attributes_t, style, synonyms)
    images = LazyImages(ArrayImages(out)) if compact else out
    return PairSet(images, captions, torch.from_numpy(ids), attributes_t[:, 0, 0].clone(), attributes_t,
                   style=style, class_names=tuple(s[0] for s in synonyms[:source.num_classes]))


def make_pair_splits(train: ImageSet, test: ImageSet, *, reference_size: int, pool_size: int = 0, test_size: int = 0,
                     val_size: int = 0, canvas: int = 40, two_objects: float = 0.0, swapped: float = 0.0, uninformative: float = 0.0,
                     wrong_attribute: float = 0.0, duplicates: float = 0.0, renderings: int = 1, seed: int = 0,
                     synonyms: tuple[tuple[str, ...], ...] = CLASS_SYNONYMS) -> PairSplits:
    """Split garments `train` into a pool and a curated reference set (`data.make_splits`), render
    all three splits, and corrupt the pool only (seed + 1): `swapped` captions taken from another
    example, `uninformative` ones replaced by junk alt-text, `wrong_attribute` ones with exactly
    one attribute wrong, `duplicates` exact copies of other pool pairs. Reference and test stay clean. `test_size` > 0 keeps the first n of `test`.
    `val_size` > 0 renders `val_size` held-out training images as the test pairs instead (a clean
    validation split for tuning; `data.make_splits`).

    `renderings` K: the pool holds K renderings of each of its garments (K x pool_size pairs, held
    as uint8 when K > 1), corrupted per pair after rendering. The reference keeps one pair per
    garment (rendering 0, ids garment * K, so disjoint from the pool's): it stands for a curated set
    of a given size and cost, which K must not change. The test set is rendered as with K = 1, so
    runs with different K are scored on the very same test pairs."""
    if test_size < 0:
        raise ValueError(f"test_size must be >= 0 (0 = the whole test split); got {test_size}")
    if renderings < 1:
        raise ValueError(f"renderings must be >= 1 (renderings of each pool garment); got {renderings}")
    splits = make_splits(train, test, reference_size=reference_size, pool_size=pool_size, seed=seed, val_size=val_size)
    test = splits.test
    test_src = test.subset(torch.arange(min(test_size, len(test)))) if test_size else test
    opts = dict(canvas=canvas, two_objects=two_objects, seed=seed, synonyms=synonyms)
    pool = render_pairs(splits.pool, **opts, salt=0, renderings=renderings, compact=renderings > 1)
    pool = corrupt_pairs(pool, swapped=swapped, uninformative=uninformative, wrong_attribute=wrong_attribute,
                         duplicates=duplicates, seed=seed + 1)
    return PairSplits(pool=pool, reference=render_pairs(splits.reference, **opts, salt=0, renderings=renderings, rendered=1),
                      test=render_pairs(test_src, **opts, salt=1))


def synthetic_pairs(*, source: str = "fashion_mnist", path: str = "", reference_size: int = 10000, pool_size: int = 0,
                    test_size: int = 0, val_size: int = 0, test_fraction: float = 0.2, canvas: int = 40, two_objects: float = 0.0,
                    swapped: float = 0.3, uninformative: float = 0.0, wrong_attribute: float = 0.0,
                    duplicates: float = 0.0, renderings: int = 1, seed: int = 0) -> PairSplits:
    """Compositional pairs of a built-in `source` (`OBJECT_WORDS`). fashion_mnist: the 60k training
    garments split into pool and reference, the 10k test garments as the clean test set; `path`:
    folder of the idx .gz files ("" = Debian's `dataset-fashion-mnist`). digits: scikit-learn's 1797
    8x8 digits, `test_fraction` of them held out as the test set (split by `seed`), the rest split
    into pool and reference. Memory: 19.2 kB per 40x40 image (Fashion-MNIST's 60k + 10k: about
    1.3 GB); with `renderings` K > 1 the pool's K x pool_size images are uint8, 4.8 kB each."""
    if source not in OBJECT_WORDS:
        raise ValueError(f"built-in pairs are rendered from {' or '.join(OBJECT_WORDS)}; got data.source={source!r} "
                         "(bring other data as pairs.source=jsonl or shards)")
    train, test = load_source(source, path=path, test_fraction=test_fraction, seed=seed)
    if reference_size + val_size >= len(train):
        held = f"data.reference_size={reference_size}" + (f" plus data.val_size={val_size}" if val_size else "")
        raise ValueError(f"{held} leaves no pool of the {len(train)} training images of {source}; "
                         f"lower {'one of them' if val_size else 'it'}")
    return make_pair_splits(train, test, reference_size=reference_size, pool_size=pool_size, test_size=test_size, val_size=val_size,
                            canvas=canvas, two_objects=two_objects, swapped=swapped, uninformative=uninformative,
                            wrong_attribute=wrong_attribute, duplicates=duplicates, renderings=renderings, seed=seed,
                            synonyms=OBJECT_WORDS[source])
