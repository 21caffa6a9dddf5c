"""`PairSet`: images, captions and stable example ids, with a per-id corruption record."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import torch

from learnability.data.lazy import LazyImages

CLEAN, SWAPPED, UNINFORMATIVE, WRONG_ATTRIBUTE, DUPLICATE = 0, 1, 2, 3, 4
KIND_NAMES = {CLEAN: "clean", SWAPPED: "swapped", UNINFORMATIVE: "uninformative", WRONG_ATTRIBUTE: "wrong_attribute",
              DUPLICATE: "duplicate"}
ATTRIBUTE_FIELDS = ("class", "colour", "size", "position")


@dataclasses.dataclass
class PairSet:
    """An image-text pair set: captions and ids in memory, images in memory or read on demand.

    images: `[N, 3, H, W]` float32 in [-1, 1]: a tensor, or `LazyImages` (read from shards when
    indexed, see `pairs.tarindex`). captions: N strings (what the learner sees).
    ids: `[N]` int64 stable example ids (never cast to float).
    labels: `[N]` int64 class of the first-mentioned object, for zero-shot evaluation; None for
    unlabelled pairs (a user's own). attributes: `[N, O, 4]` int64, per object slot the indices of
    `ATTRIBUTE_FIELDS` (class, colour, size, position) into the vocabularies of `pairs.captions`;
    rows of -1 where an image has fewer than O objects; None for a user's pairs.
    corruption: `[N]` int8 codes (0 = clean, see `KIND_NAMES`). true_captions: the captions before
    any corruption. style: `[N]` int64 caption style codes (template and synonym choices) of
    synthetic sets, so a caption can be re-rendered with one attribute changed; else None.
    class_names: names of the label classes (empty for unlabelled pairs).
    """

    images: torch.Tensor | LazyImages
    captions: list[str]
    ids: torch.Tensor
    labels: torch.Tensor | None = None
    attributes: torch.Tensor | None = None
    corruption: torch.Tensor | None = None
    true_captions: list[str] | None = None
    style: torch.Tensor | None = None
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W]; got shape {tuple(self.images.shape)}")
        if self.images.dtype != torch.float32:
            raise ValueError(f"images must be float32 in [-1, 1]; got {self.images.dtype}")
        if len(self.captions) != n:
            raise ValueError(f"got {len(self.captions)} captions for {n} images; give one caption per image")
        for name in ("ids", "labels", "style"):
            t = getattr(self, name)
            if t is None:
                continue
            if t.shape != (n,):
                raise ValueError(f"{name} must have shape [{n}] to match the images; got {tuple(t.shape)}")
            if t.dtype != torch.int64:
                raise ValueError(f"{name} must be int64; got {t.dtype}")
        if self.attributes is not None and (self.attributes.dim() != 3 or self.attributes.shape[0] != n
                                            or self.attributes.shape[2] != len(ATTRIBUTE_FIELDS)):
            raise ValueError(f"attributes must be [{n}, O, {len(ATTRIBUTE_FIELDS)}]; got {tuple(self.attributes.shape)}")
        if self.corruption is None:
            self.corruption = torch.zeros(n, dtype=torch.int8)
        if self.corruption.shape != (n,) or self.corruption.dtype != torch.int8:
            raise ValueError(f"corruption must be [{n}] int8 codes; got {tuple(self.corruption.shape)} {self.corruption.dtype}")
        if self.true_captions is None:
            self.true_captions = list(self.captions)
        if len(self.true_captions) != n:
            raise ValueError(f"got {len(self.true_captions)} true captions for {n} images")
        self.class_names = tuple(self.class_names)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: torch.Tensor | slice) -> "PairSet":
        """The examples at positions `index` (a `[K]` int64 tensor, a bool mask or a slice)."""
        pos = torch.arange(len(self))[index].tolist()

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]

        images = self.images.take(index) if isinstance(self.images, LazyImages) else self.images[index]
        return PairSet(images, [self.captions[i] for i in pos], self.ids[index], pick(self.labels),
                       pick(self.attributes), self.corruption[index], [self.true_captions[i] for i in pos],
                       pick(self.style), self.class_names)

    def fingerprint(self) -> str:
        """sha256 over images, captions and ids: changes when any example changes."""
        h = hashlib.sha256()
        chunks = self.images.chunks() if isinstance(self.images, LazyImages) else [self.images]
        for t in itertools.chain(chunks, [self.ids]):  # lazy images: one chunk at a time, same digest
            h.update(memoryview(t.cpu().contiguous().numpy()))
        for c in self.captions:
            h.update(c.encode() + b"\x00")
        return h.hexdigest()


@dataclasses.dataclass
class PairSplits:
    """A web-like training pool (corrupted), a clean curated reference set and a clean test set."""

    pool: PairSet
    reference: PairSet
    test: PairSet
