"""The pieces every training loop shares, for any task: start-of-run chores, the learner and the
selection set-up from a `tasks.Task`, the learner's update, the online proxy's and an online
reference's updates. `loop.py` (single process) and `distributed/learner.py` (Ray) both use them."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Callable, NamedTuple

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from learnability import config as C
from learnability.batch import Batch, batch_len
from learnability.checkpoint import CheckpointError
from learnability.data.stream import IndexStream
from learnability.device import sync
from learnability.flops import Ledger, ModelCost
from learnability.reference import ReferenceLosses
from learnability.replicas import Replicas, Solo
from learnability.schedule import lr_at
from learnability.scores import NonFiniteLossError, get_score
from learnability.selector import Selector

if TYPE_CHECKING:
    from learnability.tasks import Task


RANK_SEED_STRIDE = 1_000_003  # rank r's selection generator: train.seed + 4 + r * this (rank 0: a single process's)
SOLO = Solo()
PATH_KEYS = (("data", "path"), ("pairs", "path"), ("pairs", "reference_path"), ("pairs", "test_path"),
             ("reference", "dir"), ("pairs", "shard_cache"))


def absolute_paths(cfg: C.RunConfig) -> C.RunConfig:
    """`cfg` with the file and folder paths in `PATH_KEYS` made absolute (those set; "" stays ""),
    so a saved config names the same files when the run is resumed from another folder. Every other
    value is unchanged."""
    for section, key in PATH_KEYS:
        part = getattr(cfg, section)
        if getattr(part, key):
            cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(part, **{key: os.path.abspath(getattr(part, key))})})
    return cfg


def check_unfinished(run_dir: str) -> None:
    """A CheckpointError when `run_dir` holds a finished run (its `summary.json`): resuming it would
    train it again and overwrite its files."""
    if os.path.exists(os.path.join(run_dir, "summary.json")):
        raise CheckpointError(f"{run_dir} holds a finished run (summary.json is there); resuming would train it again "
                              f"and overwrite its files, so nothing was done. To train it again, start a new run into "
                              f"another folder: learnability run --out=NEW_DIR ...")


def start_run(cfg: C.RunConfig, resume: bool = False, device: torch.device | None = None,
              main: bool = True) -> tuple[torch.device, bool]:
    """Validate the config, set CPU threads, check the device, save `config.json` (with absolute
    paths) into the run folder (`main`: the process that writes files). Returns the device
    (`device`, else `train.device`) and whether to autocast (bf16 on CUDA). With `resume`, a
    finished run is refused before anything is written (`check_unfinished`)."""
    if resume:
        check_unfinished(cfg.out)
    C.validate(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = device if device is not None else torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise C.ConfigError("train.device=cuda but no CUDA device is available; use --train.device=cpu")
    if main:
        os.makedirs(cfg.out, exist_ok=True)
        C.save(absolute_paths(cfg), os.path.join(cfg.out, "config.json"))
    return device, device.type == "cuda"


def super_batch_size(cfg: C.RunConfig, pool_size: int, selecting: bool, ranks: int = 1) -> int:
    """B per rank (b when not selecting); a ConfigError when the pool cannot supply all `ranks` of them."""
    b, f = cfg.train.batch_size, cfg.selection.filter_ratio
    big_b = C.super_batch(b, f) if selecting else b
    if big_b * ranks > pool_size:
        on = f" on each of {ranks} ranks" if ranks > 1 else ""
        raise C.ConfigError(f"train.batch_size={b} with selection.filter_ratio={f} draws {big_b} candidates a step{on} "
                            f"but the pool holds only {pool_size}; lower the batch size or the ratio")
    return big_b


def seeded(build: Callable[[], nn.Module], seed: int, device: torch.device) -> nn.Module:
    """`build()` with its weights drawn from `seed`, leaving the caller's global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().to(device)


def learner_lr(cfg: C.RunConfig, step: int) -> float:
    """The learner's learning rate at update `step` (1-based): `train.lr` under `train.warmup` and
    `train.schedule` (`schedule.lr_at`); the same for every arm."""
    t = cfg.train
    return lr_at(step, lr=t.lr, steps=t.steps, warmup=t.warmup, schedule=t.schedule, final_fraction=t.final_lr_fraction)


def selection_window(cfg: C.RunConfig, step: int) -> tuple[bool, bool]:
    """At update `step`: (select from the super-batch, train the online proxy). Selection runs from
    `selection.start` to `selection.end` (0: the last step); outside it the learner trains on the
    first b of the super-batch (a uniform draw). The proxy trains until selection ends (before a late
    start too, so it has followed the learner's curriculum when selection begins)."""
    s = cfg.selection
    before_end = s.end == 0 or step <= s.end
    return s.start <= step and before_end, before_end


def make_ema(model: nn.Module, decay: float) -> tuple[AveragedModel | None, float]:
    """An EMA of the model's weights and BN buffers (None when decay is 0), and its FLOPs per
    update (3 per parameter). Evaluating it measures the model, not the last step's noise."""
    if not decay:
        return None, 0.0
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    return ema, 3.0 * sum(p.numel() for p in model.parameters())


def build_selector(cfg: C.RunConfig, *, proxy: nn.Module | None, reference: nn.Module | None,
                   reference_losses: ReferenceLosses | None, learner: nn.Module, ledger: Ledger, autocast: bool,
                   rank: int = 0, grad_sync: Callable[[nn.Module], None] | None = None, **task: object) -> Selector:
    """The Selector of a run from its config (the only place that reads `selection` for it);
    `task` passes the task's loss functions (`loss_fn`, `train_loss_fn`, `pair_loss_fn`, `n_chunks`).
    Each data-parallel `rank` samples with its own generator; `grad_sync` syncs the proxy's gradients."""
    s = cfg.selection
    return Selector(
        score=s.score, batch_size=cfg.train.batch_size, proxy=proxy,
        proxy_optimizer=torch.optim.AdamW(proxy.parameters(), lr=s.proxy_lr) if proxy is not None else None,
        reference=reference, reference_losses=reference_losses,
        learner=learner if "learner" in get_score(s.score).needs else None, sampler=s.sampler,
        temperature=s.temperature, seed=cfg.train.seed + 4 + RANK_SEED_STRIDE * rank, ledger=ledger,
        autocast=autocast, grad_sync=grad_sync, **task)


def learner_step(learner: nn.Module, optimizer: torch.optim.Optimizer, ema: AveragedModel | None,
                 loss_of: Callable[[], torch.Tensor], *, device: torch.device, autocast: bool,
                 where: str, lr: float | None = None, grad_sync: Callable[[nn.Module], None] | None = None
                 ) -> torch.Tensor:
    """One update of the learner: `loss_of()` (under bf16 autocast on CUDA), a NonFiniteLossError
    naming `where` when it is NaN or inf, backward, `grad_sync(learner)` when given (data-parallel
    replicas average their gradients), optimizer step (at learning rate `lr` when given, e.g.
    `learner_lr(cfg, step)`), EMA update. Returns the loss."""
    learner.train()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        loss = loss_of()
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"{where}: the learner's loss is {loss.item()}; lower train.lr or check the data "
                                 f"for NaN/inf values")
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_sync is not None:
        grad_sync(learner)
    optimizer.step()
    if ema is not None:
        ema.update_parameters(learner)
    sync(device)
    return loss


def build_learner(cfg: C.RunConfig, task: "Task", device: torch.device
                  ) -> tuple[nn.Module, torch.optim.Optimizer, ModelCost, AveragedModel | None, float]:
    """The learner (seeded with train.seed), its AdamW, its measured per-example cost, and the EMA
    of its weights that is evaluated (with that EMA's FLOPs per update)."""
    t = cfg.train
    learner = seeded(lambda: task.build_model("learner"), t.seed, device)
    optimizer = torch.optim.AdamW(learner.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    cost = task.learner_cost(learner)
    ema, ema_flops = make_ema(learner, t.ema)  # evaluated: measures the model, not the step's noise
    return learner, optimizer, cost, ema, ema_flops


class OnlineReference(NamedTuple):
    """A reference trained alongside the learner from scratch (`reference.train_on=online`)."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    stream: IndexStream  # over the curated set


def build_selection(cfg: C.RunConfig, task: "Task", learner: nn.Module, ledger: Ledger, device: torch.device,
                    autocast: bool, rep: Replicas = SOLO) -> tuple[Selector, OnlineReference | None]:
    """The Selector of a selecting run, with the online proxy (seeded with train.seed + 1) and the
    reference (the proxy's architecture, train.seed + 2): trained alongside on curated batches
    (`reference.train_on=online`; returned too, its stream seeded with train.seed + 3), or trained
    or loaded by the task before the run, with its per-id cache. Data-parallel: every rank builds the
    same proxy and reference; rank 0 trains the reference first and the others load it, and its
    one-off cost is charged once (to rank 0's ledger)."""
    t, needs = cfg.train, get_score(cfg.selection.score).needs
    proxy = seeded(lambda: task.build_model("proxy"), t.seed + 1, device) if "online" in needs else None
    reference, cached, online = None, None, None
    if "reference" in needs:
        reference = seeded(lambda: task.build_model("proxy"), t.seed + 2, device)
        if cfg.reference.train_on == "online":
            online = OnlineReference(reference, torch.optim.AdamW(reference.parameters(), lr=cfg.reference.lr),
                                     IndexStream(task.reference_size, t.batch_size * rep.world, t.seed + 3))
        else:
            if rep.main:
                cached = task.prepare_reference(reference, ledger)
            rep.barrier()  # the others load what rank 0 trained and cached
            if not rep.main:
                cached = task.prepare_reference(reference, ledger)
                ledger.flops["reference"], ledger.seconds["reference"] = 0.0, 0.0
    selector = build_selector(cfg, proxy=proxy, reference=reference, reference_losses=cached, learner=learner,
                              ledger=ledger, autocast=autocast, rank=rep.rank,
                              grad_sync=rep.sync if rep.world > 1 else None, **task.selector_options(cached is not None))
    return selector, online


def online_reference_step(online: OnlineReference, task: "Task", selector: Selector, candidates: Batch,
                          device: torch.device, rep: Replicas = SOLO) -> None:
    """One update of a reference trained alongside, on the next curated batch (this rank's part of
    it); its FLOPs (measured on batches shaped like `candidates`) and seconds are charged to `proxy_train`."""
    sync(device)
    t0 = time.perf_counter()
    batch = task.draw(rep.part(online.stream.next()), "reference")
    online.model.train()
    loss = task.reference_loss(online.model, batch)
    online.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    rep.sync(online.model)
    online.optimizer.step()
    sync(device)
    selector.ledger.add("proxy_train", flops=selector.cost("reference", candidates).train * batch_len(batch),
                        seconds=time.perf_counter() - t0)


def proxy_step(selector: Selector, batch: Batch, where: str) -> float:
    """`selector.train_proxy(batch)`; a diverged proxy is a NonFiniteLossError naming `where`."""
    try:
        return selector.train_proxy(batch)
    except FloatingPointError as e:
        raise NonFiniteLossError(f"{where}: {e}") from e


def proxy_accuracies(task: "Task", selector: Selector | None) -> dict[str, float]:
    """The run's small models scored by the learner's own evaluation at the end of the run: the
    reference's `test_accuracy` (`reference_accuracy`; frozen, or as trained alongside) and the
    online proxy's (`proxy_accuracy`). On the image-text bench learnability beat the reference alone
    only where the reference was strong enough (docs/image-text-benchmark.md points 8c-8e); these say
    how strong a run's were. Empty without selection (rank 0 alone evaluates)."""
    if selector is None:
        return {}
    out = {}
    for key, model in (("reference_accuracy", selector.reference), ("proxy_accuracy", selector.proxy)):
        if model is not None:
            training = model.training
            out[key] = float(task.evaluate(model, final=False)["test_accuracy"])
            model.train(training)
    return out
