"""Split a source into a training pool, a clean curated reference set and the clean test set."""

from __future__ import annotations

import dataclasses

import torch

from learnability.data.bijection import Bijection, PermutedRange, keyed
from learnability.data.imageset import ImageSet


@dataclasses.dataclass
class Splits:
    pool: ImageSet
    reference: ImageSet
    test: ImageSet


def make_splits(train: ImageSet, test: ImageSet, *, reference_size: int, pool_size: int = 0, seed: int = 0,
                order: str = "permutation", val_size: int = 0) -> Splits:
    """Hold out `reference_size` examples of `train` as the curated set and take the pool from the
    rest (`pool_size` of them, 0 for all). The split is seeded; ids are kept. `order="bijection"`
    takes both as ranges of a seeded bijection (no per-example arrays: a lazy pool stays O(1))
    instead of slices of `torch.randperm`.

    `val_size` > 0 holds out the last `val_size` examples of the same shuffle as a validation set,
    returned in place of `test`, so that tuning never reads the test split; the reference and the
    pool's order are those of `val_size` = 0 (an explicit `pool_size` keeps its size too)."""
    n = len(train)
    if reference_size < 0 or pool_size < 0 or val_size < 0:
        raise ValueError("data.reference_size, data.pool_size and data.val_size must not be negative")
    pool_n = pool_size or n - reference_size - val_size
    if reference_size + pool_n + val_size > n or pool_n < 1:
        held = f" plus data.val_size={val_size}" if val_size else ""
        raise ValueError(
            f"data.reference_size={reference_size} plus data.pool_size={pool_size}{held} needs more than the "
            f"{n} training examples available; lower one of them")
    if test.shape != train.shape:
        raise ValueError(f"test images are {test.shape} but training images are {train.shape}")
    if order == "bijection":
        shuffled = PermutedRange(Bijection(n, keyed(seed, "reference split")))
        return Splits(pool=train.subset(shuffled[reference_size:reference_size + pool_n]),
                      reference=train.subset(shuffled[:reference_size]),
                      test=train.subset(shuffled[n - val_size:n]) if val_size else test)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return Splits(pool=train.subset(perm[reference_size:reference_size + pool_n]),
                  reference=train.subset(perm[:reference_size]), test=train.subset(perm[n - val_size:]) if val_size else test)
