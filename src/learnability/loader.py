"""`super_batches`: a DataLoader yielding `(batch, ids)` super-batches from any dataset."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from learnability.config import super_batch


class _Indexed(Dataset):
    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.dataset[i], i


class _Counted(IterableDataset):
    def __init__(self, dataset: IterableDataset):
        self.dataset = dataset

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        for i, item in enumerate(self.dataset):
            yield item, i


def _collate(inner: Callable[[list], Any]) -> Callable[[list], tuple[Any, torch.Tensor]]:
    def collate(items: list[tuple[Any, int]]) -> tuple[Any, torch.Tensor]:
        return inner([it for it, _ in items]), torch.tensor([i for _, i in items], dtype=torch.int64)

    return collate


def super_batches(dataset: Dataset, batch_size: int, filter_ratio: float = 0.5, *, shuffle: bool = True,
                  seed: int = 0, collate_fn: Callable[[list], Any] | None = None, drop_last: bool = True,
                  **loader_kwargs: Any) -> DataLoader:
    """A `DataLoader` over `dataset` whose batches are super-batches of B = b / (1 - f) examples,
    yielded as `(batch, ids)`: `batch` collated as usual (tensors, tuples or dicts of tensors) and
    `ids` `[B]` int64, the examples' indices in a map-style dataset or their positions in an
    iterable one (stable across epochs for a map-style dataset, so reference losses can be cached
    by id). Shuffling uses its own seeded generator; extra keyword arguments go to `DataLoader`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if not 0.0 <= filter_ratio < 1.0:
        raise ValueError(f"filter_ratio must be in [0, 1) (B = b / (1 - f)); got {filter_ratio}")
    big_b = super_batch(batch_size, filter_ratio)
    collate = _collate(collate_fn or default_collate)
    if isinstance(dataset, IterableDataset):
        return DataLoader(_Counted(dataset), batch_size=big_b, collate_fn=collate, drop_last=drop_last, **loader_kwargs)
    if len(dataset) < big_b:  # type: ignore[arg-type]
        raise ValueError(f"the dataset holds {len(dataset)} examples, fewer than one super-batch of {big_b} "  # type: ignore[arg-type]
                         f"(b = {batch_size}, filter_ratio = {filter_ratio})")
    return DataLoader(_Indexed(dataset), batch_size=big_b, shuffle=shuffle, collate_fn=collate, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None, **loader_kwargs)
