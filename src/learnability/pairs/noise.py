"""Web-like caption noise for a pair pool, seeded and recorded per example id; hard negatives."""

from __future__ import annotations

import torch

from learnability.pairs.captions import FIELD_SIZES, describe
from learnability.pairs.pairset import SWAPPED, UNINFORMATIVE, WRONG_ATTRIBUTE, PairSet

UNINFORMATIVE_TEXTS = ("image", "photo.jpg", "click here", "untitled", "IMG_{n:04d}.JPG", "thumbnail", "download",
                       "view full size", "no description available", "DSC{n:05d}.jpg", "product image", "img")
_REDRAWS = 20


def _needs_synthetic(pairs: PairSet, what: str) -> None:
    if pairs.attributes is None or pairs.style is None:
        raise ValueError(f"{what} needs a synthetic PairSet (with attributes and style); a user's pairs have neither")


def change_one_attribute(attributes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A copy of `attributes` `[M, O, 4]` with exactly one attribute of one present object per row
    changed to a different value. A new position avoids every object's position, so the caption
    never puts two objects in one quadrant."""
    out = attributes.clone()
    u = torch.rand((len(out), 3), generator=generator).tolist()
    for row, (u_obj, u_field, u_val) in zip(out, u):
        present = [j for j in range(len(row)) if row[j, 0] >= 0]
        if not present:
            raise ValueError("an example has no object to change; attributes rows must not all be -1")
        j, field = present[int(u_obj * len(present))], int(u_field * 4)
        taken = {int(v) for v in row[present, 3]} if field == 3 else {int(row[j, field])}
        choices = [v for v in range(FIELD_SIZES[field]) if v not in taken]
        row[j, field] = choices[int(u_val * len(choices))]
    return out


def hard_negatives(pairs: PairSet, seed: int = 0) -> list[str]:
    """For every example, its clean caption re-rendered with exactly one attribute wrong (same
    template and synonyms), for compositional evaluation: does a model prefer the true caption?"""
    _needs_synthetic(pairs, "hard_negatives")
    return describe(change_one_attribute(pairs.attributes, torch.Generator().manual_seed(seed)), pairs.style)


def corrupt_pairs(pairs: PairSet, *, swapped: float = 0.0, uninformative: float = 0.0, wrong_attribute: float = 0.0,
                  seed: int = 0) -> PairSet:
    """Return a copy of `pairs` whose captions, for disjoint fractions of the examples (exactly
    round(fraction * N) each), become:

    - swapped: the clean caption of another example (mismatched alt-text); redrawn when the text
      or the attributes would match its own;
    - uninformative: junk alt-text from `UNINFORMATIVE_TEXTS` ("image", "photo.jpg", ...);
    - wrong_attribute: its own caption with exactly one attribute wrong (synthetic pairs only).
    Images (shared, not copied), ids, labels and true captions are kept; `corruption` records the
    kind per example.
    """
    for name, v in (("swapped", swapped), ("uninformative", uninformative), ("wrong_attribute", wrong_attribute)):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {v}")
    if swapped + uninformative + wrong_attribute >= 1.0:
        raise ValueError("swapped + uninformative + wrong_attribute must be below 1 (they corrupt disjoint examples)")
    n = len(pairs)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    n_swap, n_junk, n_wrong = round(swapped * n), round(uninformative * n), round(wrong_attribute * n)
    swap_i = order[:n_swap]
    junk_i = order[n_swap:n_swap + n_junk]
    wrong_i = order[n_swap + n_junk:n_swap + n_junk + n_wrong]
    captions, code, truth = list(pairs.captions), pairs.corruption.clone(), pairs.true_captions
    if n_swap:
        if n < 2:
            raise ValueError("swapped captions need at least 2 examples")
        src = (swap_i + torch.randint(1, n, (n_swap,), generator=g)) % n
        for _ in range(_REDRAWS):
            same = torch.tensor([truth[i] == truth[j] for i, j in zip(swap_i.tolist(), src.tolist())], dtype=torch.bool)
            if pairs.attributes is not None:
                same |= (pairs.attributes[swap_i] == pairs.attributes[src]).flatten(1).all(1)
            if not same.any():
                break
            src[same] = (swap_i[same] + torch.randint(1, n, (int(same.sum()),), generator=g)) % n
        for i, j in zip(swap_i.tolist(), src.tolist()):
            captions[i] = truth[j]
        code[swap_i] = SWAPPED
    if n_junk:
        kinds = torch.randint(0, len(UNINFORMATIVE_TEXTS), (n_junk,), generator=g).tolist()
        numbers = torch.randint(0, 10000, (n_junk,), generator=g).tolist()
        for i, k, m in zip(junk_i.tolist(), kinds, numbers):
            captions[i] = UNINFORMATIVE_TEXTS[k].format(n=m)
        code[junk_i] = UNINFORMATIVE
    if n_wrong:
        _needs_synthetic(pairs, "wrong_attribute noise")
        wrong = describe(change_one_attribute(pairs.attributes[wrong_i], g), pairs.style[wrong_i])
        for i, text in zip(wrong_i.tolist(), wrong):
            captions[i] = text
        code[wrong_i] = WRONG_ATTRIBUTE
    return PairSet(pairs.images, captions, pairs.ids.clone(), pairs.labels, pairs.attributes, code, list(truth),
                   pairs.style, pairs.class_names)
