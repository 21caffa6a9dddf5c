"""Pools read from files on demand: same tensors as in memory, never the whole pool loaded."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learnability.data import IndexStream, corrupt, load_source, make_splits
from learnability.data.imageset import ImageSet
from learnability.data.lazy import FileImages, LazyImages, NpyImages


class Counting:
    """Wraps a store and records every row it reads."""

    def __init__(self, store):
        self.store, self.shape, self.reads = store, store.shape, []

    def __len__(self) -> int:
        return len(self.store)

    def read(self, rows: np.ndarray) -> np.ndarray:
        self.reads.extend(rows.tolist())
        return self.store.read(rows)


def _arrays(n: int = 40, shape: tuple[int, ...] = (5, 6), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 4, n)


@pytest.mark.parametrize("shape", [(5, 6), (1, 5, 6), (3, 5, 6), (5, 6, 3)])
def test_npy_source_matches_the_in_memory_npz_source(tmp_path: Path, shape: tuple[int, ...]) -> None:
    x, y = _arrays(shape=shape)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    for (eager, lazy) in zip(load_source("npz", path=str(tmp_path / "d.npz"), seed=3),
                             load_source("npy", path=str(tmp_path), seed=3)):
        assert lazy.lazy and not eager.lazy
        assert torch.equal(lazy.ids[:], eager.ids) and torch.equal(lazy.y[:], eager.y)
        assert lazy.shape == eager.shape and len(lazy) == len(eager)
        assert torch.equal(lazy.x[:], eager.x)
        idx = torch.tensor([3, 0, 3, len(eager) - 1])
        assert torch.equal(lazy.x[idx], eager.x[idx])
        assert torch.equal(lazy.x[2], eager.x[2])
        assert lazy.fingerprint() == eager.fingerprint()  # so a reference cache built from either is reused


def test_npy_source_with_a_test_split_and_errors(tmp_path: Path) -> None:
    x, y = _arrays()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "x_test.npy", x[:7])
    np.save(tmp_path / "y_test.npy", y[:7])
    train, test = load_source("npy", path=str(tmp_path))
    assert len(train) == 40 and len(test) == 7 and torch.equal(test.x[:], torch.from_numpy(x[:7, None]).float() / 127.5 - 1)
    with pytest.raises(FileNotFoundError, match="x.npy"):
        load_source("npy", path=str(tmp_path / "nope"))
    np.save(tmp_path / "y.npy", y[:5])
    with pytest.raises(ValueError, match="40 images but y.npy has 5"):
        load_source("npy", path=str(tmp_path))
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        NpyImages(str(tmp_path / "x.npy"))


def test_npy_labels_of_one_class_or_none_are_refused_naming_the_file(tmp_path: Path) -> None:
    x, _ = _arrays(n=5000)  # more than one scan chunk (4096 labels): the second class comes late
    np.save(tmp_path / "x.npy", x)
    y = np.zeros(5000, dtype=np.int64)
    np.save(tmp_path / "y.npy", y)
    with pytest.raises(ValueError, match="y.npy: every label is 0; classification needs examples of at least 2"):
        load_source("npy", path=str(tmp_path))
    y[4999] = 1
    np.save(tmp_path / "y.npy", y)
    assert load_source("npy", path=str(tmp_path), test_fraction=0.001)[0].num_classes == 2
    np.save(tmp_path / "x.npy", x[:0])
    np.save(tmp_path / "y.npy", y[:0])
    with pytest.raises(ValueError, match="y.npy: the labels array is empty"):
        load_source("npy", path=str(tmp_path))


def test_truncated_npy_names_the_file(tmp_path: Path) -> None:
    x, _ = _arrays()
    np.save(tmp_path / "x.npy", x)
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(raw[:-10])
    images = LazyImages(NpyImages(str(tmp_path / "x.npy")))
    assert torch.equal(images[0], torch.from_numpy(x[0][None]).float() / 127.5 - 1)
    with pytest.raises(ValueError, match="x.npy is truncated"):
        images[39]


def test_lazy_reads_only_the_indexed_rows_and_subsets_read_nothing(tmp_path: Path) -> None:
    x, y = _arrays(n=100)
    np.save(tmp_path / "x.npy", x)
    store = Counting(NpyImages(str(tmp_path / "x.npy")))
    pool = ImageSet(LazyImages(store), torch.from_numpy(y), torch.arange(100) + 2 ** 40, 4)
    sub = pool.subset(torch.arange(50, 100)).subset(torch.tensor([9, 1, 4]))
    assert store.reads == []
    assert torch.equal(sub.x[torch.tensor([2, 0])], torch.from_numpy(x[[54, 59], None]).float() / 127.5 - 1)
    assert store.reads == [54, 59]
    assert sub.ids.tolist() == [2 ** 40 + 59, 2 ** 40 + 51, 2 ** 40 + 54]
    assert sub.x.rows.dtype == np.int32  # 4 bytes a row


def _folder(root: Path, n_per_class: int = 4) -> None:
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def _eager_folder(root: Path, size: int, channels: int) -> torch.Tensor:
    """What the in-memory folder source read: every file, sorted class folders and names."""
    out = []
    for c in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(c.iterdir()):
            with Image.open(f) as im:
                a = np.asarray(im.convert("L" if channels == 1 else "RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)
            out.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out)).float().div_(127.5).sub_(1.0)


@pytest.mark.parametrize("channels", [1, 3])
def test_lazy_folder_gives_the_eager_tensors(tmp_path: Path, channels: int) -> None:
    _folder(tmp_path)
    eager_x = _eager_folder(tmp_path, 6, channels)
    train, test = load_source("folder", path=str(tmp_path), image_size=6, channels=channels, test_fraction=0.25, seed=1)
    assert train.lazy and isinstance(train.x.store, FileImages)
    for part in (train, test):
        assert torch.equal(part.x[:], eager_x[part.ids])
        idx = torch.tensor([1, 0, 1])
        assert torch.equal(part.x[idx], eager_x[part.ids[idx]])
        eager = ImageSet(eager_x[part.ids], part.y, part.ids, part.num_classes)
        assert part.fingerprint() == eager.fingerprint()


def test_lazy_folder_image_broken_after_loading_names_the_file(tmp_path: Path) -> None:
    _folder(tmp_path)
    train, _ = load_source("folder", path=str(tmp_path), image_size=6, test_fraction=0.25)
    victim = Path(train.x.store.paths[train.x.rows[0]].decode())
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(ValueError, match=victim.name):
        train.x[torch.tensor([0])]


def test_splits_and_label_noise_keep_lazy_pools_lazy(tmp_path: Path) -> None:
    x, y = _arrays(n=200)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    results = []
    for source, path in (("npz", tmp_path / "d.npz"), ("npy", tmp_path)):
        train, test = load_source(source, path=str(path), seed=0)
        s = make_splits(train, test, reference_size=30, seed=0)
        pool = corrupt(s.pool, label_noise=0.4, seed=1)
        results.append((pool, s.reference))
    (eager, eager_ref), (lazy, lazy_ref) = results
    assert lazy.lazy and lazy_ref.lazy
    for a, b in ((eager, lazy), (eager_ref, lazy_ref)):
        assert torch.equal(a.ids[:], b.ids[:]) and torch.equal(a.y[:], b.y[:]) and torch.equal(a.x[:], b.x[:])
        assert torch.equal(a.corruption[:], b.corruption[:]) and torch.equal(a.true_y[:], b.true_y[:])
    with pytest.raises(ValueError, match="in-memory source"):
        corrupt(lazy, duplicates=0.1)
    with pytest.raises(ValueError, match="in-memory source"):
        corrupt(lazy, junk=0.1)


def test_lazy_images_to_device_returns_batches_there(tmp_path: Path) -> None:
    x, _ = _arrays()
    np.save(tmp_path / "x.npy", x)
    images = LazyImages(NpyImages(str(tmp_path / "x.npy"))).to("meta")
    assert images[torch.tensor([1, 2])].device.type == "meta"
    assert copy.deepcopy(images).shape == (40, 1, 5, 6)


@pytest.mark.parametrize("n, batch", [(10, 4), (1001, 96), (100003, 4096)])
def test_index_stream_int32_permutation_gives_the_int64_stream(n: int, batch: int) -> None:
    stream = IndexStream(n, batch, seed=7)
    assert stream.perm.dtype == torch.int32
    g = torch.Generator().manual_seed(7)  # the stream as it was written with int64 permutations
    want = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-3 * batch * 5 // n) + 1)])
    got = torch.cat([stream.next() for _ in range(15)])
    assert got.dtype == torch.int64
    assert torch.equal(got, want[:len(got)])
    state = stream.state_dict()
    state["perm"] = state["perm"].long()  # a checkpoint from before still loads
    other = IndexStream(n, batch, seed=0)
    other.load_state_dict(state)
    assert torch.equal(other.next(), stream.next())


def test_a_run_on_the_lazy_npy_source_matches_the_in_memory_npz_run(tmp_path: Path) -> None:
    from learnability import config as C
    from learnability.io import read_jsonl
    from learnability.loop import run

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = (np.array([40, 128, 220], dtype=np.int16)[y][:, None, None] + rng.integers(-30, 31, (300, 6, 6))).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    rows = {}  # both orders: the npy source's default (bijection) and permutation, each against npz
    for source, path, order in (("npz", tmp_path / "d.npz", "bijection"), ("npy", tmp_path, "auto"),
                                ("npz-perm", tmp_path / "d.npz", "permutation"), ("npy-perm", tmp_path, "permutation")):
        cfg = C.RunConfig(
            data=C.DataConfig(source=source.split("-")[0], path=str(path), reference_size=60, label_noise=0.3,
                              test_fraction=0.2, order=order),
            model=C.ModelConfig(learner="mlp_small", proxy="mlp_tiny"),
            reference=C.ReferenceConfig(epochs=2, batch_size=32, dir=str(tmp_path / f"ref-{source}")),
            train=C.TrainConfig(steps=12, batch_size=16, eval_every=6, threads=1),
            out=str(tmp_path / f"run-{source}"), progress=False)
        run(cfg)
        rows[source] = [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in read_jsonl(str(tmp_path / f"run-{source}" / "metrics.jsonl"))]
    assert rows["npy"] == rows["npz"] and rows["npy-perm"] == rows["npz-perm"]
    assert rows["npy"] != rows["npy-perm"]  # a different (equally seeded) order
    assert (tmp_path / "ref-npy" / "losses.json").read_text().count("data_fingerprint") == 1
    fp = [json.loads((tmp_path / f"ref-{s}" / "losses.json").read_text())["data_fingerprint"] for s in ("npz", "npy")]
    assert fp[0] == fp[1]


def test_data_in_memory_reads_the_same_splits_and_allows_duplicates(tmp_path: Path) -> None:
    from learnability.config import DataConfig
    from learnability.data import build_data

    x, y = _arrays(n=200)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    base = DataConfig(source="npy", path=str(tmp_path), reference_size=30, label_noise=0.4)
    lazy, eager = build_data(base), build_data(DataConfig(**{**base.__dict__, "in_memory": True}))
    assert lazy.pool.lazy and not eager.pool.lazy and not eager.reference.lazy and not eager.test.lazy
    for a, b in ((lazy.pool, eager.pool), (lazy.reference, eager.reference), (lazy.test, eager.test)):
        assert torch.equal(a.x[:], b.x) and torch.equal(a.y[:], b.y) and torch.equal(a.ids[:], b.ids)
        assert torch.equal(a.corruption[:], b.corruption)
    with pytest.raises(ValueError, match="data.order=permutation"):
        build_data(DataConfig(**{**base.__dict__, "in_memory": True, "duplicates": 0.1}))
    dup = build_data(DataConfig(**{**base.__dict__, "in_memory": True, "duplicates": 0.1, "order": "permutation"}))
    assert int((dup.pool.corruption != 0).sum()) > 0
