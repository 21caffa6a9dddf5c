"""`ImageSet`: images, labels and stable example ids, with a per-id corruption record."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import torch

from learnability.data.lazy import LazyImages


@dataclasses.dataclass
class ImageSet:
    """A labelled image set: labels and ids in memory, images in memory or read from files on demand.

    x: `[N, C, H, W]` float32, scaled to [-1, 1]: a tensor, or `LazyImages` that read just the
    rows they are indexed with (same values, same indexing). y: `[N]` int64 labels in `[0, num_classes)`.
    ids: `[N]` int64 stable example ids (never cast to float). corruption: `[N]` int8 codes from
    `data.corrupt` (0 = clean). true_y: `[N]` labels before any label corruption.
    """

    x: torch.Tensor | LazyImages
    y: torch.Tensor
    ids: torch.Tensor
    num_classes: int
    corruption: torch.Tensor | None = None
    true_y: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.dim() != 4:
            raise ValueError(f"images must be [N, C, H, W]; got shape {tuple(self.x.shape)}")
        for name in ("y", "ids"):
            t = getattr(self, name)
            if t.shape != (n,):
                raise ValueError(f"{name} must have shape [{n}] to match the images; got {tuple(t.shape)}")
            if t.dtype != torch.int64:
                raise ValueError(f"{name} must be int64; got {t.dtype}")
        if n and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}); found {int(self.y.min())}..{int(self.y.max())}")
        if self.corruption is None:
            self.corruption = torch.zeros(n, dtype=torch.int8)
        if self.true_y is None:
            self.true_y = self.y.clone()

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    @property
    def lazy(self) -> bool:
        return isinstance(self.x, LazyImages)

    def subset(self, index: torch.Tensor | slice) -> "ImageSet":
        """The examples at positions `index`; lazy images stay lazy (nothing is read)."""
        x = self.x.take(index) if isinstance(self.x, LazyImages) else self.x[index]
        return ImageSet(x, self.y[index], self.ids[index], self.num_classes,
                        self.corruption[index], self.true_y[index])

    def fingerprint(self) -> str:
        """sha256 over images, labels and ids: changes when any example changes. Lazy images are
        hashed a chunk at a time, to the same digest as the same images held in memory."""
        h = hashlib.sha256()
        chunks = self.x.chunks() if isinstance(self.x, LazyImages) else [self.x]
        for t in itertools.chain(chunks, (self.y, self.ids)):  # one chunk of images alive at a time
            h.update(memoryview(t.cpu().contiguous().numpy()))  # no copy of the bytes
        return h.hexdigest()
