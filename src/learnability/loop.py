"""The single-process training loop, for every task: draw -> score -> select -> train. Reads top to bottom.

The task (`learnability.tasks`, chosen by `cfg.task`) brings the data, the models, the learner's
loss and the evaluation; this loop owns the rest. Writes to the run directory: `config.json` (the
resolved config), `metrics.jsonl` (one row per step: examples, cumulative FLOPs and seconds by
category, losses, what was selected, and the task's evaluation on the schedule), and `summary.json`
at the end. The actor-learner mode (`learnability.distributed`) reuses the same pieces; this file
imports nothing distributed.
"""

from __future__ import annotations

import json
import os
import time

import torch
from tqdm.auto import tqdm

from learnability import config as C
from learnability import faults
from learnability.batch import rows, take
from learnability.checkpoint import Checkpointer
from learnability.data import Coverage, IndexStream
from learnability.device import sync
from learnability.flops import Ledger
from learnability.io import atomic_write_text, ids_digest
from learnability.replicas import join
from learnability.runtime import (build_learner, build_selection, learner_lr, learner_step, online_reference_step,
                                  proxy_accuracies, proxy_step, selection_window, start_run,
                                  super_batch_size)
from learnability.tasks import get_task


def run(cfg: C.RunConfig, data: object | None = None, resume: bool = False) -> dict:
    """Train one arm as configured; returns the summary also written to `summary.json`. `data` is
    the task's data (`get_task(cfg.task).load(cfg)`, so arms can share it), or None to load it.
    With `resume`, continue from the newest good checkpoint in `cfg.out` (from the start if none).
    Started by a launcher on N ranks (`learnability.launch`), it trains one of the N replicas."""
    rep, device = join(cfg.train.device)  # one process, or rank `rep.rank` of `rep.world`
    device, autocast = start_run(cfg, resume, device, main=rep.main)
    t, s = cfg.train, cfg.selection
    arm = cfg.name or s.score

    # Data: the task's pool (corrupted), curated reference set and test set.
    task = get_task(cfg.task)(cfg, data, device, autocast)
    selecting = s.score != "uniform"
    b, big_b = t.batch_size, super_batch_size(cfg, task.pool_size, selecting, ranks=rep.world)

    # Models: the learner (an EMA of it is evaluated), and for selection the online proxy and the reference.
    learner, optimizer, learner_cost, ema, ema_flops = build_learner(cfg, task, device)
    ledger = Ledger()  # this rank's; rows log the sum over ranks
    selector, online_ref = build_selection(cfg, task, learner, ledger, device, autocast, rep) if selecting else (None, None)
    stream = IndexStream(task.pool_size, big_b * rep.world, t.seed + 5, order=C.data_order(cfg.data))  # every rank's draws

    # Everything a resumed run needs to continue bit for bit (a frozen reference is reloaded);
    # `local`: what differs by rank (its selection generator, its ledger).
    coverage = Coverage(task.pool_size)  # the share of the pool trained on so far (every rank's batches)
    parts = {"learner": learner, "optimizer": optimizer, "ema": ema, "stream": stream, "coverage": coverage}
    if online_ref is not None:
        parts.update(zip(("reference_online", "reference_optimizer", "reference_stream"), online_ref))
    local = {"selector": selector, "ledger": ledger}
    ckpt = Checkpointer(cfg.out, cfg.checkpoint.every, cfg.checkpoint.keep, resume, rep)
    first, saved, metrics = ckpt.resume(parts, os.path.join(cfg.out, "metrics.jsonl"), local)
    accuracy = saved.get("accuracy", float("nan"))
    bar = tqdm(range(first, t.steps + 1), desc=f"train {arm}", disable=not (cfg.progress and rep.main), leave=False,
               initial=first - 1, total=t.steps)

    wall, eval_before = time.perf_counter(), ledger.seconds["eval"]
    for step in bar:
        where = f"arm {arm}, at step {step} (files kept in {cfg.out})"
        # 1. Draw B candidates (b when training uniformly): this rank's part of the stream's draw.
        t0 = time.perf_counter()
        pos = rep.part(stream.next())
        batch, ids = task.draw(pos), task.pool_ids[pos]
        ledger.add("data", seconds=time.perf_counter() - t0)
        row: dict = {"step": step}
        losses: dict[str, float] = {}

        # 2-3. Score the super-batch with the proxies and select b of it (outside selection.start/end: its first b).
        active, proxy_on = selection_window(cfg, step)
        if selector is not None and not active:
            pos, batch = pos[:b], rows(batch, 0, b)
        elif selector is not None:
            if online_ref is not None:  # a reference trained alongside, on clean curated batches
                online_reference_step(online_ref, task, selector, batch, device, rep)
            sel = selector.select_index(batch, ids)
            for kind, v in sel.losses.items():
                losses[f"loss_{kind}_candidates"] = float(v.mean())
            pos, batch = pos[sel.index.cpu()], take(batch, sel.index)

        # 4. Train the learner on the selection, then the online proxy on the same batch (replicas average gradients).
        sync(device)
        t0 = time.perf_counter()
        loss = learner_step(learner, optimizer, ema, lambda: task.train_loss(learner, batch), device=device,
                            autocast=autocast, where=where, lr=learner_lr(cfg, step), grad_sync=rep.sync)
        ledger.add("learner", flops=learner_cost.train * b + ema_flops, seconds=time.perf_counter() - t0)
        if selector is not None and selector.proxy is not None and proxy_on:
            losses["loss_proxy"] = proxy_step(selector, batch, where)

        # Log: examples, what every rank selected, cumulative FLOPs and seconds of all ranks; the evaluation on its schedule.
        trained = rep.gather(pos)  # [world * b] in rank order
        row.update(rep.mean({**losses, "loss_learner": loss.item()}))
        row.update({"examples_seen": step * b * rep.world, "candidates_drawn": stream.drawn,
                    "selected_digest": ids_digest(task.pool_ids[trained]), "distinct_trained": coverage.add(trained),
                    **task.selected(trained)})
        row.update(rep.total(ledger).row())
        if rep.main and (step % t.eval_every == 0 or step == t.steps):
            t0 = time.perf_counter()
            row.update(task.evaluate(ema.module if ema is not None else learner, final=step == t.steps))
            ledger.add("eval", seconds=time.perf_counter() - t0)
            row["seconds_eval"] = ledger.seconds["eval"]  # rank 0 alone evaluates
            accuracy = row["test_accuracy"]
            bar.set_postfix(acc=f"{accuracy:.3f}")
        metrics.write(row)
        ckpt.maybe_save(step, parts, metrics_rows=step, local=local, accuracy=accuracy)
        faults.point("step")
    metrics.close()
    wall = time.perf_counter() - wall - (ledger.seconds["eval"] - eval_before)  # rank 0's steps, evaluation excluded

    example = task.draw(torch.arange(2))
    summary = {
        "arm": arm, "task": cfg.task, "steps": t.steps, "batch_size": b, "super_batch": big_b, "ranks": rep.world,
        "final_accuracy": accuracy, "learner_flops_per_example": {"forward": learner_cost.forward, "train": learner_cost.train},
        "proxy_flops_ratio": learner_cost.forward / selector.cost("proxy", example).forward
        if selector is not None and selector.proxy is not None else None,
        "ledger": rep.total(ledger).state_dict(), "pool_size": task.pool_size,
        "coverage_partial": coverage.partial,  # distinct_trained counted from a resume on, not from step 1
        "eval_split": "validation" if cfg.data.val_size else "test",  # data.val_size: tuning never reads test
        "loop": {"steps": t.steps - first + 1, "seconds": wall},  # this process's steps and their wall-clock
        **task.summary(selector, learner_cost, ema_flops, b, big_b),
        **(proxy_accuracies(task, selector) if rep.main else {}),  # how strong the small models ended
    }
    if rep.main:
        atomic_write_text(os.path.join(cfg.out, "summary.json"), json.dumps(summary, indent=2) + "\n")
    return summary
