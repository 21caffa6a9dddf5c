"""Tasks: what one kind of training brings to the loop, and their registry.

A task holds its data (pool, curated reference set, test set), builds its models, turns positions
of a stream into batches, gives the learner's loss, evaluates, and describes the examples trained
on. Everything else is shared and lives with the caller: the index stream, the `Selector`, the
ledger, checkpoints and metrics (`learnability.loop`, the single-process loop; the Ray learner in
`learnability.distributed.learner` reuses the same task and `learnability.runtime` pieces).

A task draws from positions it is given, never from a stream of its own, and its metrics entries
depend only on the positions trained on, so a data-parallel learner can hand each replica its own
positions and gather them for the row; the FLOPs and seconds it logs are the `Ledger`'s sums.

Add a task with one module holding a class that satisfies `Task` and `TaskFactory`, registered
with `@register_task("name")` and imported at the bottom of this file, plus its config checks in
`config.validate`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

import torch
from torch import nn

from learnability.batch import Batch
from learnability.flops import Ledger, ModelCost
from learnability.reference import ReferenceLosses
from learnability.scores import get_score


@dataclasses.dataclass(frozen=True)
class ScoringPart:
    """What a scoring actor (`backend=ray`, `distributed.actor`) needs of a task to draw, score and
    select on its own: plain values with no device, picklable, so the learner ships it once."""

    ids: object                          # [N] int64 pool ids: a tensor, numpy array or lazy column
    columns: tuple                       # the pool as `draw` batches it, each [N, ...]: tensors, numpy arrays or lazy columns
    build_proxy: Callable[[], nn.Module]  # a fresh online proxy (the frozen reference shares its architecture)
    options: dict                        # the Selector's keyword arguments (`Task.selector_options`)


@dataclasses.dataclass(frozen=True)
class CorruptionFlags:
    """The pool's ground truth by id, for the oracle scores (`Selector(corrupted_fn=...)`): called
    with ids `[n]`, returns `[n]` float32 values, 0.0 for a clean example and, where the built-in
    noise corrupted it, 1.0 (`oracle`) or its kind's grade (`oracle_graded`). Picklable, so scoring
    actors get it with the other options."""

    ids: torch.Tensor    # [N] int64, sorted
    flags: torch.Tensor  # [N] float32, in the order of `ids`

    @classmethod
    def of(cls, ids: object, corruption: object, grades: dict[int, float] | None = None) -> "CorruptionFlags":
        """From a pool's `ids` and `corruption` codes (0 = clean), tensors or lazy columns; with
        `grades` (code -> grade in [0, 1]), each example's grade instead of 1.0 for every corrupted one."""
        n = len(ids)
        ids, codes = torch.as_tensor(ids[torch.arange(n)]), torch.as_tensor(corruption[torch.arange(n)])
        order = torch.argsort(ids)
        codes = codes[order].long()
        if grades is None:
            return cls(ids[order], (codes != 0).float())
        missing = sorted(set(codes.unique().tolist()) - set(grades) - {0})
        if missing:
            raise ValueError(f"no grade for corruption code(s) {missing}; grades cover {sorted(grades)}")
        table = torch.zeros(int(codes.max()) + 1 if n else 1)
        for code, grade in grades.items():
            if code < len(table):
                table[code] = grade
        return cls(ids[order], table[codes])

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        at = torch.searchsorted(self.ids, ids).clamp_(max=len(self.ids) - 1)
        unknown = self.ids[at] != ids
        if unknown.any():
            raise ValueError(f"{int(unknown.sum())} id(s) are not in the pool, e.g. {ids[unknown][:5].tolist()}; "
                             f"the corruption flags cover the pool's ids only")
        return self.flags[at]


def oracle_options(cfg: object, ids: object, corruption: object, grades: dict[int, float]) -> dict:
    """`corrupted_fn` for the Selector when the run's score reads the ground truth (the oracles),
    else nothing: flags for `oracle`, the task's noise `grades` (code -> [0, 1]) for `oracle_graded`."""
    score = cfg.selection.score
    if "corrupted" not in get_score(score).needs:
        return {}
    return {"corrupted_fn": CorruptionFlags.of(ids, corruption, grades if score == "oracle_graded" else None)}


def class_balance(labels: torch.Tensor, n_classes: int) -> float:
    """The entropy of `labels`' class histogram over the most a batch of its size can have,
    log(min(len(labels), n_classes)): 1 when the batch spreads over as many classes as evenly as it
    can, 0 when one class fills it. A batch drawn uniformly lands under 1 by chance (about 0.98 for
    128 labels of 10 balanced classes, 0.9 for 128 of 100), so compare an arm with the uniform arm.
    Logged per step as `class_balance_selected`: a selection that drifts to a few classes shows here
    before it shows in accuracy."""
    most = min(labels.numel(), n_classes)
    if most < 2:
        return 1.0  # one label, or one class: nothing to spread over
    p = torch.bincount(labels.long().flatten(), minlength=n_classes).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum() / torch.log(torch.tensor(float(most), dtype=torch.float64)))


class Task(Protocol):
    """One kind of training, built by its `TaskFactory` from the run config."""

    pool_size: int              # N: the candidates a stream draws positions from
    pool_ids: torch.Tensor      # [N] int64 stable example ids (the reference cache and digests use them)
    reference_size: int         # examples in the curated set (a reference trained alongside draws from it)

    def build_model(self, role: str) -> nn.Module:
        """A fresh model: `learner`, or `proxy` (the online proxy; the reference shares its
        architecture). The caller seeds it and moves it to the device (`runtime.seeded`)."""

    def learner_cost(self, learner: nn.Module) -> ModelCost:
        """Per-example forward and forward+backward FLOPs of the learner's training step."""

    def prepare_reference(self, model: nn.Module, ledger: Ledger) -> ReferenceLosses | None:
        """Train `model` as the frozen reference (or load it when `reference.dir` holds one trained
        alike), charge its one-off FLOPs and seconds to `ledger`, and return its per-id cache of the
        pool (None when `reference.cache` is off)."""

    def selector_options(self, cached: bool) -> dict:
        """Keyword arguments of the `Selector` saying how this task's models are scored (`loss_fn`,
        `train_loss_fn`, `pair_loss_fn`, ...), `cached` telling whether reference losses come
        from the per-id cache."""

    def scoring_part(self, cached: bool) -> ScoringPart:
        """The pool, the proxy's builder and the scoring options, for scoring actors (`cached`: as
        in `selector_options`)."""

    def draw(self, pos: torch.Tensor, split: str = "pool") -> Batch:
        """The examples at positions `pos` `[n]` of `split` (pool | reference), on the device."""

    def train_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The learner's scalar training loss on `batch`."""

    def reference_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The scalar loss a reference trains on (one trained alongside the learner uses it)."""

    def selected(self, pos: torch.Tensor) -> dict[str, float]:
        """Metrics-row entries about the pool examples at `pos` `[b]` that the learner trained on
        (fractions corrupted by kind, ...)."""

    def evaluate(self, model: nn.Module, final: bool) -> dict[str, float]:
        """Evaluation entries of a metrics row, `test_accuracy` (the target metric) among them;
        `final` at the run's last evaluation."""

    def summary(self, selector: object | None, learner_cost: ModelCost, ema_flops: float, b: int,
                big_b: int) -> dict:
        """Task-specific entries of `summary.json` (the pool's corruption, closed-form step FLOPs, ...)."""


class TaskFactory(Protocol):
    """What the registry holds: `load(cfg)` builds the data, which `compare` builds once and shares
    between arms; calling the factory builds the task (loading the data itself when `data` is None)."""

    def load(self, cfg: object) -> object: ...

    def __call__(self, cfg: object, data: object | None, device: torch.device, autocast: bool) -> Task: ...


_TASKS: dict[str, TaskFactory] = {}


def register_task(name: str) -> Callable[[TaskFactory], TaskFactory]:
    def wrap(factory: TaskFactory) -> TaskFactory:
        _TASKS[name] = factory
        return factory

    return wrap


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> TaskFactory:
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(list_tasks())}")
    return _TASKS[name]


from learnability.tasks import classify, clip  # noqa: E402,F401  (register the built-in tasks)
