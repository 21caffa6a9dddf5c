"""`ImageSet`: images, labels and stable example ids, with a per-id corruption record."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import torch

from learnability.data.columns import LazyColumn, Zeros, to_tensor_index
from learnability.data.lazy import LazyImages

Column = torch.Tensor | LazyColumn


@dataclasses.dataclass
class ImageSet:
    """A labelled image set: images, labels, ids and corruption codes, each in memory (tensors)
    or read on demand (`LazyImages`, `LazyColumn`: same values, same indexing).

    x: `[N, C, H, W]` float32, scaled to [-1, 1]: a tensor, or `LazyImages` that read just the
    rows they are indexed with. y: `[N]` int64 labels in `[0, num_classes)`.
    ids: `[N]` int64 stable example ids (never cast to float). corruption: `[N]` int8 codes from
    `data.corrupt` (0 = clean). true_y: `[N]` labels before any label corruption. Lazy columns
    are validated by the source that opens them (a scan, not a copy), not here.
    """

    x: torch.Tensor | LazyImages
    y: Column
    ids: Column
    num_classes: int
    corruption: Column | None = None
    true_y: Column | None = None

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.dim() != 4:
            raise ValueError(f"images must be [N, C, H, W]; got shape {tuple(self.x.shape)}")
        for name in ("y", "ids"):
            t = getattr(self, name)
            if tuple(t.shape) != (n,):
                raise ValueError(f"{name} must have shape [{n}] to match the images; got {tuple(t.shape)}")
            if t.dtype != torch.int64:
                raise ValueError(f"{name} must be int64; got {t.dtype}")
        if n and isinstance(self.y, torch.Tensor) and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}); found {int(self.y.min())}..{int(self.y.max())}")
        if self.corruption is None:
            self.corruption = LazyColumn(Zeros(n)) if isinstance(self.y, LazyColumn) else torch.zeros(n, dtype=torch.int8)
        if self.true_y is None:
            self.true_y = self.y if isinstance(self.y, LazyColumn) else self.y.clone()  # lazy columns are read-only

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
        x = self.x.take(index) if isinstance(self.x, LazyImages) else self.x[to_tensor_index(index)]
        return ImageSet(x, *(_take(c, index) for c in (self.y, self.ids)), self.num_classes,
                        *(_take(c, index) for c in (self.corruption, self.true_y)))

    def fingerprint(self) -> str:
        """sha256 over images, labels and ids: changes when any example changes. Lazy images and
        columns are hashed a chunk at a time, to the same digest as the same values in memory."""
        h = hashlib.sha256()
        parts = [self.x.chunks() if isinstance(self.x, LazyImages) else [self.x]]
        parts += [c.chunks() if isinstance(c, LazyColumn) else [c] for c in (self.y, self.ids)]
        for t in itertools.chain(*parts):  # one chunk alive at a time
            h.update(memoryview(t.cpu().contiguous().numpy()))  # no copy of the bytes
        return h.hexdigest()

    def corrupted_fraction(self) -> float:
        """The fraction of examples with a corruption code other than clean (read a chunk at a time)."""
        c = self.corruption
        bad = sum(int((t != 0).sum()) for t in c.chunks()) if isinstance(c, LazyColumn) else int((c != 0).sum())
        return bad / max(len(self), 1)


def _take(column: Column, index) -> Column:
    return column.take(index) if isinstance(column, LazyColumn) else column[to_tensor_index(index)]
