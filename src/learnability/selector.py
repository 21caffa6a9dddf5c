"""`Selector`: the per-step work of active data selection, callable from any training loop.

    sel = selector.select(x, y, ids)        # score the super-batch [B], choose b
    ... train the learner on take(x, sel.index) ...
    selector.train_proxy(take(x, sel.index), y[sel.index])

Inputs `x` are a tensor `[B, ...]` or a tuple / dict of tensors sharing the first dimension (the
model is called as `batch.call` does); targets `y` are whatever the per-example loss takes.

It holds the online proxy and its optimizer, the frozen reference (or its per-id loss cache), its
own `torch.Generator`, and a `Ledger` of FLOPs and seconds; it touches no global state.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from torch import nn

from learnability.batch import Batch, batch_len, call, leaves, rows
from learnability.flops import Ledger, ModelCost, measure_cost_on
from learnability.losses import LossFn, check_per_example, cross_entropy, score_losses
from learnability.reference import ReferenceLosses
from learnability.scores import compute_scores, get_score
from learnability.selection import get_sampler


@dataclasses.dataclass
class Selection:
    index: torch.Tensor               # [b] positions into the super-batch
    scores: torch.Tensor              # [B]
    losses: dict[str, torch.Tensor]   # each [B]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Selector:
    """Scores super-batches with small proxies and selects the examples to learn from.

    Args:
        score: a registered score name (`learnability.scores.list_scores()`).
        batch_size: b, how many of each super-batch to keep.
        proxy, proxy_optimizer: the online proxy, co-trained on each selected batch (needed by
            scores using the `online` loss).
        reference: the frozen reference model, used when `reference_losses` is None.
        reference_losses: per-id cached reference losses (the reference is frozen).
        learner: the learner, for scores using its own loss (`rho`).
        sampler, temperature: a registered sampler and its temperature.
        loss_fn: per-example loss `(output [N, ...], target [N]) -> [N]`.
        seed: seeds the selector's own generator.
        ledger: where FLOPs and seconds are added; a new one if None.
        autocast: bf16 autocast for scoring and proxy training (CUDA).
    """

    def __init__(self, *, score: str, batch_size: int, proxy: nn.Module | None = None,
                 proxy_optimizer: torch.optim.Optimizer | None = None, reference: nn.Module | None = None,
                 reference_losses: ReferenceLosses | None = None, learner: nn.Module | None = None,
                 sampler: str = "softmax", temperature: float = 1.0, loss_fn: LossFn = cross_entropy,
                 seed: int = 0, ledger: Ledger | None = None, autocast: bool = False):
        self.score = get_score(score)
        self.sample = get_sampler(sampler)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        needs = set(self.score.needs)
        if "online" in needs and (proxy is None or proxy_optimizer is None):
            raise ValueError(f"score {score!r} needs an online proxy and its optimizer")
        if "reference" in needs and reference is None and reference_losses is None:
            raise ValueError(f"score {score!r} needs a reference model or cached reference losses")
        if "learner" in needs and learner is None:
            raise ValueError(f"score {score!r} needs the learner")
        self.b, self.temperature, self.loss_fn, self.autocast = batch_size, temperature, loss_fn, autocast
        self.proxy, self.proxy_optimizer = proxy, proxy_optimizer
        self.reference, self.reference_losses, self.learner = reference, reference_losses, learner
        self.generator = torch.Generator().manual_seed(seed)
        self.ledger = ledger if ledger is not None else Ledger()
        self._costs: dict[tuple, ModelCost] = {}

    def cost(self, which: str, example: Batch) -> ModelCost:
        """Per-example FLOPs of `which` (proxy / reference / learner) on inputs shaped like
        `example` (a batch), measured once per input shape."""
        key = (which, tuple((tuple(t.shape[1:]), t.dtype) for t in leaves(example)))
        if key not in self._costs:
            self._costs[key] = measure_cost_on(getattr(self, which), rows(example, 0, 2))
        return self._costs[key]

    def _model_losses(self, which: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model = getattr(self, which)
        losses = score_losses(model, x, y, self.loss_fn, autocast=self.autocast)
        self.ledger.add("scoring", flops=self.cost(which, x).forward * batch_len(x))
        return losses

    def select(self, x: Batch, y: Batch | None, ids: torch.Tensor) -> Selection:
        """Score the super-batch (inputs `x`, targets `y`, int64 `ids` `[B]`) and choose b of it."""
        n = batch_len(x)
        parts = {"x": n, "ids": ids.shape[0] if ids.dim() else None}
        if y is not None:
            parts["y"] = batch_len(y)
        if len(set(parts.values())) > 1:
            raise ValueError(f"super-batch parts disagree on size: {parts}")
        device = leaves(x)[0].device
        if n < self.b:
            raise ValueError(f"the super-batch has {n} examples but {self.b} are to be selected; "
                             f"draw at least b / (1 - f) candidates")
        _sync(device)
        t0 = time.perf_counter()
        losses: dict[str, torch.Tensor] = {}
        for kind in self.score.needs:
            if kind == "reference" and self.reference_losses is not None:
                losses[kind] = self.reference_losses.lookup(ids)
            else:
                losses[kind] = self._model_losses("proxy" if kind == "online" else kind, x, y).cpu()
        _sync(device)
        t1 = time.perf_counter()
        scores = compute_scores(self.score.name, losses, n)
        index = self.sample(scores, self.b, temperature=self.temperature, generator=self.generator)
        t2 = time.perf_counter()
        self.ledger.add("scoring", seconds=t1 - t0)
        self.ledger.add("selection", seconds=t2 - t1)
        return Selection(index.to(device), scores, losses)

    def train_proxy(self, x: Batch, y: Batch | None) -> float:
        """One optimizer step of the online proxy on the selected batch; returns its mean loss."""
        if self.proxy is None or self.proxy_optimizer is None:
            return float("nan")
        device, n = leaves(x)[0].device, batch_len(x)
        _sync(device)
        t0 = time.perf_counter()
        self.proxy.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = call(self.proxy, x)
        loss = check_per_example(self.loss_fn(out, y), n).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"online proxy loss is {loss.item()}; lower selection.proxy_lr")
        self.proxy_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.proxy_optimizer.step()
        _sync(device)
        self.ledger.add("proxy_train", flops=self.cost("proxy", x).train * n,
                        seconds=time.perf_counter() - t0)
        return loss.item()

    def state_dict(self) -> dict:
        state = {"generator": self.generator.get_state(), "ledger": self.ledger.state_dict()}
        if self.proxy is not None:
            state["proxy"] = self.proxy.state_dict()
            state["proxy_optimizer"] = self.proxy_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.ledger.load_state_dict(state["ledger"])
        if self.proxy is not None:
            self.proxy.load_state_dict(state["proxy"])
            self.proxy_optimizer.load_state_dict(state["proxy_optimizer"])
