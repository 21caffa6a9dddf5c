"""Batches as tensors, or tuples, lists and dicts of tensors sharing their first dimension."""

from __future__ import annotations

from typing import Any, Union

import torch

Batch = Union[torch.Tensor, tuple, list, dict]


def leaves(batch: Batch) -> list[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, dict):
        return [t for v in batch.values() for t in leaves(v)]
    if isinstance(batch, (tuple, list)):
        return [t for v in batch for t in leaves(v)]
    raise TypeError(f"a batch holds tensors, or tuples, lists and dicts of tensors; got {type(batch).__name__}")


def batch_len(batch: Batch) -> int:
    """The shared first dimension; ValueError naming the sizes when the tensors disagree."""
    sizes = [t.shape[0] if t.dim() else None for t in leaves(batch)]
    if not sizes:
        raise ValueError("the batch holds no tensors")
    if None in sizes or len(set(sizes)) > 1:
        raise ValueError(f"the batch's tensors disagree on the first (batch) dimension: sizes {sizes}")
    return sizes[0]


def apply(batch: Batch, fn) -> Any:
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: apply(v, fn) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(apply(v, fn) for v in batch)
    if isinstance(batch, list):
        return [apply(v, fn) for v in batch]
    raise TypeError(f"a batch holds tensors, or tuples, lists and dicts of tensors; got {type(batch).__name__}")


def take(batch: Batch, index: torch.Tensor) -> Batch:
    """Rows `index` of every tensor in the batch, in the same structure."""
    return apply(batch, lambda t: t[index.to(t.device)])


def rows(batch: Batch, start: int, stop: int) -> Batch:
    return apply(batch, lambda t: t[start:stop])


def call(model: torch.nn.Module, inputs: Batch) -> Any:
    """`model(*inputs)` for a tuple or list, `model(**inputs)` for a dict, else `model(inputs)`."""
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)
