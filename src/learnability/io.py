"""Atomic file writes and JSON-lines metrics."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from typing import Any

import numpy as np
import torch


def atomic_write(path: str, write) -> None:
    """Call `write(f)` on a temporary file beside `path`, fsync, rename over `path`: never half-written."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(d)  # the rename itself survives a power cut
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Write `text` to `path` via a temporary file, fsync and rename: never half-written."""
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: str) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def ids_digest(ids: torch.Tensor) -> str:
    """A short hash of a sequence of int64 example ids (logged per step: equal digests, equal selections)."""
    return hashlib.blake2b(ids.to(torch.int64).cpu().contiguous().numpy().tobytes(), digest_size=8).hexdigest()


def atomic_save_npy(path: str, array: np.ndarray) -> None:
    """`np.save` to `path` via a temporary file, fsync and rename: never half-written."""
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def release_free_memory() -> None:
    """Hand the allocator's freed heap back to the OS (glibc `malloc_trim`; a no-op elsewhere).
    A pass over a big pool (fingerprint, caching) allocates and frees a batch at a time and leaves
    megabytes of free-but-held heap behind, which the rest of the run would carry as RSS."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None


def fsync_dir(path: str) -> None:
    """fsync the folder `path`, so renames into it survive a power cut (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_sha256(path: str, chunk: int = 1 << 16) -> str:
    """sha256 of a file's bytes, read `chunk` bytes at a time (plain reads: the page cache, not
    this process's memory, holds the file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class JsonlWriter:
    """Appends one JSON object per line. Each row is opened, written, flushed and closed, so a
    killed or interrupted run keeps what it logged and leaves no open file behind."""

    def __init__(self, path: str, mode: str = "w"):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        if mode == "w":
            open(path, "w").close()

    def write(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        """Nothing stays open between rows; kept for callers that close explicitly."""


def read_jsonl(path: str) -> list[dict]:
    """The rows (JSON objects) of a JSON-lines file. A last line cut short (no newline at its end:
    a run killed while writing it) is left out with a warning naming the file and the line; any
    other line that is not UTF-8 JSON holding an object is a ValueError naming the file and line."""
    rows = []
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                if not raw.endswith(b"\n"):  # only the last line can lack its newline
                    print(f"learnability: warning: {path} line {i} is cut short (a run killed while writing it?); "
                          f"it is left out", file=sys.stderr)
                    break
                raise ValueError(f"{path} line {i} is not UTF-8 JSON ({e}); the file is damaged: restore it from a "
                                 f"copy of the run") from e
            if not isinstance(row, dict):
                raise ValueError(f"{path} line {i} holds {type(row).__name__} {row!r:.40}, not a JSON object (a row)")
            rows.append(row)
    return rows
