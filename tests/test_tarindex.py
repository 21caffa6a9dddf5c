"""Random access into webdataset shards: same pairs as the streaming reader, index cached atomically."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import learnability.pairs.tarindex as tarindex
from learnability.data.lazy import LazyImages
from learnability.pairs import ShardPairs
from learnability.pairs.tarindex import ShardImages


def _image_bytes(seed: int, fmt: str = "PNG", size: int = 12) -> bytes:
    a = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a, "RGB").save(buf, format=fmt)
    return buf.getvalue()


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _sample(key: str, seed: int, text: str, ext: str = "png") -> list[tuple[str, bytes]]:
    return [(f"{key}.{ext}", _image_bytes(seed, "PNG" if ext == "png" else "JPEG")), (f"{key}.txt", text.encode())]


def _shards(root: Path, n: int = 3) -> str:
    for s in range(n):
        _write_tar(root / f"shard-{s:03d}.tar", _sample(f"s{s}/a", s, f" caption {s}a\n", "jpg")
                   + [(f"s{s}/a.json", b"{}")] + _sample(f"s{s}/b", 10 + s, f"caption {s}b"))
    return str(root / ("shard-{000..%03d}.tar" % (n - 1)))


def test_random_access_gives_the_streaming_readers_pairs(tmp_path: Path) -> None:
    pattern = _shards(tmp_path)
    streamed = list(ShardPairs(pattern, image_size=10))
    store = ShardImages(pattern, image_size=10)
    images = LazyImages(store)
    assert store.ids.tolist() == [i for i, _, _ in streamed]
    assert store.captions(np.arange(len(store))) == [c for _, _, c in streamed]
    want = torch.stack([im for _, im, _ in streamed])
    assert torch.equal(images[:], want)
    idx = torch.tensor([5, 0, 3])
    assert torch.equal(images[idx], want[idx])


def test_bad_samples_raise_or_are_skipped_with_the_readers_ids(tmp_path: Path) -> None:
    path = _write_tar(tmp_path / "bad.tar", _sample("first", 0, "a") + [("k.txt", b"no image")] + _sample("last", 1, "z"))
    with pytest.raises(ValueError, match="bad.tar key 'k'"):
        ShardImages(str(path))
    store = ShardImages(str(path), skip_bad=True)
    assert store.ids.tolist() == [i for i, _, _ in ShardPairs(str(path), skip_bad=True)] == [0, 2]


def test_truncated_shard_is_refused(tmp_path: Path) -> None:
    path = _write_tar(tmp_path / "t.tar", _sample("a", 0, "x") + _sample("b", 1, "y"))
    raw = path.read_bytes()
    path.write_bytes(raw[:1200])
    with pytest.raises(ValueError, match="t.tar"):
        ShardImages(str(path))


def test_index_is_cached_reused_and_rebuilt_when_the_shard_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pattern = _shards(tmp_path, 2)
    index_dir = tmp_path / "index"
    first = ShardImages(pattern, index_dir=str(index_dir))
    assert len(list(index_dir.glob("*.npy"))) == len(list(index_dir.glob("*.json"))) == 2
    calls = []
    real = tarindex._index_one
    monkeypatch.setattr(tarindex, "_index_one", lambda *a: calls.append(a[0]) or real(*a))
    again = ShardImages(pattern, index_dir=str(index_dir))
    assert calls == [] and np.array_equal(again.entries, first.entries)
    # a changed shard is re-indexed; a damaged index file fails its sha256 and is rebuilt, never used
    _write_tar(tmp_path / "shard-001.tar", _sample("s1/a", 5, "new caption") + _sample("s1/b", 6, "other"))
    os.utime(tmp_path / "shard-001.tar", ns=(1, 1))
    rec = next(p for p in index_dir.glob("*.json") if json.loads(p.read_text())["shard"].endswith("shard-000.tar"))
    npy = rec.with_suffix(".npy")
    npy.write_bytes(npy.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    third = ShardImages(pattern, index_dir=str(index_dir))
    assert len(calls) == 2
    assert third.captions(np.arange(len(third)))[2:] == ["new caption", "other"]
    assert all(json.loads(p.read_text())["sha256"] for p in index_dir.glob("*.json"))
    assert not list(index_dir.glob("*.tmp"))
