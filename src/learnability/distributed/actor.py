"""`ScoringActor`: one shard of the data stream, scored and selected apart from the learner.

A plain class (no Ray import here); `distributed.cluster` wraps it with `ray.remote`. It reuses the
single-process pieces: an `IndexStream` over its shard, a `Selector` (scores, sampler, per-id
reference cache, FLOP ledger) around its copy of the online proxy, and the task's `ScoringPart`
(the pool's columns, the proxy's builder, how the task scores), so it serves every task. Its state
is its position in the stream (`seq`, batches produced) and the selector's generator, so the
learner can restore a restarted actor (or a resumed run's fresh one) to exactly the batch after the
last one it received.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import torch

from learnability.batch import take
from learnability.data import IndexStream
from learnability.data.lazy import LazyImages
from learnability.errors import OutOfOrderError  # noqa: F401  (re-exported)
from learnability.reference import ReferenceLosses
from learnability.scores import get_score
from learnability.selector import Selector
from learnability.tasks import ScoringPart


@dataclasses.dataclass(frozen=True)
class ActorSpec:
    """Plain arguments of a scoring actor (built from the run config by `learner.actor_spec`)."""

    shard: int                 # this actor's shard: pool positions shard, shard + shards, ...
    shards: int
    score: str
    sampler: str
    temperature: float
    batch_size: int            # b
    super_batch: int           # B
    stream_seed: int           # shard 0 uses the loop's seed (train.seed + 5)
    selector_seed: int         # shard 0 uses the loop's seed (train.seed + 4)
    order: str = "permutation"  # the data stream's shuffle (data.order)
    threads: int = 1           # torch CPU threads (the actor's Ray CPUs, at least 1)
    device: str = "cpu"


def shard_positions(n: int, shard: int, shards: int) -> np.ndarray:
    """Pool positions `[~n / shards]` of one shard; the shards are disjoint and cover the pool."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in [0, {shards})")
    return np.arange(shard, n, shards, dtype=np.int64)


def column_rows(column: object, pos: torch.Tensor) -> torch.Tensor:
    """Rows `pos` `[n]` of a pool column: a tensor, a numpy array or a lazy column."""
    return column[pos] if isinstance(column, (LazyImages, torch.Tensor)) else torch.as_tensor(column[pos.numpy()])


class ScoringActor:
    """Draws super-batches from its shard, scores them with the online proxy (weights published
    by the learner) and the reference, selects b of each, and returns the selection.

    Args:
        spec: see `ActorSpec`.
        part: the task's `ScoringPart`: the pool's ids `[N]` and columns (numpy arrays, which Ray
            shares read-only between actors on one node, or lazy columns every actor reads from the
            pool's files; tensors work too), the proxy's builder and the Selector options.
        reference_losses: `(ids [M], losses [M] or rows [M, K])` of the per-id cache, or None.
        reference_state: the frozen reference's weights when losses are not cached, or None.
    """

    def __init__(self, spec: ActorSpec, part: ScoringPart,
                 reference_losses: tuple[np.ndarray, np.ndarray] | None = None, reference_state: dict | None = None):
        torch.set_num_threads(max(1, spec.threads))
        self.spec, self.part = spec, part
        self.device = torch.device(spec.device)
        self.positions = shard_positions(len(part.ids), spec.shard, spec.shards)
        needs = get_score(spec.score).needs
        build = lambda: part.build_proxy().to(self.device)  # noqa: E731
        proxy = build() if "online" in needs else None
        reference, cache = None, None
        if "reference" in needs:
            if reference_losses is not None:
                cache = ReferenceLosses(np.asarray(reference_losses[0]), np.asarray(reference_losses[1]))
            else:
                reference = build()
                reference.load_state_dict(reference_state)
        self.selector = Selector(
            score=spec.score, batch_size=spec.batch_size, proxy=proxy,  # scores only: the learner trains the proxy
            reference=reference, reference_losses=cache, sampler=spec.sampler, temperature=spec.temperature,
            seed=spec.selector_seed, **part.options)
        self.version = -1
        self._reset(0, None)

    def _reset(self, seq: int, generator: torch.Tensor | None) -> None:
        self.stream = IndexStream(len(self.positions), self.spec.super_batch, self.spec.stream_seed, order=self.spec.order)
        for _ in range(seq):  # replay the stream's draws: cheap (a permutation per epoch)
            self.stream.next()
        if generator is not None:
            self.selector.generator.set_state(generator)
        else:
            self.selector.generator.manual_seed(self.spec.selector_seed)
        self.seq = seq

    def restore(self, seq: int, generator: torch.Tensor | None) -> int:
        """Put the actor where it was after producing batch `seq - 1` (a fresh actor is at 0)."""
        self._reset(seq, generator)
        return os.getpid()

    def pid(self) -> int:
        return os.getpid()

    def _load(self, weights: list) -> None:
        version, ref = weights  # ref: an ObjectRef to the state dict (or the dict itself, without Ray)
        if version != self.version and self.selector.proxy is not None:
            if not isinstance(ref, dict):
                import ray

                ref = ray.get(ref)
            self.selector.proxy.load_state_dict(ref)
        self.version = version

    def produce(self, seq: int, weights: list) -> dict:
        """Draw, score and select batch `seq` of this shard with the proxy weights `[version,
        ObjectRef]` (loaded only when the version is new). Returns the selection: `pos`, `ids`
        `[b]` (pool positions, example ids), `batch` (the selected rows of every column, as the
        task's `draw` gives them, on the CPU), the `discarded` ids `[B - b]`, the
        mean candidate losses, this batch's scoring FLOPs and seconds, and the selector's
        generator state after it (for `restore`)."""
        if seq != self.seq:
            raise OutOfOrderError(f"actor {self.spec.shard} is at batch {self.seq}; asked for {seq}")
        self._load(weights)
        ledger = self.selector.ledger
        before_f, before_s = dict(ledger.flops), dict(ledger.seconds)
        t0 = time.perf_counter()
        pos = torch.from_numpy(self.positions[self.stream.next().numpy()])
        batch = tuple(column_rows(c, pos) for c in self.part.columns)
        ids = column_rows(self.part.ids, pos)
        t_data = time.perf_counter() - t0
        sel = self.selector.select_index(tuple(c.to(self.device) for c in batch), ids)
        keep = sel.index.cpu()
        mask = torch.ones(len(ids), dtype=torch.bool)
        mask[keep] = False
        self.seq += 1
        return {
            "actor": self.spec.shard, "seq": seq, "version": self.version, "pid": os.getpid(),
            "pos": pos[keep], "ids": ids[keep], "discarded": ids[mask], "batch": take(batch, keep),
            "drawn": len(ids), "losses": {k: float(v.mean()) for k, v in sel.losses.items()},
            "flops_scoring": ledger.flops["scoring"] - before_f["scoring"],
            "seconds_data": t_data,
            "seconds_scoring": ledger.seconds["scoring"] - before_s["scoring"],
            "seconds_selection": ledger.seconds["selection"] - before_s["selection"],
            "generator": self.selector.generator.get_state(),
        }
