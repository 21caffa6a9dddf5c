"""The per-id reference-loss cache on disk: memory-mapped, checksummed, replaced atomically.

Layout in a reference folder:
- `losses-<token>.ids.npy`: `[N]` int64 example ids, sorted; `losses-<token>.values.npy`: `[N]`
  float32 losses in the same order. Both are opened with `np.load(mmap_mode="r")`, so a run holds
  only the pages its lookups touch, never a copy of the cache.
- `losses.json`: the commit record (a cache named other than `losses`, e.g. the reference's
  per-id embeddings for joint selection, `embeddings`, uses the same layout under its name). It names the two files, their sha256, N, and the fingerprints
  of the pool data and reference weights they were computed from.

Lookups and memory: when the sorted ids are nearly all of one range (at most one hole in 8 ids,
e.g. a pool of row numbers with the curated set held out), loading derives a `DenseIndex` (the
range and its holes) from the ids file with plain reads, and a lookup computes each id's position
from it: it then touches only the values file's pages, never the ids file's. Building such a
cache holds just the values (4 bytes an id) and a bitmap of the range (1 bit an id), and streams
the ids file out in order, so neither a run nor its caching pass holds the pool's ids.

Crash safety: the two data files get fresh names (a random token) and are each written to a temp
file, fsynced and renamed; only then is `losses.json` replaced the same way, and the folder
fsynced. A crash at any point leaves `losses.json` either absent or naming complete files (the old
ones until the rename, the new ones after), so a partly written file never replaces a good cache;
superseded data files are deleted only after the new record is in place. Loading verifies both
checksums; any mismatch is a `CacheMismatchError` naming the file and what to do.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import secrets

import numpy as np
import torch

from learnability.errors import CacheMismatchError  # noqa: F401  (re-exported)
from learnability.io import atomic_save_npy, atomic_write, atomic_write_text, file_sha256, fsync_dir

FORMAT = 1
MAX_HOLES = 8  # a dense index allows one hole (an id of the range not in the cache) per MAX_HOLES ids


@dataclasses.dataclass(frozen=True)
class DenseIndex:
    """The cache's sorted ids as a range `[lo, lo + count + len(holes))` less `holes` (sorted ids
    of the range it does not hold): id `q` sits at position `q - lo - (holes below q)`."""

    lo: int
    count: int
    holes: np.ndarray

    @property
    def hi(self) -> int:
        return self.lo + self.count + len(self.holes) - 1

    def positions(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions `[n]` of the ids `q` and whether each is held (positions of ids not held are
        clipped into range, to be masked)."""
        j = np.searchsorted(self.holes, q)
        held = (q >= self.lo) & (q <= self.hi)
        if len(self.holes):
            held &= self.holes[j.clip(max=len(self.holes) - 1)] != q
        return (q - self.lo - j).clip(0, max(self.count - 1, 0)), held

    def sorted_ids(self, chunk: int = 8192):
        """The held ids in ascending order, `[<=chunk]` int64 at a time."""
        for start in range(self.lo, self.hi + 1, chunk):
            block = np.arange(start, min(start + chunk, self.hi + 1), dtype=np.int64)
            h = self.holes[np.searchsorted(self.holes, block[0]):np.searchsorted(self.holes, block[-1], side="right")]
            if len(h):
                keep = np.ones(len(block), dtype=bool)
                keep[h - block[0]] = False
                block = block[keep]
            yield block

    @classmethod
    def of_sorted(cls, chunks, count: int) -> "DenseIndex | None":
        """From ascending id chunks (the ids file); None when ids repeat or holes are too many."""
        lo = prev = None
        holes: list[np.ndarray] = []
        n_holes = 0
        for c in chunks:
            if not len(c):
                continue
            c = np.asarray(c, dtype=np.int64)
            if prev is None:
                lo, steps = int(c[0]), np.diff(c)
                joined = c
            else:
                joined = np.concatenate(([prev], c))
                steps = np.diff(joined)
            if len(steps) and int(steps.min()) < 1:
                return None
            for g in np.flatnonzero(steps > 1):
                n_holes += int(steps[g]) - 1
                if n_holes * MAX_HOLES > count:
                    return None
                holes.append(np.arange(joined[g] + 1, joined[g + 1], dtype=np.int64))
            prev = int(c[-1])
        if lo is None:
            return None
        return cls(lo, count, np.concatenate(holes) if holes else np.empty(0, dtype=np.int64))

    @classmethod
    def of_unsorted(cls, chunks) -> "DenseIndex | None":
        """From id chunks in any order (`chunks()` is called twice); None when ids repeat or the
        range has too many holes. Holds a bitmap of the range (1 bit an id), not the ids."""
        lo, hi, count = None, None, 0
        for c in chunks():
            if len(c):
                lo = int(c.min()) if lo is None else min(lo, int(c.min()))
                hi = int(c.max()) if hi is None else max(hi, int(c.max()))
                count += len(c)
        if lo is None or (hi - lo + 1 - count) * MAX_HOLES > count:
            return None
        seen = np.zeros((hi - lo + 1 + 7) // 8, dtype=np.uint8)
        for c in chunks():
            off = np.asarray(c, dtype=np.int64) - lo
            byte, bit = off >> 3, (1 << (off & 7)).astype(np.uint8)
            ordered = np.sort(off)  # (np.unique would import numpy.ma: 1.5 MB of RSS for a duplicate check)
            if bool((seen[byte] & bit).any()) or bool((ordered[1:] == ordered[:-1]).any()):
                return None  # a repeated id
            np.bitwise_or.at(seen, byte, bit)
        bits = np.unpackbits(seen, bitorder="little")[:hi - lo + 1]
        return cls(lo, count, lo + np.flatnonzero(bits == 0).astype(np.int64))


@dataclasses.dataclass
class ReferenceLosses:
    """Per-id reference losses, looked up by example id. `ids` `[N]` int64 sorted, `losses` `[N]`
    float32 (or one row per id, `[N, K]`, e.g. embeddings for joint selection): numpy arrays,
    memory-mapped when loaded from a cache file (ids are never cast to float)."""

    ids: np.ndarray
    losses: np.ndarray
    index: DenseIndex | None = None  # when set, lookups compute positions instead of searching `ids`

    @classmethod
    def from_unsorted(cls, ids: torch.Tensor | np.ndarray, losses: torch.Tensor | np.ndarray) -> "ReferenceLosses":
        ids, losses = _int64(ids), np.asarray(losses, dtype=np.float32)
        if ids.ndim != 1 or losses.ndim not in (1, 2) or losses.shape[0] != ids.shape[0]:
            raise ValueError(f"ids {ids.shape} and losses {losses.shape} must be [N] and [N] (or [N, K])")
        if len(ids) > 1 and not bool(np.all(ids[:-1] <= ids[1:])):
            order = np.argsort(ids, kind="stable")
            ids, losses = ids[order], losses[order]
        return cls(ids, losses)

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Losses `[n]` (rows `[n, K]`) float32 for example ids `[n]`; raises KeyError for ids the cache does not
        hold. A binary search over the (memory-mapped) sorted ids: O(n log N), no copy of the cache."""
        q = _int64(ids)
        if not len(self.ids):
            raise KeyError(f"{len(q)} example id(s) are not in the reference-loss cache (it is empty)")
        if self.index is not None:
            pos, found = self.index.positions(q)
        else:
            pos = np.searchsorted(self.ids, q).clip(max=len(self.ids) - 1)
            found = self.ids[pos] == q
        if not bool(found.all()):
            raise KeyError(f"{int((~found).sum())} example id(s) are not in the reference-loss cache, "
                           f"e.g. {int(q[~found][0])}")
        return torch.from_numpy(np.array(self.losses[pos], dtype=np.float32))


def _int64(ids: torch.Tensor | np.ndarray) -> np.ndarray:
    a = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    if a.dtype.kind not in "iu":
        raise ValueError(f"example ids must be integers (int64); got {a.dtype} (floats lose precision beyond 2**24)")
    return a.astype(np.int64, copy=False)


def write_cache(ref_dir: str, ids: np.ndarray | DenseIndex, losses: np.ndarray, *, data_fingerprint: str,
                weights_fingerprint: str, seconds: float, name: str = "losses") -> None:
    """Save losses `[N]` (or rows `[N, K]`) of ids `[N]` (any order) as the cache `name` in
    `ref_dir`, atomically (see the module docstring), replacing any cache of that name there only
    once the new one is complete. `ids` may be a `DenseIndex` with `losses` already in its sorted
    order: the ids file is then streamed from it, never held."""
    os.makedirs(ref_dir, exist_ok=True)
    token = secrets.token_hex(6)
    names = {"ids": f"{name}-{token}.ids.npy", "losses": f"{name}-{token}.values.npy"}
    if isinstance(ids, DenseIndex):
        if len(losses) != ids.count:
            raise ValueError(f"{len(losses)} losses for a dense index of {ids.count} ids")
        atomic_write(os.path.join(ref_dir, names["ids"]), lambda f: _write_npy_chunks(f, ids.sorted_ids(), ids.count))
        count = ids.count
    else:
        cache = ReferenceLosses.from_unsorted(ids, losses)
        losses, count = cache.losses, len(cache)
        atomic_save_npy(os.path.join(ref_dir, names["ids"]), np.ascontiguousarray(cache.ids, dtype=np.int64))
    atomic_save_npy(os.path.join(ref_dir, names["losses"]), np.ascontiguousarray(losses, dtype=np.float32))
    record = {"format": FORMAT, "count": count, "files": names,
              "sha256": {k: file_sha256(os.path.join(ref_dir, v)) for k, v in names.items()},
              "data_fingerprint": data_fingerprint, "weights_fingerprint": weights_fingerprint, "seconds": seconds}
    fsync_dir(ref_dir)
    atomic_write_text(os.path.join(ref_dir, f"{name}.json"), json.dumps(record, indent=2) + "\n")
    fsync_dir(ref_dir)
    keep = set(names.values())
    leftovers = [os.path.join(ref_dir, p) for p in (f"{name}-*.npy", f".{name}-*.tmp", f".{name}.json.*.tmp")]
    for stale in (f for pattern in leftovers for f in glob.glob(pattern)):
        if os.path.basename(stale) not in keep:
            os.unlink(stale)


def read_cache(ref_dir: str, *, data_fingerprint: str, weights_fingerprint: str,
               name: str = "losses") -> tuple[ReferenceLosses, float] | None:
    """The cache in `ref_dir` as memory-mapped arrays, and the seconds its caching pass took; None
    when there is none. Raises `CacheMismatchError` when it was computed on other data or weights,
    or when a file is missing, unreadable or fails its sha256."""
    path = os.path.join(ref_dir, f"{name}.json")
    if not os.path.exists(path):
        return None
    fix = f"delete {path} (and the {name}-*.npy files beside it) to rebuild the cache, or use a new --reference.dir"
    try:
        with open(path) as f:
            record = json.load(f)
        files, sums, count = record["files"], record["sha256"], int(record["count"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CacheMismatchError(f"the reference-loss cache record {path} is unreadable ({e}); {fix}") from e
    if record.get("format") != FORMAT:
        raise CacheMismatchError(f"the reference-loss cache {path} has format {record.get('format')!r}, "
                                 f"this version reads {FORMAT}; {fix}")
    if record.get("data_fingerprint") != data_fingerprint:
        raise CacheMismatchError(
            f"the reference-loss cache {path} was computed on different pool data (fingerprint "
            f"{str(record.get('data_fingerprint'))[:12]}, this run's pool is {data_fingerprint[:12]}); {fix}")
    if record.get("weights_fingerprint") != weights_fingerprint:
        raise CacheMismatchError(f"the reference-loss cache {path} was computed with other reference weights; {fix}")
    arrays = {}
    for key, dtype in (("ids", np.int64), ("losses", np.float32)):
        fp = os.path.join(ref_dir, str(files[key]))
        if not os.path.isfile(fp):
            raise CacheMismatchError(f"the reference-loss cache file {fp} named in {path} is missing; {fix}")
        if file_sha256(fp) != sums.get(key):
            raise CacheMismatchError(f"the reference-loss cache file {fp} does not match its sha256 in {path} "
                                     f"(corrupted or partly written); {fix}")
        try:
            a = np.load(fp, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CacheMismatchError(f"the reference-loss cache file {fp} is unreadable ({e}); {fix}") from e
        if a.dtype != dtype or a.shape[:1] != (count,) or a.ndim != (1 if key == "ids" else a.ndim) or a.ndim > 2:
            raise CacheMismatchError(f"the reference-loss cache file {fp} holds {a.dtype} {a.shape}, "
                                     f"expected {np.dtype(dtype)} ({count}, ...); {fix}")
        arrays[key] = a
    index = DenseIndex.of_sorted(_read_chunks(os.path.join(ref_dir, str(files["ids"]))), count)
    return ReferenceLosses(arrays["ids"], arrays["losses"], index), float(record.get("seconds", 0.0))


def _write_npy_chunks(f, chunks, count: int) -> None:
    """A `[count]` int64 `.npy` written chunk by chunk (never held whole)."""
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int64)),
                                              "fortran_order": False, "shape": (count,)})
    written = 0
    for c in chunks:
        f.write(np.ascontiguousarray(c, dtype=np.int64).tobytes())
        written += len(c)
    if written != count:
        raise ValueError(f"wrote {written} ids where the header says {count}")


def _read_chunks(path: str, chunk: int = 8192):
    """An int64 `.npy`'s values in order with plain reads (the page cache, not this process, holds them)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(f)
        while len(block := np.fromfile(f, dtype=np.int64, count=chunk)):
            yield block
