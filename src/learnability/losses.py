"""Per-example losses, and scoring a batch with a model without disturbing it."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from learnability.batch import Batch, batch_len, call, leaves, rows

LossFn = Callable[[Any, Any], torch.Tensor]  # (model output, targets) -> [N]


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


@torch.no_grad()
def score_losses(model: nn.Module, x: Batch, y: torch.Tensor | None, loss_fn: LossFn = cross_entropy,
                 chunk: int = 4096, autocast: bool = False) -> torch.Tensor:
    """Per-example losses `[N]` of `model` on inputs `x` (a tensor `[N, ...]`, or a tuple / dict of
    them: `batch.call`), in eval mode and without autograd; the model's train/eval mode is restored
    afterwards, so BatchNorm statistics are untouched."""
    was_training = model.training
    model.eval()
    n = batch_len(x)
    try:
        out = []
        for i in range(0, n, chunk):
            with torch.autocast(leaves(x)[0].device.type, dtype=torch.bfloat16, enabled=autocast):
                output = call(model, rows(x, i, i + chunk))
            target = None if y is None else y[i:i + chunk]
            out.append(check_per_example(loss_fn(output, target), min(chunk, n - i)).float())
        return torch.cat(out)
    finally:
        model.train(was_training)
