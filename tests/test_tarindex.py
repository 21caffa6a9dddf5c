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


def _write_tar(path: Path, members: list[tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
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


def test_lazy_pairs_match_the_collected_pairs_and_count_bad_ones(tmp_path: Path) -> None:
    from learnability.pairs import collect
    from learnability.pairs.tarindex import lazy_pairs

    pattern = _shards(tmp_path)
    eager = collect(ShardPairs(pattern, image_size=8))
    lazy, skipped = lazy_pairs(pattern, image_size=8)
    assert skipped == 0 and isinstance(lazy.images, LazyImages)
    assert torch.equal(lazy.ids, eager.ids) and lazy.captions == eager.captions
    assert torch.equal(lazy.images[:], eager.images)
    assert lazy.fingerprint() == eager.fingerprint()
    sub = lazy.subset(torch.tensor([4, 1]))
    assert isinstance(sub.images, LazyImages) and torch.equal(sub.images[:], eager.images[torch.tensor([4, 1])])
    bad = _write_tar(tmp_path / "bad.tar", _sample("a", 0, "fine") + [("b.png", b"garbage"), ("b.txt", b"x")]
                     + _sample("c", 1, "  ") + [("d.txt", b"no image")] + _sample("e", 2, "last"))
    with pytest.raises(ValueError, match="key 'd'"):
        lazy_pairs(str(bad))
    pairs, skipped = lazy_pairs(str(bad), skip_bad=True)
    streamed = ShardPairs(str(bad), skip_bad=True)
    assert pairs.ids.tolist() == [i for i, _, _ in streamed] == [0, 4]
    assert skipped == streamed.skipped == 3
    ok = _write_tar(tmp_path / "ok.tar", _sample("a", 0, "fine") + [("b.png", b"garbage"), ("b.txt", b"x")])
    with pytest.raises(ValueError, match="cannot decode"):
        lazy_pairs(str(ok))


@pytest.mark.parametrize("mode, ext", [("w:gz", "tar.gz"), ("w:bz2", "tar.bz2"), ("w:xz", "tar.xz")])
def test_build_pairs_reads_compressed_shards_lazily_through_a_cached_copy(tmp_path: Path, mode: str, ext: str) -> None:
    from learnability import config as C
    from learnability.pairs.build import build_pairs

    for name in ("pool", "ref"):
        (tmp_path / name).mkdir()
        _shards(tmp_path / name, 2)
    members = _sample("k", 0, "zipped") + _sample("m", 1, "also zipped") + [("n.png", _image_bytes(2))]  # n: no text
    gz = _write_tar(tmp_path / f"z.{ext}", members, mode)
    cache = tmp_path / "cache"
    cfg = C.RunConfig(task="clip", data=C.DataConfig(skip_bad=True), pairs=C.PairsConfig(
        source="shards", path=str(tmp_path / "pool" / "shard-{000..001}.tar"),
        reference_path=str(tmp_path / "ref" / "shard-*.tar"), test_path=str(gz), image_size=8, shard_cache=str(cache)))
    splits, skipped = build_pairs(cfg)
    assert skipped == 1
    for part in (splits.pool, splits.reference, splits.test):
        assert isinstance(part.images, LazyImages)
    streamed = list(ShardPairs(str(gz), image_size=8, skip_bad=True))  # the whole-shard reader, for reference
    assert splits.test.captions == ["zipped", "also zipped"] == [c for _, _, c in streamed]
    assert splits.test.ids.tolist() == [i for i, _, _ in streamed]
    assert torch.equal(splits.test.images[:], torch.stack([im for _, im, _ in streamed]))
    copies = sorted(cache.glob("*.tar"))
    assert len(copies) == 1
    stamp = copies[0].stat().st_mtime_ns
    build_pairs(cfg)  # the copy is reused while the shard is unchanged
    assert copies[0].stat().st_mtime_ns == stamp
    gz.write_bytes(gz.read_bytes()[:-40])  # cut short: refused, naming the shard as given
    with pytest.raises(ValueError, match=f"z.{ext}"):
        build_pairs(cfg)


def test_clip_run_on_uncompressed_shards_through_the_cli(tmp_path: Path) -> None:
    from learnability.cli import main
    from learnability.io import read_jsonl

    def shard(path: Path, n: int, seed: int) -> str:
        members = []
        for i in range(n):
            members += _sample(f"{i:05d}", seed * 1000 + i, f"a {['red', 'blue'][i % 2]} thing number {i % 5}")
        return str(_write_tar(path, members))

    pool, ref, test = shard(tmp_path / "pool.tar", 80, 1), shard(tmp_path / "ref.tar", 40, 2), shard(tmp_path / "test.tar", 20, 3)
    args = ["run", "--task=clip", "--pairs.source=shards", f"--pairs.path={pool}", f"--pairs.reference_path={ref}",
            f"--pairs.test_path={test}", "--pairs.image_size=8", "--train.steps=4", "--train.batch_size=8",
            "--train.eval_every=2", "--pairs.n_chunks=2", "--reference.epochs=1", "--reference.batch_size=8",
            "--progress=false", "--train.threads=1", f"--out={tmp_path / 'run'}"]
    assert main(args) == 0
    rows = read_jsonl(str(tmp_path / "run" / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and "r1_i2t" in rows[-1]
