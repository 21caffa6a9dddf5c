"""`Selector`: the per-step work of active data selection, callable from any training loop.

    for batch, ids in loader:                  # super-batches of B examples
        batch = selector.select(batch, ids)    # the b most learnable, in the same structure
        ... train the learner on batch ...
        selector.train_proxy(batch)            # the online proxy follows the learner's curriculum

A batch is a tensor, or a tuple / list / dict of tensors sharing their first dimension; the
per-example loss `loss_fn(model, batch) -> [N]` says how a model scores it (default: `(x, y)` and
cross-entropy), so any model that returns logits or embeddings works.

It holds the online proxy and its optimizer, the frozen reference (or its per-id loss cache), its
own `torch.Generator`, and a `Ledger` of FLOPs and seconds; it touches no global state.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from learnability.batch import Batch, batch_len, leaves, rows, take
from learnability.device import sync
from learnability.flops import Ledger, ModelCost, measure_loss_cost
from learnability.losses import PerExampleLoss, check_per_example, classification_loss, pair_losses, score_losses
from learnability.reference import ReferenceLosses
from learnability.scores import compute_scores, get_score
from learnability.selection import get_sampler, is_joint


@dataclasses.dataclass
class Selection:
    index: torch.Tensor               # [b] positions into the super-batch
    scores: torch.Tensor              # [B]
    losses: dict[str, torch.Tensor]   # each [B]


class Selector:
    """Scores super-batches with small proxies and selects the examples to learn from.

    Args:
        score: a registered score name (`learnability.scores.list_scores()`).
        batch_size: b, how many of each super-batch to keep.
        proxy, proxy_optimizer: the online proxy (needed by scores using the `online` loss) and the
            optimizer `train_proxy` co-trains it with on each selected batch (not needed by a
            selector that only scores, e.g. with weights published to it).
        reference: the frozen reference model, used when `reference_losses` is None.
        reference_losses: per-id cached reference losses (the reference is frozen).
        learner: the learner, for scores using its own loss (`rho`).
        sampler, temperature: a registered sampler and its temperature.
        loss_fn: per-example loss `(model, batch) -> [N]`; must not reduce over the batch.
        seed: seeds the selector's own generator.
        ledger: where FLOPs and seconds are added; a new one if None.
        autocast: bf16 autocast for scoring and proxy training (CUDA).
        train_loss_fn: `(model, batch) -> scalar` loss the online proxy trains on (default: the
            mean of `loss_fn`); contrastive models score with one loss and train with another.
        pair_loss_fn: `(model, batch) -> [B, B]` pairwise losses, for joint samplers (JEST, from
            `learnability.joint`): the score is then a `[B, B]` matrix and the batch is drawn jointly
            in `n_chunks` chunks.
        reference_rows_fn: for losses that depend on the whole super-batch (joint selection, or a
            contrastive per-example loss) with a cached reference: maps the cached per-id rows of the
            super-batch (`reference_losses.lookup(ids)`, `[B, K]`, e.g. frozen embeddings) to its
            reference losses, `[B, B]` (joint) or `[B]`; its FLOPs are measured once per shape and
            charged to scoring. Without it, such losses run the reference on every super-batch.
        grad_sync: called with the proxy between its backward pass and its optimizer step (a
            data-parallel run averages the replicas' gradients there: `replicas.Group.sync`).
        corrupted_fn: ids `[B]` -> the data's ground-truth flags `[B]` (1.0: corrupted), for scores
            needing `corrupted` (the benchmark's `oracle`); tasks give it for built-in noise
            (`tasks.CorruptionFlags`).
    """

    def __init__(self, *, score: str, batch_size: int, proxy: nn.Module | None = None,
                 proxy_optimizer: torch.optim.Optimizer | None = None, reference: nn.Module | None = None,
                 reference_losses: ReferenceLosses | None = None, learner: nn.Module | None = None,
                 sampler: str = "softmax", temperature: float = 1.0, loss_fn: PerExampleLoss = classification_loss,
                 seed: int = 0, ledger: Ledger | None = None, autocast: bool = False,
                 train_loss_fn: Callable[[nn.Module, Batch], torch.Tensor] | None = None,
                 pair_loss_fn: Callable[[nn.Module, Batch], torch.Tensor] | None = None, n_chunks: int = 1,
                 reference_rows_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 grad_sync: Callable[[nn.Module], None] | None = None,
                 corrupted_fn: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.score = get_score(score)
        for arg, value in (("batch_size", batch_size), ("n_chunks", n_chunks)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{arg} must be an integer; got {value!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not 0 < temperature < math.inf:
            raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
        self.sample = get_sampler(sampler)
        self.joint = is_joint(sampler)
        if self.joint and pair_loss_fn is None:
            raise ValueError(f"the joint sampler {sampler!r} needs pair_loss_fn: (model, batch) -> [B, B] pairwise losses")
        if self.joint and (n_chunks < 1 or batch_size % n_chunks):
            raise ValueError(f"n_chunks={n_chunks} must divide batch_size={batch_size} (equal chunks)")
        self.train_loss_fn, self.pair_loss_fn, self.n_chunks = train_loss_fn, pair_loss_fn, n_chunks
        self.reference_rows_fn, self.grad_sync = reference_rows_fn, grad_sync
        if self.joint and reference_rows_fn is None:
            reference_losses = None  # per-example losses cannot give the pairwise [B, B] reference losses
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        needs = set(self.score.needs)
        if "online" in needs and proxy is None:
            raise ValueError(f"score {score!r} needs an online proxy")
        if "reference" in needs and reference is None and reference_losses is None:
            raise ValueError(f"score {score!r} needs a reference model or cached reference losses")
        if "learner" in needs and learner is None:
            raise ValueError(f"score {score!r} needs the learner")
        if "corrupted" in needs and corrupted_fn is None:
            raise ValueError(f"score {score!r} needs the data's ground-truth corruption flags (corrupted_fn), "
                             f"which only built-in synthetic noise has")
        self.corrupted_fn = corrupted_fn
        self.b, self.temperature, self.loss_fn, self.autocast = batch_size, temperature, loss_fn, autocast
        self.proxy, self.proxy_optimizer = proxy, proxy_optimizer
        self.reference, self.reference_losses, self.learner = reference, reference_losses, learner
        self.generator = torch.Generator().manual_seed(seed)
        self.ledger = ledger if ledger is not None else Ledger()
        self._costs: dict[tuple, ModelCost] = {}
        self.last: Selection | None = None

    def cost(self, which: str, example: Batch) -> ModelCost:
        """Per-example FLOPs of `loss_fn` with model `which` (proxy / reference / learner) on
        batches shaped like `example`, measured once per shape."""
        return self.cost_of(getattr(self, which), which, example)

    def _model_losses(self, which: str, batch: Batch) -> torch.Tensor:
        model = getattr(self, which)
        if self.joint:  # pairwise [B, B]; the cost is measured on the whole super-batch (B^2 terms)
            losses = pair_losses(model, batch, self.pair_loss_fn, autocast=self.autocast)
            cost = self._measure(model, f"{which}-pairs", batch, self.pair_loss_fn, full=True)
        else:
            # the whole super-batch in one call: a contrastive per-example loss depends on every pair
            # in it (chunks would change its negatives, and part from a cached reference's losses)
            losses = score_losses(model, batch, self.loss_fn, chunk=batch_len(batch), autocast=self.autocast)
            # measured on the whole super-batch: a contrastive per-example loss costs B x B terms too
            cost = self._measure(model, f"{which}-scoring", batch, self.loss_fn, full=True)
        self.ledger.add("scoring", flops=cost.forward * batch_len(batch))
        return losses

    def _from_rows(self, cached: torch.Tensor) -> torch.Tensor:
        """Reference losses (`[B, B]` joint, else `[B]`) from cached per-id rows `[B, K]`, with their
        FLOPs (counted once per shape)."""
        n = cached.shape[0]
        key = ("reference-rows", tuple(cached.shape))
        if key not in self._costs:
            with FlopCounterMode(display=False) as counter:
                self.reference_rows_fn(cached)
            self._costs[key] = ModelCost(forward=counter.get_total_flops() / n, train=0.0)
        out = self.reference_rows_fn(cached).float()
        want = (n, n) if self.joint else (n,)
        if out.shape != want:
            raise ValueError(f"reference_rows_fn must return {list(want)}; got {list(out.shape)}")
        self.ledger.add("scoring", flops=self._costs[key].forward * cached.shape[0])
        return out

    def select(self, batch: Batch, ids: torch.Tensor | None = None) -> Batch:
        """The selected sub-batch of `batch` (B examples), b of them, in the same structure.
        `ids` `[B]` (int64) are needed when reference losses come from the per-id cache. The
        scores and losses behind the choice are kept in `self.last`."""
        self.last = self.select_index(batch, ids)
        return take(batch, self.last.index)

    def select_index(self, batch: Batch, ids: torch.Tensor | None = None) -> Selection:
        """Score the super-batch and choose b of it; returns positions, scores and losses."""
        n = batch_len(batch)
        if ids is not None and (ids.dim() != 1 or ids.shape[0] != n):
            raise ValueError(f"ids disagree with the super-batch: they must have shape [{n}]; got {tuple(ids.shape)}")
        if ids is not None and (ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool):
            raise ValueError(f"ids must be integers (int64); got dtype {ids.dtype} (floats lose precision beyond 2**24)")
        device = leaves(batch)[0].device
        if n < self.b:
            raise ValueError(f"the super-batch has {n} examples but {self.b} are to be selected; "
                             f"draw at least b / (1 - f) candidates")
        sync(device)
        t0 = time.perf_counter()
        losses: dict[str, torch.Tensor] = {}
        for kind in self.score.needs:
            if kind == "reference" and self.reference_losses is not None:
                if ids is None:
                    raise ValueError("reference losses come from the per-id cache: pass the super-batch's ids")
                cached = self.reference_losses.lookup(ids)
                losses[kind] = self._from_rows(cached) if self.reference_rows_fn is not None else cached
            elif kind == "corrupted":  # ground truth, free: no model runs
                if ids is None:
                    raise ValueError("the corruption flags are looked up by id: pass the super-batch's ids")
                losses[kind] = self.corrupted_fn(ids.cpu()).float()
            else:
                losses[kind] = self._model_losses("proxy" if kind == "online" else kind, batch).cpu()
        sync(device)
        t1 = time.perf_counter()
        try:
            scores = compute_scores(self.score.name, losses, n)
        except ValueError as e:
            bad = sorted({i for t in losses.values() if t.dim() == 1 for i in (~torch.isfinite(t)).nonzero().flatten().tolist()})
            if ids is None or not bad:
                raise
            raise type(e)(f"{e}; example ids {ids[bad[:5]].tolist()}{' ...' if len(bad) > 5 else ''}") from e
        if self.joint:
            index = self.sample(scores, self.b, self.n_chunks, temperature=self.temperature, generator=self.generator)
        else:
            index = self.sample(scores, self.b, temperature=self.temperature, generator=self.generator)
        t2 = time.perf_counter()
        self.ledger.add("scoring", seconds=t1 - t0)
        self.ledger.add("selection", seconds=t2 - t1)
        return Selection(index.to(device), scores, losses)

    def train_proxy(self, batch: Batch) -> float:
        """One optimizer step of the online proxy on the selected batch; returns its mean loss
        (NaN when the score uses no online proxy). A ValueError when the selector was built without
        `proxy_optimizer` (e.g. a scoring actor, whose proxy weights are published to it)."""
        if self.proxy is None:
            return float("nan")
        if self.proxy_optimizer is None:
            raise ValueError("train_proxy needs the proxy's optimizer: pass proxy_optimizer= to the Selector")
        device, n = leaves(batch)[0].device, batch_len(batch)
        sync(device)
        t0 = time.perf_counter()
        self.proxy.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.autocast):
            if self.train_loss_fn is not None:
                loss = self.train_loss_fn(self.proxy, batch).float()
            else:
                loss = check_per_example(self.loss_fn(self.proxy, batch), n).float().mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"online proxy loss is {loss.item()}; lower selection.proxy_lr")
        self.proxy_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_sync is not None:
            self.grad_sync(self.proxy)
        self.proxy_optimizer.step()
        sync(device)
        self.ledger.add("proxy_train", flops=self.cost("proxy", batch).train * n,
                        seconds=time.perf_counter() - t0)
        return loss.item()

    def charge_learner(self, learner: nn.Module, batch: Batch, seconds: float = 0.0) -> None:
        """Add one learner training step on `batch` to the ledger: its forward+backward FLOPs
        (measured once per shape, with `loss_fn`) and, if given, the seconds it took."""
        self.ledger.add("learner", flops=self.cost_of(learner, "learner", batch).train * batch_len(batch), seconds=seconds)

    def charge_reference(self, flops: float, seconds: float = 0.0) -> None:
        """Add one-off reference costs (its training, a caching pass) to the ledger."""
        self.ledger.add("reference", flops=flops, seconds=seconds)

    def cost_of(self, model: nn.Module, name: str, example: Batch) -> ModelCost:
        """Per-example FLOPs of `model` under this selector's loss, measured once per input shape."""
        return self._measure(model, name, example, self.train_loss_fn or self.loss_fn)

    def _measure(self, model: nn.Module, name: str, example: Batch, fn: Callable, full: bool = False) -> ModelCost:
        shapes = tuple((tuple(t.shape[int(not full):]), t.dtype) for t in leaves(example))
        key = (name, id(model), shapes)
        if key not in self._costs:
            self._costs[key] = measure_loss_cost(model, fn, example if full else rows(example, 0, 2))
        return self._costs[key]

    @property
    def flops(self) -> dict[str, float]:
        """Cumulative FLOPs by category (learner, scoring, proxy_train, reference)."""
        return dict(self.ledger.flops)

    def summary(self) -> dict[str, float]:
        """Cumulative FLOPs and seconds by category, with totals (the same keys as metrics rows)."""
        return self.ledger.row()

    def state_dict(self) -> dict:
        state = {"generator": self.generator.get_state(), "ledger": self.ledger.state_dict()}
        if self.proxy is not None:
            state["proxy"] = self.proxy.state_dict()
        if self.proxy_optimizer is not None:
            state["proxy_optimizer"] = self.proxy_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.ledger.load_state_dict(state["ledger"])
        if self.proxy is not None:
            self.proxy.load_state_dict(state["proxy"])
        if self.proxy_optimizer is not None:
            self.proxy_optimizer.load_state_dict(state["proxy_optimizer"])
