"""`IndexStream`: an endless stream of index batches over a pool, reshuffled every epoch."""

from __future__ import annotations

import torch


class IndexStream:
    """Yields `[batch]` int64 positions into a pool of `n` examples, without replacement within an
    epoch; a batch that crosses an epoch boundary takes the rest of one epoch and the start of the
    next. Holds its own generator; `state_dict()` captures the exact position. The epoch's
    permutation is kept as int32 below 2**31 examples (4 bytes an example, not 8): `randperm`
    draws the same values for either dtype, so the stream is exactly what an int64 one gives."""

    def __init__(self, n: int, batch: int, seed: int):
        if n < 1:
            raise ValueError("the pool is empty")
        if batch < 1:
            raise ValueError(f"batch size must be positive; got {batch}")
        self.n, self.batch = n, batch
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.pos, self.drawn = 0, 0, 0
        self.dtype = torch.int32 if n < 2 ** 31 else torch.int64
        self.perm = self._shuffle()

    def _shuffle(self) -> torch.Tensor:
        return torch.randperm(self.n, generator=self.generator, dtype=self.dtype)

    def next(self) -> torch.Tensor:
        parts, need = [], self.batch
        while need:
            take = min(need, self.n - self.pos)
            parts.append(self.perm[self.pos:self.pos + take])
            self.pos += take
            need -= take
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self.perm = self._shuffle()
        self.drawn += self.batch
        return torch.cat(parts).long()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "drawn": self.drawn, "perm": self.perm.clone(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos, self.drawn = state["epoch"], state["pos"], state["drawn"]
        self.perm = state["perm"].to(self.dtype, copy=True)  # a saved int64 permutation loads too
        self.generator.set_state(state["generator"])
