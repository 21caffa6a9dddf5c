"""The learner side of the actor-learner mode: `run_ray(cfg)`, the Ray twin of `loop.run`.

Per step: take the next selected batch from the queue (time spent waiting is the learner's
`idle`), train the learner and the online proxy on it, publish the proxy's weights every
`ray.publish_every` steps, log the same metrics row as the loop plus the batch's actor, proxy
version and staleness, every actor's cumulative scoring FLOPs and seconds, and restarts.

The task (any registered one: `tasks.classify`, `tasks.clip`; the actors get its `scoring_part`),
the models, their seeds and the reference are built by the same `runtime` pieces as in the loop
(this module does not import it), and actor 0 uses the loop's stream and selector seeds, so 1
actor with `publish_every=1, queue_size=1` reproduces the single-process run step for step.
Extra files: `batches.jsonl` (per step: actor, batch number, proxy version, selected and
discarded ids) and `actors.json` (actor process ids).

Checkpoints (`checkpoint.every`) hold the learner's side, as the loop's do, plus the queue's state
(`cluster.BatchQueue.state_dict`: each actor's place in its shard and the requests in flight) and
the per-actor tallies; a resumed run spawns fresh actors and restores them through the same path
that brings back an actor Ray restarted, so it goes on with the batches the uninterrupted run got.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
import torch

from learnability import config as C
from learnability import faults
from learnability.checkpoint import Checkpointer, reopen_metrics
from learnability.data import Coverage
from learnability.device import sync
from learnability.distributed import cluster, stopping
from learnability.distributed.actor import ActorSpec, ScoringActor
from learnability.errors import ConfigError
from learnability.flops import WALL_CATEGORIES, Ledger
from learnability.io import JsonlWriter, atomic_write_text, ids_digest
from learnability.runtime import (build_learner, build_selection, learner_lr, learner_step, proxy_accuracies,
                                  proxy_step, start_run, super_batch_size)
from learnability.tasks import get_task

ACTOR_KEYS = ("flops_scoring", "seconds_data", "seconds_scoring", "seconds_selection")


def actor_specs(cfg: C.RunConfig, big_b: int) -> list[ActorSpec]:
    """One spec per actor; actor 0 uses the single-process loop's seeds."""
    q, t, s = cfg.ray, cfg.train, cfg.selection
    return [ActorSpec(shard=i, shards=q.actors, score=s.score, sampler=s.sampler, temperature=s.temperature,
                      batch_size=t.batch_size, super_batch=big_b,
                      stream_seed=t.seed + 5 + 1000 * i, selector_seed=t.seed + 4 + 1000 * i,
                      order=C.data_order(cfg.data),
                      threads=max(1, round(q.cpus_per_actor)), device="cuda" if q.gpus_per_actor > 0 else "cpu")
            for i in range(q.actors)]


def idle_fraction(ledger: Ledger) -> float:
    """Share of the learner's training wall-clock spent waiting for selected batches."""
    total = ledger.train_seconds()
    return ledger.seconds["idle"] / total if total else 0.0


def run_ray(cfg: C.RunConfig, data: object | None = None, resume: bool = False) -> dict:
    """Train one arm with scoring on Ray actors; returns the summary also written to `summary.json`.
    `data` is the task's data (`get_task(cfg.task).load(cfg)`, so arms can share it), or None to load it.
    `uniform` selects nothing: a ConfigError (it runs with backend=local). Joins or starts Ray first, so an
    unreachable `ray.address` fails before any work; the actors (and an embedded Ray) are shut down
    however the run ends, Ctrl-C included. With `resume`, continue from the newest good checkpoint
    in `cfg.out` (from the start if none)."""
    if cfg.selection.score == "uniform":
        raise ConfigError("selection.score=uniform selects nothing, so it has no actors: run it with backend=local "
                          "(`learnability run` and `compare` do so by themselves)")
    device, autocast = start_run(cfg, resume)
    before = frozenset(stopping.descendants(os.getpid()))  # the caller's own processes: never Ray's to kill
    started = cluster.connect(cfg.ray)
    actors: list = []
    queues: list[cluster.BatchQueue] = []
    try:
        cluster.check_resources(cfg.ray)
        summary = _setup_and_train(cfg, data, device, autocast, actors, queues, resume)
    finally:  # bounded in time, Ctrl-C included (`stopping.shutdown`)
        unused = queues[0].close() if queues else 0
        stopping.shutdown(actors, started, keep=before)
    summary["ray"]["prefetched_unused"] = unused
    atomic_write_text(os.path.join(cfg.out, "summary.json"), json.dumps(summary, indent=2) + "\n")
    return summary


def _setup_and_train(cfg: C.RunConfig, data: object | None, device: torch.device, autocast: bool,
                     actors: list, queues: list, resume: bool) -> dict:
    import ray

    t, q = cfg.train, cfg.ray
    task = get_task(cfg.task)(cfg, data, device, autocast)
    b, big_b = t.batch_size, super_batch_size(cfg, task.pool_size // q.actors, True)

    # Models as in the loop: the learner, the online proxy (trained here) and the frozen reference.
    learner, optimizer, learner_cost, ema, ema_flops = build_learner(cfg, task, device)
    ledger = Ledger(seconds=dict.fromkeys((*WALL_CATEGORIES, "idle"), 0.0))
    selector, _ = build_selection(cfg, task, learner, ledger, device, autocast)  # no online reference (validated)
    proxy, reference, ref_losses = selector.proxy, selector.reference, selector.reference_losses

    # Actors: the task's scoring part goes to the object store once (its pool as numpy arrays, shared
    # read-only on a node; images of a lazy pool stay in their files, which every actor reads), then
    # one actor per shard.
    part = task.scoring_part(ref_losses is not None)
    part = ray.put(dataclasses.replace(part, ids=_shareable(part.ids), columns=tuple(map(_shareable, part.columns))))
    cache = (np.asarray(ref_losses.ids), np.asarray(ref_losses.losses)) if ref_losses is not None else None
    ref_state = _cpu_state(reference) if reference is not None and cache is None else None
    actors += cluster.spawn(q, ScoringActor, [(spec, part, cache, ref_state) for spec in actor_specs(cfg, big_b)])
    queue = cluster.BatchQueue(actors, q.queue_size, q.max_restarts)
    queues.append(queue)
    queue.publish(0, _cpu_state(proxy))
    pids = stopping.wait_started(actors, q.start_timeout_s)
    atomic_write_text(os.path.join(cfg.out, "actors.json"), json.dumps({"pids": pids}) + "\n")
    return _train(cfg, task, queue, learner, optimizer, ema, ema_flops, learner_cost, selector, ledger,
                  device, autocast, b, big_b, pids, resume)


def _shareable(column: object) -> object:
    """A pool column as Ray shares it between the actors of a node: a tensor as a numpy array (read
    without a copy); a lazy column as it is (it reads the pool's files)."""
    return column.numpy() if isinstance(column, torch.Tensor) else column


def _like(batch: tuple, template: tuple) -> tuple:
    """The selected rows `batch` from an actor, on the learner's device and in the memory layout of
    `template` (what `task.draw` gives here): with one channel, the strides of the size-1 dimension
    decide whether a conv takes its channels-last path, which rounds differently in the last bit."""
    return tuple(torch.empty_like(t).copy_(c) for c, t in zip(batch, template))


def _cpu_state(model: torch.nn.Module | None) -> dict:
    return {} if model is None else {n: v.detach().cpu().clone() for n, v in model.state_dict().items()}


def _train(cfg, task, queue, learner, optimizer, ema, ema_flops, learner_cost, selector, ledger, device, autocast,
           b, big_b, pids, resume) -> dict:
    t, q = cfg.train, cfg.ray
    arm = cfg.name or cfg.selection.score
    template = task.draw(torch.arange(b))  # the layout of a drawn batch (`_like`)
    # Everything a resumed run needs: the loop's parts, and the queue (restores the fresh actors).
    coverage = Coverage(task.pool_size)  # the share of the pool trained on so far, as the loop logs it
    parts = {"learner": learner, "optimizer": optimizer, "ema": ema, "selector": selector, "ledger": ledger,
             "queue": queue, "coverage": coverage}
    ckpt = Checkpointer(cfg.out, cfg.checkpoint.every, cfg.checkpoint.keep, resume)
    first, saved, metrics = ckpt.resume(parts, os.path.join(cfg.out, "metrics.jsonl"))
    batches_path = os.path.join(cfg.out, "batches.jsonl")
    batches = reopen_metrics(batches_path, first - 1) if first > 1 else JsonlWriter(batches_path)
    per_actor = saved.get("per_actor", [dict.fromkeys(ACTOR_KEYS, 0.0) for _ in range(q.actors)])
    drawn, discarded = saved.get("drawn", 0), saved.get("discarded", 0)
    accuracy, eval_before = saved.get("accuracy", float("nan")), ledger.seconds["eval"]
    started = time.perf_counter()
    try:
        for step in range(first, t.steps + 1):
            # 1. The next selected batch from the actors; waiting for it is the learner's idle time.
            t0 = time.perf_counter()
            events = len(queue.events)
            out = queue.get(step)
            ledger.add("idle", seconds=time.perf_counter() - t0)
            if len(queue.events) > events:  # an actor was restarted: record its new process
                for e in queue.events[events:]:
                    pids[e["actor"]] = e["pid"]
                atomic_write_text(os.path.join(cfg.out, "actors.json"), json.dumps({"pids": pids}) + "\n")
            a = out["actor"]
            for key in ACTOR_KEYS:
                per_actor[a][key] += out[key]
            ledger.add("scoring", flops=out["flops_scoring"])  # compute spent on the actors (their seconds: per actor)
            drawn, discarded = drawn + out["drawn"], discarded + len(out["discarded"])
            t0 = time.perf_counter()
            pos, batch = out["pos"], _like(out["batch"], template)
            ledger.add("data", seconds=time.perf_counter() - t0)
            row: dict = {"step": step}
            for kind, v in out["losses"].items():
                row[f"loss_{kind}_candidates"] = v

            # 2. Train the learner, then the online proxy on the same batch (as the loop).
            where = f"arm {arm}, at step {step} (files kept in {cfg.out})"
            sync(device)
            t0 = time.perf_counter()
            loss = learner_step(learner, optimizer, ema, lambda: task.train_loss(learner, batch), device=device,
                                autocast=autocast, where=where, lr=learner_lr(cfg, step))
            ledger.add("learner", flops=learner_cost.train * b + ema_flops, seconds=time.perf_counter() - t0)
            if selector.proxy is not None:
                row["loss_proxy"] = proxy_step(selector, batch, where)
            if step % q.publish_every == 0:
                queue.publish(step, _cpu_state(selector.proxy))

            # 3. Log: the loop's row, plus where the batch came from and what the actors spent.
            row.update({"examples_seen": step * b, "candidates_drawn": drawn, "loss_learner": loss.item(),
                        "selected_digest": ids_digest(task.pool_ids[pos]), "distinct_trained": coverage.add(pos),
                        **task.selected(pos)})
            row.update(ledger.row())
            row.update({"actor": a, "actor_batch": out["seq"], "proxy_version": out["version"],
                        "staleness": step - 1 - out["version"], "candidates_discarded": discarded,
                        "actor_restarts": sum(queue.restarts), "requests_reissued": queue.lost,
                        "learner_idle_fraction": idle_fraction(ledger)})
            for i, stats in enumerate(per_actor):
                row.update({f"actor{i}_{key}": v for key, v in stats.items()})
            if step % t.eval_every == 0 or step == t.steps:
                t0 = time.perf_counter()
                row.update(task.evaluate(ema.module if ema is not None else learner, final=step == t.steps))
                ledger.add("eval", seconds=time.perf_counter() - t0)
                row["seconds_eval"] = ledger.seconds["eval"]
                accuracy = row["test_accuracy"]
            metrics.write(row)
            batches.write({"step": step, "actor": a, "seq": out["seq"], "version": out["version"],
                           "selected": out["ids"].tolist(), "discarded": out["discarded"].tolist()})
            ckpt.maybe_save(step, parts, metrics_rows=step, accuracy=accuracy, per_actor=per_actor, drawn=drawn,
                            discarded=discarded)
            faults.point("step")
    finally:
        metrics.close()
        batches.close()
    wall = time.perf_counter() - started

    example = task.draw(torch.arange(2))
    return {
        "arm": arm, "task": cfg.task, "backend": "ray", "steps": t.steps, "batch_size": b, "super_batch": big_b,
        "final_accuracy": accuracy,
        "learner_flops_per_example": {"forward": learner_cost.forward, "train": learner_cost.train},
        "proxy_flops_ratio": (learner_cost.forward / selector.cost("proxy", example).forward)
        if selector.proxy is not None else None,
        "ledger": ledger.state_dict(), "pool_size": task.pool_size,
        "coverage_partial": coverage.partial,  # distinct_trained counted from a resume on, not from step 1
        "eval_split": "validation" if cfg.data.val_size else "test",  # data.val_size: tuning never reads test
        **task.summary(selector, learner_cost, ema_flops, b, big_b),
        **proxy_accuracies(task, selector),  # how strong the small models ended (the learner's copy of the proxy)
        "ray": {"actors": q.actors, "publish_every": q.publish_every, "queue_size": q.queue_size,
                "learner_steps_per_s": (t.steps - first + 1) / (wall - (ledger.seconds["eval"] - eval_before)),
                "learner_idle_fraction": idle_fraction(ledger),
                "restarts": list(queue.restarts), "requests_reissued": queue.lost, "restart_events": queue.events,
                "candidates_drawn": drawn, "candidates_discarded": discarded, "actor_pids": pids,
                "per_actor": per_actor},
    }
