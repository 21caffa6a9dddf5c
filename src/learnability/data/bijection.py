"""Seeded permutations of `[0, n)` that take O(1) memory: a keyed Feistel network with cycle walking.

`Bijection(n, seed)` maps positions to a shuffled order, `bij(i)`, and back, `bij.inverse(j)`, one
numpy array at a time, without ever materialising the permutation (`torch.randperm(n)` holds 8 bytes
an example). A pool of a billion ids is shuffled, split and corrupted with a few integers of state.

How: the domain is widened to `4**h >= n`, split into two `h`-bit halves, and mixed by six Feistel
rounds whose round function is the splitmix64 finaliser keyed per round (so each round, and the
whole network, is a bijection of `[0, 4**h)`). Values that land at or beyond `n` are mapped again
(cycle walking) until they fall inside; since `4**h < 4 n`, that takes under four rounds on average
and the result is a bijection of `[0, n)`. It is a good shuffle for data order, not a cipher.

`PermutedRange(bij, start, stop)` is positions `start..stop-1` of that order as a lazy index: the
splits of a lazy pool are ranges of one bijection, so a pool, its curated reference set and the
test split are each a few integers.
"""

from __future__ import annotations

import numpy as np

_M64 = (1 << 64) - 1
ROUNDS = 6


def splitmix64(x: int) -> int:
    """One splitmix64 step on a Python int (for deriving keys; exact, no numpy overflow)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def keyed(seed: int, tag: str) -> int:
    """A 64-bit key for one use (`tag`) of a seed, so the splits, noise and stream of one seed differ."""
    import zlib

    return splitmix64((int(seed) & _M64) ^ (zlib.crc32(tag.encode()) << 32))


def mix(values: np.ndarray, key: int) -> np.ndarray:
    """The splitmix64 finaliser of `values ^ key`, elementwise on uint64 (wrapping arithmetic)."""
    x = values.astype(np.uint64, copy=True) ^ np.uint64(key)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


class Bijection:
    """A seeded permutation of `[0, n)`: `bij(i)` is the shuffled value at position `i`,
    `bij.inverse(j)` the position of value `j`. Equal `(n, seed)` give equal permutations."""

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError(f"a bijection needs n >= 1; got {n}")
        self.n, self.seed = int(n), int(seed)
        self.half = max(1, ((self.n - 1).bit_length() + 1) // 2)  # 4**half >= n
        self.mask = np.uint64((1 << self.half) - 1)
        k, self.keys = self.seed & _M64, []
        for _ in range(ROUNDS):
            k = splitmix64(k)
            self.keys.append(k)

    def __len__(self) -> int:
        return self.n

    def _rounds(self, x: np.ndarray, inverse: bool) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self.mask
        if not inverse:
            for key in self.keys:
                left, right = right, left ^ (mix(right, key) & self.mask)
        else:
            for key in reversed(self.keys):
                left, right = right ^ (mix(left, key) & self.mask), left
        return (left << h) | right

    def _walk(self, index: np.ndarray, inverse: bool) -> np.ndarray:
        a = np.asarray(index)
        if a.dtype.kind not in "iu":
            raise ValueError(f"bijection positions must be integers; got {a.dtype}")
        if a.size and (int(a.min()) < 0 or int(a.max()) >= self.n):
            raise IndexError(f"positions must lie in [0, {self.n}); got {int(a.min())}..{int(a.max())}")
        x = a.astype(np.uint64).ravel()
        out = self._rounds(x, inverse)
        todo = np.flatnonzero(out >= np.uint64(self.n))
        while todo.size:  # cycle walking: each loop maps the stragglers again, inside [0, 4**half)
            out[todo] = self._rounds(out[todo], inverse)
            todo = todo[out[todo] >= np.uint64(self.n)]
        return out.astype(np.int64).reshape(a.shape)

    def __call__(self, index: np.ndarray) -> np.ndarray:
        """The permuted values (int64) at positions `index` (any integer array in `[0, n)`)."""
        return self._walk(index, inverse=False)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """The positions (int64) at which `values` appear."""
        return self._walk(values, inverse=True)


class PermutedRange:
    """Positions `start..stop-1` of a bijection's order, as a lazy `[stop - start]` int64 index:
    `r[i]` is `bij(start + i)`. Slicing with step 1 stays lazy; any other index is computed."""

    def __init__(self, bij: Bijection, start: int = 0, stop: int | None = None):
        stop = bij.n if stop is None else stop
        if not 0 <= start <= stop <= bij.n:
            raise ValueError(f"a range [{start}, {stop}) of a bijection of {bij.n}")
        self.bij, self.start, self.stop = bij, int(start), int(stop)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index):
        n = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                return PermutedRange(self.bij, self.start + start, self.start + max(start, stop))
            return self.bij(self.start + np.arange(start, stop, step))
        a = np.asarray(index)
        if a.dtype == np.bool_:
            a = np.flatnonzero(a)
        a = a.astype(np.int64, copy=False)
        if a.size and (int(a.min()) < -n or int(a.max()) >= n):
            raise IndexError(f"index out of range for {n} positions")
        out = self.bij(self.start + np.where(a < 0, a + n, a))
        return int(out) if out.ndim == 0 else out

    def __array__(self, dtype=None, copy=None):
        out = self.bij(self.start + np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"PermutedRange(n={self.bij.n}, seed={self.bij.seed}, [{self.start}, {self.stop}))"
