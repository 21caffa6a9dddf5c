"""FLOP measurement, closed-form cross-checks, and the cost ledger.

Costs are per example and measured once per model and input shape with torch's
`FlopCounterMode` (a multiply-add counts as 2 FLOPs). The ledger is plain arithmetic on them:

    uniform step = T_L(b)
    active step  = T_L(b) + F_o(B) + F_r(B) [0 if cached] + T_o(b)   (+ F_L(B) for rho)
    one-off      = T_r(examples the reference saw) + F_r(N) for the cache
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Callable, Iterable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from learnability.batch import Batch, apply, batch_len, call, leaves

WALL_CATEGORIES = ("data", "learner", "scoring", "selection", "proxy_train", "reference", "eval")
FLOP_CATEGORIES = ("learner", "scoring", "proxy_train", "reference")


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """FLOPs per example: `forward` alone, and `train` = forward + backward."""

    forward: float
    train: float


def measure_cost(model: nn.Module, in_shape: tuple[int, ...], batch: int = 4) -> ModelCost:
    """Measure per-example forward and forward+backward FLOPs of `model` on `[batch, *in_shape]`.

    Works on a CPU copy, so the caller's model, its BatchNorm statistics and gradients are untouched,
    and draws its input from a private generator, so the global RNG is too; the count does not depend
    on the device the model trains on.
    """
    x = torch.randn(batch, *in_shape, generator=torch.Generator().manual_seed(0))  # leaves the global RNG alone
    return measure_cost_on(model, x)


def measure_cost_on(model: nn.Module, inputs: Batch) -> ModelCost:
    """Per-example FLOPs of `model` on an example batch `inputs` (a tensor, or a tuple / dict of
    tensors passed as `batch.call` does), measured on a CPU copy of the model."""
    return measure_loss_cost(model, lambda m, x: call(m, x), inputs)


def measure_loss_cost(model: nn.Module, loss_fn: Callable[[nn.Module, Batch], object], batch: Batch) -> ModelCost:
    """Per-example FLOPs of `loss_fn(model, batch)` (forward) and of its backward pass, on CPU
    copies of the model and batch: the caller's model, its statistics and gradients are untouched.
    Whatever the function returns (losses, logits, embeddings), the backward pass starts from it."""
    m = copy.deepcopy(model).cpu().float()
    x = apply(batch, lambda t: t.detach().cpu().float() if t.is_floating_point() else t.detach().cpu())
    n = batch_len(x)
    m.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fwd:
        loss_fn(m, x)
    m.train()
    with FlopCounterMode(display=False) as trn:
        out = loss_fn(m, x)
        sum(t.float().square().mean() for t in leaves(out) if t.is_floating_point()).backward()  # loss FLOPs: not counted
    return ModelCost(forward=fwd.get_total_flops() / n, train=trn.get_total_flops() / n)


def conv_flops(c_in: int, c_out: int, k: int, h_out: int, w_out: int) -> float:
    return 2.0 * c_in * c_out * k * k * h_out * w_out


def linear_flops(d_in: int, d_out: int, tokens: int = 1) -> float:
    return 2.0 * d_in * d_out * tokens


def cnn_cost(in_shape: tuple[int, int, int], width: int, num_classes: int) -> ModelCost:
    """Closed-form FLOPs of `models.CNN` per example. Backward costs twice the forward for every
    conv and linear layer, except that the first conv needs no gradient w.r.t. its input."""
    c, h, w = in_shape
    layers = []
    for i, cout in enumerate((width, 2 * width, 4 * width)):
        layers.append(conv_flops(c, cout, 3, h, w))
        c = cout
        if i < 2:
            h, w = h // 2, w // 2
    head = linear_flops(c, num_classes)
    fwd = sum(layers) + head
    return ModelCost(forward=fwd, train=3 * fwd - layers[0])


def mlp_cost(in_shape: tuple[int, int, int], hidden: Iterable[int], num_classes: int) -> ModelCost:
    """Closed-form FLOPs of `models.MLP` per example (first layer: no input gradient)."""
    dims = [in_shape[0] * in_shape[1] * in_shape[2], *hidden, num_classes]
    layers = [linear_flops(a, b) for a, b in zip(dims[:-1], dims[1:])]
    return ModelCost(forward=sum(layers), train=3 * sum(layers) - layers[0])


def vit_cost(in_shape: tuple[int, int, int], patch: int, dim: int, depth: int, num_classes: int, mlp_ratio: int = 2) -> ModelCost:
    """Closed-form FLOPs of `models.ViT` per example: patch embedding, per block qkv + attention
    scores + attention-weighted values + projection + MLP, and the head."""
    c, h, w = in_shape
    t = (h // patch) * (w // patch)
    embed = conv_flops(c, dim, patch, h // patch, w // patch)
    block = (
        linear_flops(dim, 3 * dim, t)
        + 2.0 * t * t * dim  # q @ k^T
        + 2.0 * t * t * dim  # att @ v
        + linear_flops(dim, dim, t)
        + linear_flops(dim, mlp_ratio * dim, t)
        + linear_flops(mlp_ratio * dim, dim, t)
    )
    fwd = embed + depth * block + linear_flops(dim, num_classes)
    return ModelCost(forward=fwd, train=3 * fwd - embed)


def step_flops(
    *,
    learner: ModelCost,
    b: int,
    big_b: int = 0,
    proxy: ModelCost | None = None,
    reference: ModelCost | None = None,
    reference_cached: bool = True,
    learner_scores: bool = False,
    train_proxy: bool = True,
) -> dict[str, float]:
    """FLOPs of one training step by ledger category.

    Args:
        learner: the learner's per-example cost; it trains on `b` examples.
        b: selected batch size. big_b: super-batch size B (0: no selection, a uniform step).
        proxy: online proxy cost; scores B and trains on b when `train_proxy`.
        reference: reference cost; scores B unless `reference_cached`.
        learner_scores: the learner also scores the super-batch (RHO-LOSS style).
    """
    out = {"learner": learner.train * b, "scoring": 0.0, "proxy_train": 0.0}
    if big_b:
        if proxy is not None:
            out["scoring"] += proxy.forward * big_b
            if train_proxy:
                out["proxy_train"] = proxy.train * b
        if reference is not None and not reference_cached:
            out["scoring"] += reference.forward * big_b
        if learner_scores:
            out["scoring"] += learner.forward * big_b
    return out


@dataclasses.dataclass
class Ledger:
    """Cumulative FLOPs and wall-clock seconds by category. `reference` holds the one-off costs
    (reference training and the caching pass); `eval` seconds are kept apart from training."""

    flops: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(FLOP_CATEGORIES, 0.0))
    seconds: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(WALL_CATEGORIES, 0.0))

    def add(self, category: str, flops: float = 0.0, seconds: float = 0.0) -> None:
        if flops:
            self.flops[category] += flops
        if seconds:
            self.seconds[category] += seconds

    def total_flops(self) -> float:
        return sum(self.flops.values())

    def train_seconds(self) -> float:
        """Wall-clock of everything but evaluation, one-off reference work included."""
        return sum(v for k, v in self.seconds.items() if k != "eval")

    def row(self) -> dict[str, float]:
        r = {f"flops_{k}": v for k, v in self.flops.items()}
        r.update({f"seconds_{k}": v for k, v in self.seconds.items()})
        r["flops_total"] = self.total_flops()
        r["seconds_total"] = self.train_seconds()
        return r

    def state_dict(self) -> dict:
        return {"flops": dict(self.flops), "seconds": dict(self.seconds)}

    def load_state_dict(self, state: dict) -> None:
        self.flops, self.seconds = dict(state["flops"]), dict(state["seconds"])
