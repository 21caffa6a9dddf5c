"""Per-example losses, and scoring a batch with a model without disturbing it."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn

from learnability.batch import Batch, batch_len, leaves, rows

PerExampleLoss = Callable[[nn.Module, Any], torch.Tensor]  # (model, batch) -> [N] losses


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-example cross-entropy `[N]` of logits `[N, K]` against integer labels `[N]`, in nats."""
    return nn.functional.cross_entropy(logits.float(), y, reduction="none", label_smoothing=label_smoothing)


def check_per_example(loss: torch.Tensor, n: int, who: str = "loss function") -> torch.Tensor:
    """Raise a clear error unless `loss` has one value per example (`[n]`)."""
    if not isinstance(loss, torch.Tensor):
        raise ValueError(f"the {who} returned {type(loss).__name__}; it must return a tensor of one loss per example, shape [{n}]")
    if loss.dim() == 0:
        raise ValueError(f"the {who} returned a scalar; it must return one loss per example, shape [{n}] "
                         f"(use reduction='none')")
    if loss.shape != (n,):
        raise ValueError(f"the {who} must return one loss per example, shape [{n}]; got {tuple(loss.shape)}")
    return loss


def classification_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The default per-example loss: `batch = (x [N, ...], y [N])`, cross-entropy of `model(x)` `[N]`."""
    x, y = batch
    return cross_entropy(model(x), y)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode for the block (BatchNorm statistics and dropout untouched), its mode
    restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def score_losses(model: nn.Module, batch: Batch, loss_fn: PerExampleLoss = classification_loss,
                 chunk: int = 4096, autocast: bool = False) -> torch.Tensor:
    """Per-example losses `[N]` of `loss_fn(model, batch)` in eval mode and without autograd,
    `chunk` examples at a time. The model's train/eval mode is restored afterwards, so BatchNorm
    statistics and dropout are untouched by scoring. A loss that depends on the rest of the batch
    (a contrastive one) changes with the chunking: score it with `chunk >= N`, as `Selector` does."""
    n, out = batch_len(batch), []
    with eval_mode(model):
        for i in range(0, n, chunk):
            with torch.autocast(leaves(batch)[0].device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(model, rows(batch, i, i + chunk))
            out.append(check_per_example(loss, min(chunk, n - i)).float())
    return torch.cat(out)


@torch.no_grad()
def score_rows(model: nn.Module, batch: Batch, row_fn: Callable[[nn.Module, Batch], torch.Tensor],
               chunk: int = 4096) -> torch.Tensor:
    """Per-example rows `[N, K]` of `row_fn(model, batch)` (e.g. a frozen model's embeddings, for a
    per-id cache) in eval mode without autograd, `chunk` examples at a time; mode restored."""
    n, out = batch_len(batch), []
    with eval_mode(model):
        for i in range(0, n, chunk):
            r = row_fn(model, rows(batch, i, i + chunk))
            if not isinstance(r, torch.Tensor) or r.dim() != 2 or r.shape[0] != min(chunk, n - i):
                raise ValueError(f"the row function must return one row per example, shape [{min(chunk, n - i)}, K]; "
                                 f"got {tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__}")
            out.append(r.float())
    return torch.cat(out)


@torch.no_grad()
def pair_losses(model: nn.Module, batch: Batch, pair_loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
                autocast: bool = False) -> torch.Tensor:
    """Pairwise losses `[B, B]` of `pair_loss_fn(model, batch)` over the whole super-batch, in eval
    mode without autograd (mode restored), for joint selection."""
    n = batch_len(batch)
    with eval_mode(model), torch.autocast(leaves(batch)[0].device.type, dtype=torch.bfloat16, enabled=autocast):
        out = pair_loss_fn(model, batch)
    if not isinstance(out, torch.Tensor) or out.shape != (n, n):
        raise ValueError(f"the pairwise loss function must return a [{n}, {n}] tensor; got "
                         f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    return out.float()
