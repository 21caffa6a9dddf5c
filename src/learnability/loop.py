"""The single-process training loop: draw -> score -> select -> train. Reads top to bottom.

Writes to the run directory: `config.json` (the resolved config), `metrics.jsonl` (one row per
step: examples, cumulative FLOPs and seconds by category, losses, corrupted fraction selected, and
test accuracy on the evaluation schedule), and `summary.json` at the end.
"""

from __future__ import annotations

import json
import os
import time

import torch
from tqdm.auto import tqdm

from learnability import config as C
from learnability import faults
from learnability.checkpoint import Checkpointer
from learnability.data import CLEAN, DUPLICATE, JUNK, LABEL_NOISE, IndexStream, Splits, build_data
from learnability.data.imageset import ImageSet
from learnability.device import sync
from learnability.flops import Ledger, measure_cost, step_flops
from learnability.io import atomic_write_text, ids_digest
from learnability.losses import cross_entropy
from learnability.models import build_model
from learnability.reference import prepare_reference
from learnability.scores import NonFiniteLossError, get_score
from learnability.runtime import (build_selector, learner_lr, learner_step, make_ema, seeded, selection_window, start_run,
                                  super_batch_size)


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: ImageSet, batch_size: int, device: torch.device, autocast: bool,
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


def build_learner(cfg: C.RunConfig, shape: tuple[int, ...], k: int, device: torch.device):
    """The learner (seeded with train.seed), its AdamW, its measured per-example cost, and the EMA
    of its weights that is evaluated (with that EMA's FLOPs per update)."""
    t = cfg.train
    learner = seeded(lambda: build_model(cfg.model.learner, shape, k), t.seed, device)
    optimizer = torch.optim.AdamW(learner.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    learner_cost = measure_cost(learner, shape)
    ema, ema_flops = make_ema(learner, t.ema)  # evaluated: measures the model, not the step's noise
    return learner, optimizer, learner_cost, ema, ema_flops


def pretrained_reference(cfg: C.RunConfig, splits: Splits, device: torch.device, ledger: Ledger):
    """The frozen reference (seeded with train.seed + 2, the proxy's architecture) trained on the
    curated set (or the pool) or loaded from `reference.dir`, and its per-id loss cache; its
    one-off FLOPs and seconds are charged to `ledger`."""
    r, shape, k = cfg.reference, splits.pool.shape, splits.pool.num_classes
    reference = seeded(lambda: build_model(cfg.model.proxy, shape, k), cfg.train.seed + 2, device)
    ref = prepare_reference(
        reference, measure_cost(reference, shape), ref_dir=r.dir or os.path.join(cfg.out, "reference"),
        train_set=splits.reference if r.train_on == "curated" else splits.pool, pool=splits.pool,
        epochs=r.epochs, batch_size=r.batch_size, lr=r.lr, seed=cfg.train.seed + 2, cache=r.cache,
        device=device, progress=cfg.progress)
    ledger.add("reference", flops=ref.one_off_flops, seconds=ref.one_off_seconds)
    return reference, ref.losses


def run(cfg: C.RunConfig, splits: Splits | None = None, resume: bool = False) -> dict:
    """Train one arm as configured; returns the summary also written to `summary.json`. With
    `resume`, continue from the newest good checkpoint in `cfg.out` (from the start if none)."""
    device, autocast = start_run(cfg)
    t, s = cfg.train, cfg.selection

    # Data: pool (corrupted), curated reference set and test set, all clean but the pool.
    splits = splits if splits is not None else build_data(cfg.data)
    pool, shape, k = splits.pool, splits.pool.shape, splits.pool.num_classes
    selecting = s.score != "uniform"
    b, big_b = t.batch_size, super_batch_size(cfg, len(pool), selecting)
    if device.type == "cuda":
        pool = ImageSet(pool.x.to(device), pool.y, pool.ids, k, pool.corruption, pool.true_y)

    # Models: the learner, and for selection the online proxy and the frozen reference.
    learner, optimizer, learner_cost, ema, ema_flops = build_learner(cfg, shape, k, device)
    ledger = Ledger()
    selector, online_ref = None, None
    if selecting:
        needs = get_score(s.score).needs
        proxy = seeded(lambda: build_model(cfg.model.proxy, shape, k), t.seed + 1, device) if "online" in needs else None
        reference, ref_losses = None, None
        if "reference" in needs and cfg.reference.train_on == "online":  # trained alongside, from scratch
            reference = seeded(lambda: build_model(cfg.model.proxy, shape, k), t.seed + 2, device)
            online_ref = (reference, torch.optim.AdamW(reference.parameters(), lr=cfg.reference.lr),
                          IndexStream(len(splits.reference), b, t.seed + 3))
        elif "reference" in needs:
            reference, ref_losses = pretrained_reference(cfg, splits, device, ledger)
        selector = build_selector(cfg, proxy=proxy, reference=reference, reference_losses=ref_losses,
                                  learner=learner, ledger=ledger, autocast=autocast)
    stream = IndexStream(len(pool), big_b, t.seed + 5, order=C.data_order(cfg.data))

    # Everything a resumed run needs to continue bit for bit (the frozen reference is reloaded).
    parts = {"learner": learner, "optimizer": optimizer, "ema": ema, "selector": selector, "ledger": ledger,
             "stream": stream}
    if online_ref is not None:
        parts.update(zip(("reference_online", "reference_optimizer", "reference_stream"), online_ref))
    ckpt = Checkpointer(cfg.out, cfg.checkpoint.every, cfg.checkpoint.keep, resume)
    first, saved, metrics = ckpt.resume(parts, os.path.join(cfg.out, "metrics.jsonl"))
    accuracy = saved.get("accuracy", float("nan"))
    bar = tqdm(range(first, t.steps + 1), desc=f"train {s.score}", disable=not cfg.progress, leave=False,
               initial=first - 1, total=t.steps)

    for step in bar:
        # 1. Draw B candidates (b when training uniformly).
        t0 = time.perf_counter()
        pos = stream.next()
        x, y, ids = pool.x[pos], pool.y[pos].to(device), pool.ids[pos]
        ledger.add("data", seconds=time.perf_counter() - t0)
        row: dict = {"step": step}

        # 2-3. Score the super-batch with the proxies and select b of it (outside selection.start/end: its first b).
        active, proxy_on = selection_window(cfg, step)
        if selector is not None and not active:
            pos, x, y = pos[:b], x[:b], y[:b]
        elif selector is not None:
            if online_ref is not None:  # a reference trained alongside, on clean curated batches
                sync(device)
                t0 = time.perf_counter()
                ref_model, ref_opt, ref_stream = online_ref
                rp = ref_stream.next()
                ref_model.train()
                ref_loss = cross_entropy(ref_model(splits.reference.x[rp].to(device)), splits.reference.y[rp].to(device)).mean()
                ref_opt.zero_grad(set_to_none=True)
                ref_loss.backward()
                ref_opt.step()
                sync(device)
                ledger.add("proxy_train", flops=selector.cost("reference", (x, y)).train * b, seconds=time.perf_counter() - t0)
            sel = selector.select_index((x, y), ids)
            for kind, v in sel.losses.items():
                row[f"loss_{kind}_candidates"] = float(v.mean())
            pos, x, y = pos[sel.index.cpu()], x[sel.index], y[sel.index]

        # 4. Train the learner on the selection, then the online proxy on the same batch.
        sync(device)
        t0 = time.perf_counter()
        loss = learner_step(learner, optimizer, ema, lambda: cross_entropy(learner(x), y, t.label_smoothing).mean(),
                            device=device, autocast=autocast, where=f"arm {s.score}, at step {step} (files kept in {cfg.out})",
                            lr=learner_lr(cfg, step))
        ledger.add("learner", flops=learner_cost.train * b + ema_flops, seconds=time.perf_counter() - t0)
        if selector is not None and selector.proxy is not None and proxy_on:
            try:
                row["loss_proxy"] = selector.train_proxy((x, y))
            except FloatingPointError as e:
                raise NonFiniteLossError(f"arm {s.score}, step {step}: {e}; the run's files are kept in {cfg.out}") from e

        # Log: examples, cumulative FLOPs and seconds, corrupted fraction selected, accuracy.
        row.update({"examples_seen": step * b, "candidates_drawn": stream.drawn, "loss_learner": loss.item(),
                    "selected_digest": ids_digest(pool.ids[pos]), **selected_by_kind(pool.corruption[pos])})
        row.update(ledger.row())
        if step % t.eval_every == 0 or step == t.steps:
            t0 = time.perf_counter()
            accuracy = evaluate(ema.module if ema is not None else learner, splits.test, t.eval_batch_size, device, autocast,
                                cfg.progress)
            ledger.add("eval", seconds=time.perf_counter() - t0)
            row["test_accuracy"] = accuracy
            bar.set_postfix(acc=f"{accuracy:.3f}")
        metrics.write(row)
        ckpt.maybe_save(step, parts, metrics_rows=step, accuracy=accuracy)
        faults.point("step")
    metrics.close()

    per_step = step_flops(learner=learner_cost, b=b, big_b=big_b if selecting else 0,
                          proxy=selector.cost("proxy", (pool.x[:2], pool.y[:2])) if selector and selector.proxy is not None else None,
                          reference=selector.cost("reference", (pool.x[:2], pool.y[:2])) if selector and selector.reference is not None else None,
                          reference_cached=selector is not None and selector.reference_losses is not None,
                          learner_scores=selector is not None and selector.learner is not None)
    per_step["learner"] += ema_flops
    summary = {
        "arm": s.score, "steps": t.steps, "batch_size": b, "super_batch": big_b, "final_accuracy": accuracy,
        "learner_flops_per_example": {"forward": learner_cost.forward, "train": learner_cost.train},
        "proxy_flops_ratio": (learner_cost.forward / selector.cost("proxy", (pool.x[:2], pool.y[:2])).forward)
        if selector and selector.proxy is not None else None,
        "closed_form_step_flops": per_step, "ledger": ledger.state_dict(),
        "pool_size": len(pool), "pool_corrupted": pool.corrupted_fraction(),
    }
    atomic_write_text(os.path.join(cfg.out, "summary.json"), json.dumps(summary, indent=2) + "\n")
    return summary
