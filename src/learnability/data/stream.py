"""`IndexStream`: an endless stream of index batches over a pool, reshuffled every epoch."""

from __future__ import annotations

import numpy as np
import torch

from learnability.data.bijection import Bijection, keyed


class IndexStream:
    """Yields `[batch]` int64 positions into a pool of `n` examples, without replacement within an
    epoch; a batch that crosses an epoch boundary takes the rest of one epoch and the start of the
    next. `state_dict()` captures the exact position.

    `order="permutation"`: each epoch is a `torch.randperm` from the stream's own generator, kept
    as int32 below 2**31 examples (4 bytes an example; `randperm` draws the same values for either
    dtype, so the stream is exactly what an int64 one gives).
    `order="bijection"`: epoch `e` is the seeded bijection `Bijection(n, key(seed, e))`, computed
    for the positions each batch needs: O(1) memory whatever the pool's size (`data.order`)."""

    def __init__(self, n: int, batch: int, seed: int, order: str = "permutation"):
        if n < 1:
            raise ValueError("the pool is empty")
        if batch < 1:
            raise ValueError(f"batch size must be positive; got {batch}")
        if order not in ("permutation", "bijection"):
            raise ValueError(f"unknown stream order {order!r}; choose permutation or bijection")
        self.n, self.batch, self.seed, self.order = n, batch, seed, order
        self.epoch, self.pos, self.drawn = 0, 0, 0
        self.generator = torch.Generator().manual_seed(seed)
        self.dtype = torch.int32 if n < 2 ** 31 else torch.int64
        self.perm = self._shuffle() if order == "permutation" else None
        self._bij: Bijection | None = None

    def _shuffle(self) -> torch.Tensor:
        return torch.randperm(self.n, generator=self.generator, dtype=self.dtype)

    def _epoch_part(self, start: int, stop: int) -> torch.Tensor:
        if self.perm is not None:
            return self.perm[start:stop]
        if self._bij is None or self._bij.seed != keyed(self.seed, f"epoch {self.epoch}"):
            self._bij = Bijection(self.n, keyed(self.seed, f"epoch {self.epoch}"))
        return torch.from_numpy(self._bij(np.arange(start, stop, dtype=np.int64)))

    def next(self) -> torch.Tensor:
        parts, need = [], self.batch
        while need:
            take = min(need, self.n - self.pos)
            parts.append(self._epoch_part(self.pos, self.pos + take))
            self.pos += take
            need -= take
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                if self.perm is not None:
                    self.perm = self._shuffle()
        self.drawn += self.batch
        return torch.cat(parts).long()

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "pos": self.pos, "drawn": self.drawn, "order": self.order}
        if self.perm is not None:
            state.update(perm=self.perm.clone(), generator=self.generator.get_state())
        return state

    def load_state_dict(self, state: dict) -> None:
        order = state.get("order", "permutation")  # checkpoints from before data.order are permutation streams
        if order != self.order:
            raise ValueError(f"the checkpoint's data stream is a {order} stream but this run's is {self.order}; "
                             f"resume with the data.order it was written with")
        self.epoch, self.pos, self.drawn = state["epoch"], state["pos"], state["drawn"]
        if self.perm is not None:
            self.perm = state["perm"].to(self.dtype, copy=True)  # a saved int64 permutation loads too
            self.generator.set_state(state["generator"])


class Coverage:
    """How much of a pool of `n` examples the learner has trained on: one bit per example (n / 8
    bytes, so a 10^9-example pool costs 125 MB), and the count of those set. A selection method
    that keeps drawing the same few examples shows here before it shows in accuracy."""

    def __init__(self, n: int):
        if n < 1:
            raise ValueError("the pool is empty")
        self.n, self.count = n, 0
        self.bits = np.zeros((n + 7) // 8, dtype=np.uint8)
        self.partial = False  # counting began after step 1 (a resume from a checkpoint that lacked it)

    def started_late(self) -> None:
        """Counting starts now, not at step 1 (`checkpoint.restore` calls it for a checkpoint written
        before coverage was saved); `partial` says so in the run's summary and report."""
        self.partial = True

    def add(self, pos: torch.Tensor) -> float:
        """Mark the positions `pos` (any shape, repeats allowed) as trained on; returns the share of
        the pool trained on at least once so far."""
        p = np.unique(pos.detach().cpu().numpy().astype(np.int64).ravel())
        if p.size and (p[0] < 0 or p[-1] >= self.n):
            raise ValueError(f"positions must lie in [0, {self.n}); got min {p[0]}, max {p[-1]}")
        byte, mask = p >> 3, (1 << (p & 7)).astype(np.uint8)
        self.count += int(((self.bits[byte] & mask) == 0).sum())
        np.bitwise_or.at(self.bits, byte, mask)
        return self.count / self.n

    def state_dict(self) -> dict:
        return {"n": self.n, "count": self.count, "bits": torch.from_numpy(self.bits.copy()), "partial": self.partial}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n:
            raise ValueError(f"the checkpoint's coverage is of a {state['n']}-example pool; this run's has {self.n}")
        self.count, self.bits = int(state["count"]), state["bits"].numpy().copy()
        self.partial = bool(state.get("partial", False))
