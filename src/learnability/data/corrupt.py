"""Web-like corruption of the training pool, seeded and recorded per example id."""

from __future__ import annotations

import torch

from learnability.data.bijection import Bijection, keyed
from learnability.data.columns import LazyColumn, NoiseCodes, NoisyLabels, TensorColumn
from learnability.data.imageset import ImageSet

CLEAN, LABEL_NOISE, DUPLICATE, JUNK = 0, 1, 2, 3
KIND_NAMES = {CLEAN: "clean", LABEL_NOISE: "label_noise", DUPLICATE: "duplicate", JUNK: "junk"}


def corrupt(pool: ImageSet, *, label_noise: float = 0.0, duplicates: float = 0.0, junk: float = 0.0, seed: int = 0,
            order: str = "permutation") -> ImageSet:
    """Return a corrupted copy of `pool`; disjoint fractions of its examples become:

    - junk: the image replaced by uniform noise or a blank (half each), the label drawn at random;
    - duplicate: a near-copy (Gaussian noise, std 0.05) of another, clean example, with its label;
    - label_noise: the label replaced by a different class drawn uniformly (symmetric noise), so
      exactly that fraction of labels is wrong.
    Ids are kept; `corruption` records the kind per example.

    `order="bijection"` (lazy pools, O(1) memory) supports label noise only: the noisy positions
    are those a seeded bijection maps below the count, and each one's new label is drawn from a
    hash of its position; labels and codes stay lazy columns, computed when a batch reads them.
    """
    for name, v in (("label_noise", label_noise), ("duplicates", duplicates), ("junk", junk)):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"data.{name} must be in [0, 1); got {v}")
    if label_noise + duplicates + junk >= 1.0:
        raise ValueError("data.label_noise + data.duplicates + data.junk must be below 1 (they corrupt disjoint examples)")
    n, k = len(pool), pool.num_classes
    if order == "bijection":
        return _lazy_label_noise(pool, label_noise, duplicates, junk, seed)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    n_junk, n_dup, n_noise = round(junk * n), round(duplicates * n), round(label_noise * n)
    junk_i = order[:n_junk]
    dup_i = order[n_junk:n_junk + n_dup]
    noise_i = order[n_junk + n_dup:n_junk + n_dup + n_noise]
    clean_i = order[n_junk + n_dup + n_noise:]

    if pool.lazy and (n_junk or n_dup):
        raise ValueError("data.duplicates and data.junk rewrite images, which needs an in-memory source "
                         "(fashion_mnist, digits, npz, or a folder / npy source with --data.in_memory=true)")
    x = pool.x if pool.lazy else pool.x.clone()  # lazy images are read-only: label noise leaves them as they are
    if isinstance(pool.y, LazyColumn):  # the permutation order holds per-example tensors anyway
        pool = ImageSet(pool.x, *(_tensor(c) for c in (pool.y, pool.ids)), k, *(_tensor(c) for c in (pool.corruption, pool.true_y)))
    y, code = pool.y.clone(), pool.corruption.clone()
    if n_junk:
        blank = torch.rand(n_junk, generator=g) < 0.5
        noise = torch.rand((n_junk, *pool.shape), generator=g) * 2 - 1
        x[junk_i] = torch.where(blank.view(-1, 1, 1, 1), torch.full_like(noise, -1.0), noise)
        y[junk_i] = torch.randint(0, k, (n_junk,), generator=g)
        code[junk_i] = JUNK
    if n_dup:
        if not len(clean_i):
            raise ValueError("data.duplicates needs some clean examples to copy")
        src = clean_i[torch.randint(0, len(clean_i), (n_dup,), generator=g)]
        x[dup_i] = (pool.x[src] + 0.05 * torch.randn((n_dup, *pool.shape), generator=g)).clamp(-1, 1)
        y[dup_i] = pool.y[src]
        code[dup_i] = DUPLICATE
    if n_noise:
        if k < 2:
            raise ValueError("label noise needs at least 2 classes")
        y[noise_i] = (pool.y[noise_i] + torch.randint(1, k, (n_noise,), generator=g)) % k
        code[noise_i] = LABEL_NOISE
    true_y = pool.true_y.clone()
    true_y[dup_i] = y[dup_i]
    return ImageSet(x, y, pool.ids.clone(), k, code, true_y)


def _lazy_label_noise(pool: ImageSet, label_noise: float, duplicates: float, junk: float, seed: int) -> ImageSet:
    if duplicates or junk:
        raise ValueError("data.duplicates and data.junk rewrite images, which the lazy data.order=bijection cannot; "
                         "use --data.order=permutation (with --data.in_memory=true for a folder / npy source)")
    n, count = len(pool), round(label_noise * len(pool))
    if not count or not n:
        return pool
    if pool.num_classes < 2:
        raise ValueError("label noise needs at least 2 classes")
    sigma = Bijection(n, keyed(seed, "label noise"))
    y = LazyColumn(NoisyLabels(_lazy(pool.y), sigma, count, pool.num_classes, keyed(seed, "noisy labels")))
    code = LazyColumn(NoiseCodes(sigma, count, LABEL_NOISE))
    if not isinstance(pool.y, LazyColumn):  # an in-memory pool keeps tensors
        y, code = y.materialise(), code.materialise()
    return ImageSet(pool.x, y, pool.ids, pool.num_classes, code, pool.true_y)


def _tensor(column) -> torch.Tensor:
    return column.materialise() if isinstance(column, LazyColumn) else column


def _lazy(column):
    """A tensor column as a lazy one over itself (so `NoisyLabels` reads either the same way)."""
    if isinstance(column, LazyColumn):
        return column
    return LazyColumn(TensorColumn(column))
