"""Image classification (task=classify): labelled images, a classifier learner, top-1 accuracy.

Data: `data.build_data` (a corrupted pool, a clean curated reference set and a clean test set,
all with stable ids). Models: `models.build_model` (learner and proxy sizes), scored by per-example
cross-entropy. Metrics: the fractions of the trained-on batch corrupted by kind; test accuracy of
the evaluated model.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn
from tqdm.auto import tqdm

from learnability import config as C
from learnability.batch import Batch
from learnability.data import CLEAN, DUPLICATE, JUNK, LABEL_NOISE, Splits, build_data
from learnability.data.imageset import ImageSet
from learnability.flops import Ledger, ModelCost, measure_cost, step_flops
from learnability.losses import cross_entropy
from learnability.models import build_model
from learnability.reference import ReferenceLosses, prepare_reference
from learnability.tasks import ScoringPart, class_balance, oracle_options, register_task


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet, batch_size: int, device: torch.device, autocast: bool,
             progress: bool = False) -> float:
    """Top-1 accuracy of `model` on `data`, in eval mode (its mode is restored)."""
    was = model.training
    model.eval()
    correct = 0
    for i in tqdm(range(0, len(data), batch_size), desc="evaluate", disable=not progress, leave=False):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            pred = model(data.x[i:i + batch_size].to(device)).argmax(1)
        correct += int((pred.cpu() == data.y[i:i + batch_size]).sum())
    model.train(was)
    return correct / len(data)


def selected_by_kind(code: torch.Tensor) -> dict[str, float]:
    """Fractions of the trained-on batch that were corrupted, by kind (codes from `data.corrupt`)."""
    return {"corrupted_selected": float((code != CLEAN).float().mean()),
            "label_noise_selected": float((code == LABEL_NOISE).float().mean()),
            "duplicate_selected": float((code == DUPLICATE).float().mean()),
            "junk_selected": float((code == JUNK).float().mean())}


# How damaged each kind leaves an example, for the graded oracle: a duplicate's label is true
# (redundant), junk carries no class, a flipped label is false.
NOISE_GRADES = {DUPLICATE: 0.25, JUNK: 0.75, LABEL_NOISE: 1.0}


@register_task("classify")
class ClassifyTask:
    """See `tasks.Task`; `data` is `Splits` (built from `cfg.data` when None)."""

    @staticmethod
    def load(cfg: C.RunConfig) -> Splits:
        return build_data(cfg.data)

    def __init__(self, cfg: C.RunConfig, data: Splits | None, device: torch.device, autocast: bool):
        self.cfg, self.device, self.autocast = cfg, device, autocast
        self.splits = data if data is not None else self.load(cfg)
        pool = self.splits.pool
        if device.type == "cuda":  # the pool's images live on the device; labels and ids stay on the CPU
            pool = ImageSet(pool.x.to(device), pool.y, pool.ids, pool.num_classes, pool.corruption, pool.true_y)
        self.pool, self.shape, self.k = pool, pool.shape, pool.num_classes
        self.pool_size, self.pool_ids, self.reference_size = len(pool), pool.ids, len(self.splits.reference)

    def build_model(self, role: str) -> nn.Module:
        return build_model(self.cfg.model.learner if role == "learner" else self.cfg.model.proxy, self.shape, self.k)

    def learner_cost(self, learner: nn.Module) -> ModelCost:
        return measure_cost(learner, self.shape)

    def prepare_reference(self, model: nn.Module, ledger: Ledger) -> ReferenceLosses | None:
        """Trained on the curated set (or the pool, `reference.train_on=pool`), with the seed + 2."""
        r, s = self.cfg.reference, self.splits
        ref = prepare_reference(
            model, measure_cost(model, self.shape), ref_dir=r.dir or os.path.join(self.cfg.out, "reference"),
            train_set=s.reference if r.train_on == "curated" else s.pool, pool=s.pool, epochs=r.epochs,
            batch_size=r.batch_size, lr=r.lr, seed=self.cfg.train.seed + 2, cache=r.cache, device=self.device,
            progress=self.cfg.progress)
        ledger.add("reference", flops=ref.one_off_flops, seconds=ref.one_off_seconds)
        return ref.losses

    def selector_options(self, cached: bool) -> dict:
        # the Selector's defaults: per-example cross-entropy of (x, y)
        return oracle_options(self.cfg, self.splits.pool.ids, self.splits.pool.corruption, NOISE_GRADES)

    def scoring_part(self, cached: bool) -> ScoringPart:
        pool = self.splits.pool  # on the CPU (or lazy), whatever the learner's device
        return ScoringPart(pool.ids, (pool.x, pool.y), functools.partial(build_model, self.cfg.model.proxy, self.shape, self.k),
                           self.selector_options(cached))

    def draw(self, pos: torch.Tensor, split: str = "pool") -> Batch:
        data = self.pool if split == "pool" else self.splits.reference
        return data.x[pos].to(self.device), data.y[pos].to(self.device)

    def train_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return cross_entropy(model(x), y, self.cfg.train.label_smoothing).mean()

    def reference_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return cross_entropy(model(x), y).mean()

    def selected(self, pos: torch.Tensor) -> dict[str, float]:
        """The corrupted shares of the trained-on batch, and the balance of its true classes."""
        return {**selected_by_kind(self.pool.corruption[pos]),
                **({"class_balance_selected": class_balance(self.pool.true_y[pos], self.k)} if self.k > 1 else {})}

    def evaluate(self, model: nn.Module, final: bool) -> dict[str, float]:
        t = self.cfg.train
        return {"test_accuracy": evaluate(model, self.splits.test, t.eval_batch_size, self.device, self.autocast,
                                          self.cfg.progress)}

    def summary(self, selector, learner_cost: ModelCost, ema_flops: float, b: int, big_b: int) -> dict:
        """The closed-form FLOPs of one step by category (`flops.step_flops`) and the pool's corruption."""
        example = self.draw(torch.arange(2))
        per_step = step_flops(
            learner=learner_cost, b=b, big_b=big_b if selector is not None else 0,
            proxy=selector.cost("proxy", example) if selector is not None and selector.proxy is not None else None,
            reference=selector.cost("reference", example) if selector is not None and selector.reference is not None else None,
            reference_cached=selector is not None and selector.reference_losses is not None,
            learner_scores=selector is not None and selector.learner is not None)
        per_step["learner"] += ema_flops
        return {"closed_form_step_flops": per_step, "pool_corrupted": self.pool.corrupted_fraction()}
