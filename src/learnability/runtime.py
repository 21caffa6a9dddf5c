"""Start-of-run chores shared by the classification and image-text loops."""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from learnability import config as C
from learnability.device import sync
from learnability.flops import Ledger
from learnability.reference import ReferenceLosses
from learnability.schedule import lr_at
from learnability.scores import NonFiniteLossError, get_score
from learnability.selector import Selector


def start_run(cfg: C.RunConfig) -> tuple[torch.device, bool]:
    """Validate the config, set CPU threads, check the device, save `config.json` into the run
    folder. Returns the device and whether to autocast (bf16 on CUDA)."""
    C.validate(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise C.ConfigError("train.device=cuda but no CUDA device is available; use --train.device=cpu")
    os.makedirs(cfg.out, exist_ok=True)
    C.save(cfg, os.path.join(cfg.out, "config.json"))
    return device, device.type == "cuda"


def super_batch_size(cfg: C.RunConfig, pool_size: int, selecting: bool) -> int:
    """B (b when not selecting); a ConfigError when the pool cannot supply it."""
    b, f = cfg.train.batch_size, cfg.selection.filter_ratio
    big_b = C.super_batch(b, f) if selecting else b
    if big_b > pool_size:
        raise C.ConfigError(f"train.batch_size={b} with selection.filter_ratio={f} draws {big_b} candidates a step "
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
                   **task: object) -> Selector:
    """The Selector of a run from its config (the only place that reads `selection` for it);
    `task` passes the task's loss functions (`loss_fn`, `train_loss_fn`, `pair_loss_fn`, `n_chunks`)."""
    s = cfg.selection
    return Selector(
        score=s.score, batch_size=cfg.train.batch_size, proxy=proxy,
        proxy_optimizer=torch.optim.AdamW(proxy.parameters(), lr=s.proxy_lr) if proxy is not None else None,
        reference=reference, reference_losses=reference_losses,
        learner=learner if "learner" in get_score(s.score).needs else None, sampler=s.sampler,
        temperature=s.temperature, seed=cfg.train.seed + 4, ledger=ledger, autocast=autocast, **task)


def learner_step(learner: nn.Module, optimizer: torch.optim.Optimizer, ema: AveragedModel | None,
                 loss_of: Callable[[], torch.Tensor], *, device: torch.device, autocast: bool,
                 where: str, lr: float | None = None) -> torch.Tensor:
    """One update of the learner: `loss_of()` (under bf16 autocast on CUDA), a NonFiniteLossError
    naming `where` when it is NaN or inf, backward, optimizer step (at learning rate `lr` when given,
    e.g. `learner_lr(cfg, step)`), EMA update. Returns the loss."""
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
    optimizer.step()
    if ema is not None:
        ema.update_parameters(learner)
    sync(device)
    return loss
