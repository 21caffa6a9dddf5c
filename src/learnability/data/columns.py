"""Lazy row maps and per-id columns: a pool's labels, ids and corruption codes without holding them.

A *row map* turns positions `[0, len)` of a (sub)set into rows of its backing store. It is an int
numpy array (explicit), or one of the lazy maps here and in `bijection` that hold a few integers:
`Range` (an arange), `PermutedRange` (a range of a seeded bijection's order) and `Chain` (one map
indexed by another). Indexing any map with a slice gives a map (lazy stays lazy); indexing with an
integer array gives the rows as an int64 array; `np.asarray(map)` materialises it. `compose(rows,
index)` is `rows[index]` as a map, which is how subsets of lazy sets compose without copying.

A `LazyColumn` is an `[N]` column read from a `ColumnStore` at a row map, behaving like the int
tensor it stands for where a run uses it: `col[positions]`, `col[i:j]` and `col[k]` give tensors,
`col.take(index)` a lazy subset, `col.chunks()` the values in order. Stores: `NpyColumn` (a 1-D
integer `.npy`, read with `os.pread` so the page cache, not the process, holds the file),
`RowNumbers` (the row number itself: the stable ids of file-backed sources), `Zeros`, and the
seeded label noise of `data.corrupt` (`NoisyLabels`, `NoiseCodes`), computed per position.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np
import torch

from learnability.data.bijection import Bijection, PermutedRange, mix

Index = torch.Tensor | np.ndarray | slice | int


class Range:
    """`np.arange(start, start + len * step, step)` as a lazy row map."""

    def __init__(self, start: int, length: int, step: int = 1):
        if length < 0:
            raise ValueError(f"a range of negative length {length}")
        self.start, self.length, self.step = int(start), int(length), int(step)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self.length)
            return Range(self.start + start * self.step, len(range(start, stop, step)), self.step * step)
        a = _check(np.asarray(index), self.length)
        out = self.start + a * self.step
        return int(out) if out.ndim == 0 else out

    def __array__(self, dtype=None, copy=None):
        out = self.start + np.arange(self.length, dtype=np.int64) * self.step
        return out if dtype is None else out.astype(dtype)


class Chain:
    """`rows[index[i]]`: one row map indexed by another, lazily."""

    def __init__(self, rows, index):
        self.rows, self.index = rows, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Chain(self.rows, self.index[index])
        inner = self.index[index]
        return self.rows[inner] if isinstance(inner, (int, np.integer)) else self.rows[np.asarray(inner)]

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self.rows[np.asarray(self.index)], dtype=np.int64)
        return out if dtype is None else out.astype(dtype)


LAZY_MAPS = (Range, PermutedRange, Chain)


def is_lazy_map(rows) -> bool:
    return isinstance(rows, LAZY_MAPS)


def _check(a: np.ndarray, n: int) -> np.ndarray:
    if a.dtype == np.bool_:
        a = np.flatnonzero(a)
    if a.dtype.kind not in "iu":
        raise IndexError(f"positions must be integers; got {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.size and (int(a.min()) < -n or int(a.max()) >= n):
        raise IndexError(f"position {int(a.max()) if int(a.max()) >= n else int(a.min())} is out of range for {n} rows")
    return np.where(a < 0, a + n, a)


def as_index(index: Index):
    """A tensor, array, slice, int or lazy map as something row maps accept (numpy, not torch)."""
    if isinstance(index, torch.Tensor):
        return index.cpu().numpy()
    if isinstance(index, np.ndarray) and index.dtype == np.bool_:
        return np.flatnonzero(index)
    return index


def lookup(rows, index: Index) -> np.ndarray | int:
    """The rows at `index` (int for an int index, else an int64 array): `rows[index]` materialised."""
    index = as_index(index)
    if is_lazy_map(index):
        index = np.asarray(index)
    out = rows[index]
    if isinstance(out, (int, np.integer)):
        return int(out)
    return np.asarray(out, dtype=np.int64)


def compose(rows, index: Index):
    """`rows[index]` as a row map: lazy for a slice or a lazy index, explicit for an array index
    (the subset is then as big as that array anyway)."""
    index = as_index(index)
    if isinstance(index, slice):
        return rows[index]
    if is_lazy_map(index):
        if isinstance(rows, Range) and rows.start == 0 and rows.step == 1:
            return index  # the identity over a whole store: the index is the map
        return Chain(rows, index)
    return compact_rows(np.atleast_1d(lookup(rows, index)))


def compact_rows(rows: np.ndarray) -> np.ndarray:
    """Row numbers as int32 when they fit (4 bytes a row, not 8), else int64."""
    return rows.astype(np.int32 if not rows.size or int(rows.max()) < 2 ** 31 else np.int64, copy=False)


def to_tensor_index(index: Index) -> torch.Tensor | slice | int:
    """An index for an in-memory tensor: lazy maps materialised, arrays as int64 tensors."""
    index = as_index(index)
    if is_lazy_map(index):
        return torch.from_numpy(np.asarray(index, dtype=np.int64))
    if isinstance(index, np.ndarray):
        return torch.from_numpy(index.astype(np.int64, copy=False))
    return index


class ColumnStore(Protocol):
    """Values of one per-id column, read by row number."""

    dtype: torch.dtype

    def __len__(self) -> int: ...

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Values `[len(rows)]` at the int64 `rows`."""
        ...


def npy_header(path: str, what: str, how: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """`(shape, fortran_order, dtype, data offset)` of a `.npy` file, read from its header alone;
    errors name the file, `what` it should hold and `how` to save it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} array {path!r} does not exist")
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
        except ValueError as e:
            raise ValueError(f"{path}: not a .npy file ({e}); save {what} with {how}") from e
        return shape, fortran, dtype, f.tell()


class NpyColumn:
    """A 1-D integer `.npy` file (e.g. labels), read with `os.pread` a value at a time (a run of
    consecutive rows in one read). Integral floats are accepted and read as int64."""

    dtype = torch.int64

    def __init__(self, path: str):
        shape, _, dtype, self.offset = npy_header(path, "labels", "np.save(path, int_array)")
        if dtype.hasobject or dtype.kind not in "iuf":
            raise ValueError(f"{path}: labels must be integers; got dtype {dtype}")
        self.path, self.file_dtype, self.n, self.ndim = path, dtype, int(shape[0]) if shape else 0, len(shape)
        self.item = dtype.itemsize
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.n

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}

    def _pread(self, start: int, count: int) -> np.ndarray:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        buf = os.pread(self._fd, count * self.item, self.offset + start * self.item)
        if len(buf) != count * self.item:
            raise ValueError(f"{self.path} is truncated at row {start + len(buf) // self.item}; regenerate the file")
        return np.frombuffer(buf, dtype=self.file_dtype)

    def read(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if not rows.size:
            return np.empty(0, dtype=np.int64)
        if int(rows.min()) < 0 or int(rows.max()) >= self.n:
            raise IndexError(f"row {int(rows.max())} is out of range for {self.path} ({self.n} values)")
        lo = int(rows[0])
        if rows.size > 1 and int(rows[-1]) - lo == rows.size - 1 and bool(np.all(np.diff(rows) == 1)):
            out = self._pread(lo, rows.size)
        else:
            out = np.concatenate([self._pread(r, 1) for r in rows.tolist()])
        return out.astype(np.int64)

    def scan(self, chunk: int = 4096):
        """The values in order, `chunk` at a time (for validation, without holding the file)."""
        for i in range(0, self.n, chunk):
            yield self._pread(i, min(chunk, self.n - i))


class RowNumbers:
    """The row number itself, as int64: the stable example ids of a file-backed source."""

    dtype = torch.int64

    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def read(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(rows, dtype=np.int64)


class TensorColumn:
    """An in-memory tensor as a column store."""

    def __init__(self, values: torch.Tensor):
        self.values, self.dtype = values, values.dtype

    def __len__(self) -> int:
        return len(self.values)

    def read(self, rows: np.ndarray) -> np.ndarray:
        return self.values[torch.from_numpy(np.asarray(rows, dtype=np.int64))].numpy()


class Zeros:
    """A column of zeros (e.g. the corruption codes of a clean set)."""

    def __init__(self, n: int, dtype: torch.dtype = torch.int8):
        self.n, self.dtype = int(n), dtype

    def __len__(self) -> int:
        return self.n

    def read(self, rows: np.ndarray) -> np.ndarray:
        return np.zeros(len(rows), dtype=torch.empty(0, dtype=self.dtype).numpy().dtype)


class NoiseCodes:
    """Corruption codes of seeded label noise: position `p` is `code` when `sigma(p) < count`
    (exactly `count` positions are), else clean (0)."""

    dtype = torch.int8

    def __init__(self, sigma: Bijection, count: int, code: int):
        self.sigma, self.count, self.code = sigma, int(count), int(code)

    def __len__(self) -> int:
        return self.sigma.n

    def read(self, rows: np.ndarray) -> np.ndarray:
        return np.where(self.sigma(rows) < self.count, self.code, 0).astype(np.int8)


class NoisyLabels:
    """Labels after seeded symmetric label noise: at the `count` positions `NoiseCodes` marks, the
    label `y` becomes `(y + 1 + h(p) mod (k - 1)) mod k` (a different class, uniform given the
    position's hash `h`); elsewhere it is `y`."""

    dtype = torch.int64

    def __init__(self, labels: "LazyColumn", sigma: Bijection, count: int, num_classes: int, seed: int):
        if num_classes < 2:
            raise ValueError("label noise needs at least 2 classes")
        self.labels, self.sigma, self.count, self.k, self.seed = labels, sigma, int(count), int(num_classes), int(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, rows: np.ndarray) -> np.ndarray:
        y = self.labels[rows].numpy()
        shift = 1 + (mix(rows, self.seed) % np.uint64(self.k - 1)).astype(np.int64)
        return np.where(self.sigma(rows) < self.count, (y + shift) % self.k, y)


class LazyColumn:
    """An `[N]` column read from `store` at `rows` (all of the store when None) on each index."""

    def __init__(self, store: ColumnStore, rows=None):
        self.store = store
        self.rows = Range(0, len(store)) if rows is None else rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self),))

    @property
    def dtype(self) -> torch.dtype:
        return self.store.dtype

    def dim(self) -> int:
        return 1

    def __getitem__(self, index: Index) -> torch.Tensor:
        rows = lookup(self.rows, index)
        if isinstance(rows, int):
            return torch.from_numpy(np.asarray(self.store.read(np.array([rows], dtype=np.int64)))).to(self.dtype)[0]
        return torch.from_numpy(np.ascontiguousarray(self.store.read(rows))).to(self.dtype)

    def take(self, index: Index) -> "LazyColumn":
        """The values at positions `index`, still lazy (nothing is read)."""
        return LazyColumn(self.store, compose(self.rows, index))

    def chunks(self, size: int = 4096):
        """The values in order, `[<=size]` tensors at a time."""
        for i in range(0, len(self), size):
            yield self[i:i + size]

    def materialise(self) -> torch.Tensor:
        return torch.cat(list(self.chunks())) if len(self) else torch.empty(0, dtype=self.dtype)
