"""Web-like caption noise for a pair pool, seeded and recorded per example id; hard negatives."""

from __future__ import annotations

import re

import numpy as np
import torch

from learnability.data.lazy import LazyImages
from learnability.pairs.captions import CLASS_NAMES, FIELD_SIZES, class_synonyms, describe
from learnability.pairs.pairset import DUPLICATE, SWAPPED, UNINFORMATIVE, WRONG_ATTRIBUTE, PairSet

UNINFORMATIVE_TEXTS = ("image", "photo.jpg", "click here", "untitled", "IMG_{n:04d}.JPG", "thumbnail", "download",
                       "view full size", "no description available", "DSC{n:05d}.jpg", "product image", "img")
_REDRAWS = 20
COPIES_PER_ORIGINAL = 8  # duplicates: each duplicated pair appears this many extra times on average


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
    return describe(change_one_attribute(pairs.attributes, torch.Generator().manual_seed(seed)), pairs.style,
                    class_synonyms(pairs.class_names))


def corrupt_pairs(pairs: PairSet, *, swapped: float = 0.0, uninformative: float = 0.0, wrong_attribute: float = 0.0,
                  duplicates: float = 0.0, seed: int = 0) -> PairSet:
    """Return a copy of `pairs` whose captions, for disjoint fractions of the examples (exactly
    round(fraction * N) each), become:

    - swapped: the clean caption of another example (mismatched alt-text); redrawn when the text
      or the attributes would match its own;
    - uninformative: junk alt-text from `UNINFORMATIVE_TEXTS` ("image", "photo.jpg", ...);
    - wrong_attribute: its own caption with exactly one attribute wrong (synthetic pairs only);
    - duplicates: an exact copy (image and caption) of one of the clean examples left, about
      `COPIES_PER_ORIGINAL` copies of each duplicated original, as popular web images recur.
    Ids are kept (each copy keeps its own id, as a re-posted image has its own URL); images are
    shared, not copied, unless there are duplicates (lazy images are never copied: the copies'
    rows point at their originals); `corruption` records the kind per example and
    `true_captions` what each image shows.
    """
    fractions = {"swapped": swapped, "uninformative": uninformative, "wrong_attribute": wrong_attribute,
                 "duplicates": duplicates}
    for name, v in fractions.items():
        if not 0.0 <= v < 1.0:
            raise ValueError(f"{name} must be in [0, 1); got {v}")
    if sum(fractions.values()) >= 1.0:
        raise ValueError("swapped + uninformative + wrong_attribute + duplicates must be below 1 "
                         "(they corrupt disjoint examples)")
    n = len(pairs)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    n_swap, n_junk, n_wrong = round(swapped * n), round(uninformative * n), round(wrong_attribute * n)
    swap_i = order[:n_swap]
    junk_i = order[n_swap:n_swap + n_junk]
    wrong_i = order[n_swap + n_junk:n_swap + n_junk + n_wrong]
    dup_i = order[n_swap + n_junk + n_wrong:n_swap + n_junk + n_wrong + round(duplicates * n)]
    clean_i = order[n_swap + n_junk + n_wrong + len(dup_i):]
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
        wrong = describe(change_one_attribute(pairs.attributes[wrong_i], g), pairs.style[wrong_i],
                         class_synonyms(pairs.class_names))
        for i, text in zip(wrong_i.tolist(), wrong):
            captions[i] = text
        code[wrong_i] = WRONG_ATTRIBUTE
    if len(dup_i):
        return _duplicate(pairs, captions, code, list(truth), dup_i, clean_i, g)
    return PairSet(pairs.images, captions, pairs.ids.clone(), pairs.labels, pairs.attributes, code, list(truth),
                   pairs.style, pairs.class_names)


def _duplicate(pairs: PairSet, captions: list[str], code: torch.Tensor, truth: list[str], dup_i: torch.Tensor,
               clean_i: torch.Tensor, g: torch.Generator) -> PairSet:
    """`pairs` with rows `dup_i` overwritten by copies of originals drawn from `clean_i`."""
    if not len(clean_i):
        raise ValueError("duplicates need some clean examples left to copy; lower the corruption fractions")
    originals = clean_i[torch.randperm(len(clean_i), generator=g)[:max(1, round(len(dup_i) / COPIES_PER_ORIGINAL))]]
    src = originals[torch.randint(0, len(originals), (len(dup_i),), generator=g)]
    if isinstance(pairs.images, LazyImages):  # lazy (uint8 or shard) images: repoint the copies' rows, read nothing
        rows = np.arange(len(pairs))
        rows[dup_i.numpy()] = src.numpy()
        images = pairs.images.take(rows)
    else:
        images = pairs.images.clone()
        images[dup_i] = pairs.images[src]
    for i, j in zip(dup_i.tolist(), src.tolist()):
        captions[i], truth[i] = captions[j], truth[j]
    code[dup_i] = DUPLICATE

    def copy(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        t = t.clone()
        t[dup_i] = t[src]
        return t

    return PairSet(images, captions, pairs.ids.clone(), copy(pairs.labels), copy(pairs.attributes), code, truth,
                   copy(pairs.style), pairs.class_names)


def synthetic_vocabulary(class_names: tuple[str, ...] | list[str] = CLASS_NAMES) -> list[str]:
    """The vocabulary of built-in pairs with classes `class_names` (default Fashion-MNIST's), fixed by
    their grammar: the special tokens, then every word a caption, hard negative, prompt or junk alt-text
    can hold, sorted (junk numbers map to UNK). Independent of the caption noise, so a clean and a noisy
    pool give the learner the same token ids (a vocabulary sorted by word counts would differ, and with
    it every word's initial embedding)."""
    from learnability.pairs.captions import grammar_words
    from learnability.pairs.tokenizer import SPECIALS, split_words

    junk = {w for t in UNINFORMATIVE_TEXTS for w in split_words(re.sub(r"\{[^}]*\}", " ", t))}
    return list(SPECIALS) + sorted(set(grammar_words(class_synonyms(class_names))) | junk)
