"""Web-like corruption of the training pool, seeded and recorded per example id."""

from __future__ import annotations

import torch

from learnability.data.imageset import ImageSet

CLEAN, LABEL_NOISE, DUPLICATE, JUNK = 0, 1, 2, 3
KIND_NAMES = {CLEAN: "clean", LABEL_NOISE: "label_noise", DUPLICATE: "duplicate", JUNK: "junk"}


def corrupt(pool: ImageSet, *, label_noise: float = 0.0, duplicates: float = 0.0, junk: float = 0.0, seed: int = 0) -> ImageSet:
    """Return a corrupted copy of `pool`; disjoint fractions of its examples become:

    - junk: the image replaced by uniform noise or a blank (half each), the label drawn at random;
    - duplicate: a near-copy (Gaussian noise, std 0.05) of another, clean example, with its label;
    - label_noise: the label replaced by a different class drawn uniformly (symmetric noise), so
      exactly that fraction of labels is wrong.
    Ids are kept; `corruption` records the kind per example.
    """
    for name, v in (("label_noise", label_noise), ("duplicates", duplicates), ("junk", junk)):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"data.{name} must be in [0, 1); got {v}")
    if label_noise + duplicates + junk >= 1.0:
        raise ValueError("data.label_noise + data.duplicates + data.junk must be below 1 (they corrupt disjoint examples)")
    n, k = len(pool), pool.num_classes
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
