"""The memory benchmark's smoke path: a pool on disk, one short real run, the table."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import memory  # noqa: E402


def test_memory_bench_smoke(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(memory, "REFERENCE", 100)
    monkeypatch.setattr(memory, "TEST", 50)
    folder = str(tmp_path / "pool")
    memory.make_pool(folder, 300)
    x = np.load(os.path.join(folder, "x.npy"), mmap_mode="r")
    assert x.shape == (400, 1, 16, 16) and x.dtype == np.uint8
    rows = []
    for phase in ("build", "run"):
        r = memory.child(folder, str(tmp_path / "ref"), str(tmp_path / phase), steps=2)
        assert r["pool"] == 300 and r["peak_rss_mb"] > 0
        assert r["cache_bytes"] > 300 * 12  # 8-byte ids + 4-byte losses, plus the .npy headers
        assert r["metadata_bytes"] == 0  # data.order=bijection: no per-example array in memory
        rows.append({"phase": phase, **r})
    rows += [{**r, "pool": 3000, "peak_rss_mb": r["peak_rss_mb"] + 1, "cache_bytes": r["cache_bytes"] + 2 * 2 ** 20} for r in rows]
    perm = memory.child(folder, str(tmp_path / "ref-perm"), str(tmp_path / "perm"), steps=2, order="permutation")
    assert perm["metadata_bytes"] >= 300 * (8 + 8 + 1 + 4 + 4)  # labels as tensors, ids, codes, rows, permutation
    table = memory.table(rows)
    assert "| 3,000 | run |" in table and table.count("| yes |") == 2
