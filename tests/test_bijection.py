"""O(1)-memory shuffles (`data.order=bijection`): bijections, lazy row maps and columns, the
bijective stream, splits and label noise of lazy pools, and the dense reference-cache index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from learnability.data import Bijection, IndexStream, LazyColumn, NpyColumn, PermutedRange, corrupt, load_source, make_splits
from learnability.data.columns import Chain, Range, compose, lookup
from learnability.loss_cache import DenseIndex, ReferenceLosses, read_cache, write_cache


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), seed=st.integers(0, 2 ** 64 - 1))
def test_bijection_is_a_permutation_with_its_inverse(n: int, seed: int) -> None:
    b = Bijection(n, seed)
    v = b(np.arange(n))
    assert v.dtype == np.int64 and np.array_equal(np.sort(v), np.arange(n))
    assert np.array_equal(b.inverse(v), np.arange(n))
    assert np.array_equal(Bijection(n, seed)(np.arange(n)), v)  # seeded: the same every time


def test_bijection_seeds_differ_and_errors() -> None:
    a, b = Bijection(1000, 1)(np.arange(1000)), Bijection(1000, 2)(np.arange(1000))
    assert (a != b).mean() > 0.9
    assert abs(np.corrcoef(np.arange(1000), a)[0, 1]) < 0.15  # a shuffle, not a near-identity
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        Bijection(10, 0)(np.array([10]))
    with pytest.raises(ValueError, match="integers"):
        Bijection(10, 0)(np.array([1.0]))
    with pytest.raises(ValueError, match="n >= 1"):
        Bijection(0, 0)
    big = Bijection(2 ** 40, 5)  # huge domains need no memory
    assert np.array_equal(big.inverse(big(np.array([0, 2 ** 40 - 1]))), [0, 2 ** 40 - 1])


def test_row_maps_index_like_the_arrays_they_stand_for() -> None:
    b = Bijection(50, 3)
    full = b(np.arange(50))
    maps = {"permuted": (PermutedRange(b, 5, 45), full[5:45]), "range": (Range(3, 40, 1), np.arange(3, 43)),
            "chain": (Chain(np.arange(100, 150), PermutedRange(b, 5, 45)), 100 + full[5:45])}
    idx = np.array([0, 7, 39, -1, 7])
    for name, (m, want) in maps.items():
        assert len(m) == len(want), name
        assert np.array_equal(np.asarray(m), want), name
        assert np.array_equal(lookup(m, idx), want[idx]), name
        assert lookup(m, 4) == want[4], name
        assert np.array_equal(np.asarray(m[2:30]), want[2:30]), name
        assert np.array_equal(np.asarray(m[::3]), want[::3]), name
        assert np.array_equal(np.asarray(compose(m, PermutedRange(Bijection(40, 9)))), want[Bijection(40, 9)(np.arange(40))])
        assert np.array_equal(lookup(m, torch.tensor([1, 2])), want[[1, 2]]), name
        with pytest.raises(IndexError):
            lookup(m, np.array([40]))


def test_npy_column_reads_rows_runs_and_checks(tmp_path: Path) -> None:
    y = np.random.default_rng(0).integers(0, 7, 1000)
    np.save(tmp_path / "y.npy", y)
    col = LazyColumn(NpyColumn(str(tmp_path / "y.npy")))
    idx = np.array([999, 0, 5, 5, 3])
    assert torch.equal(col[idx], torch.from_numpy(y[idx])) and col[idx].dtype == torch.int64
    assert torch.equal(col[10:20], torch.from_numpy(y[10:20])) and int(col[4]) == y[4]
    assert torch.equal(col.materialise(), torch.from_numpy(y))
    sub = col.take(PermutedRange(Bijection(1000, 1), 100, 200))
    assert torch.equal(sub[:], torch.from_numpy(y[Bijection(1000, 1)(np.arange(100, 200))]))
    with pytest.raises(IndexError, match="out of range"):
        col.store.read(np.array([1000]))
    (tmp_path / "t.npy").write_bytes((tmp_path / "y.npy").read_bytes()[:-16])
    with pytest.raises(ValueError, match="truncated"):
        NpyColumn(str(tmp_path / "t.npy")).read(np.array([999]))


@pytest.mark.parametrize("n, batch", [(10, 4), (7, 10), (1001, 96)])
def test_bijection_stream_covers_each_epoch_once_and_resumes(n: int, batch: int) -> None:
    stream = IndexStream(n, batch, seed=4, order="bijection")
    assert stream.perm is None  # nothing per example held
    got = torch.cat([stream.next() for _ in range(-(-3 * n // batch))])
    for e in range(3):
        assert torch.equal(got[e * n:(e + 1) * n].sort().values, torch.arange(n))
    assert not torch.equal(got[:n], got[n:2 * n]) or n < 3  # reshuffled every epoch
    state = stream.state_dict()
    other = IndexStream(n, batch, seed=4, order="bijection")
    other.load_state_dict(state)
    assert torch.equal(other.next(), stream.next())
    with pytest.raises(ValueError, match="data.order"):
        IndexStream(n, batch, seed=4).load_state_dict(state)


def _files(tmp_path: Path, n: int = 300) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8))
    np.save(tmp_path / "y.npy", rng.integers(0, 5, n))
    np.savez(tmp_path / "d.npz", x=np.load(tmp_path / "x.npy"), y=np.load(tmp_path / "y.npy"))


def test_bijection_splits_and_noise_are_lazy_and_equal_the_in_memory_ones(tmp_path: Path) -> None:
    _files(tmp_path)
    out = {}
    for source, path in (("npy", tmp_path), ("npz", tmp_path / "d.npz")):
        train, test = load_source(source, path=str(path), seed=2, order="bijection")
        s = make_splits(train, test, reference_size=40, pool_size=200, seed=2, order="bijection")
        out[source] = (corrupt(s.pool, label_noise=0.3, seed=3, order="bijection"), s.reference, test)
    lazy, eager = out["npy"], out["npz"]
    assert isinstance(lazy[0].y, LazyColumn) and isinstance(lazy[0].corruption, LazyColumn) and lazy[0].lazy
    assert not isinstance(eager[0].y, LazyColumn)
    for a, b in zip(lazy, eager):
        for col in ("y", "ids", "corruption", "true_y"):
            assert torch.equal(torch.as_tensor(getattr(a, col)[:]), getattr(b, col)), col
        assert torch.equal(a.x[:], b.x)
        assert a.fingerprint() == b.fingerprint()
    pool, ref, test = lazy
    ids = [set(p.ids[:].tolist()) for p in (pool, ref, test)]
    assert len(ids[0]) == 200 and len(ids[1]) == 40 and not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    noisy = pool.corruption[:] != 0
    assert int(noisy.sum()) == round(0.3 * 200) == round(pool.corrupted_fraction() * 200)
    assert bool((pool.y[:][noisy] != pool.true_y[:][noisy]).all()) and torch.equal(pool.y[:][~noisy], pool.true_y[:][~noisy])
    with pytest.raises(ValueError, match="data.order=permutation"):
        corrupt(pool, duplicates=0.1, order="bijection")


def test_config_auto_order_and_its_errors(tmp_path: Path) -> None:
    from learnability import config as C
    from learnability.data import build_data

    _files(tmp_path)
    assert C.data_order(C.DataConfig(source="npy")) == "bijection"
    assert C.data_order(C.DataConfig(source="fashion_mnist")) == "permutation"
    assert C.data_order(C.DataConfig(source="npy", order="permutation")) == "permutation"
    for bad, match in (({"order": "random"}, "data.order"), ({"source": "npy", "junk": 0.1}, "data.order")):
        with pytest.raises(C.ConfigError, match=match):
            C.validate(C.RunConfig(data=C.DataConfig(**bad)))
    base = C.DataConfig(source="npy", path=str(tmp_path), reference_size=30, label_noise=0.3, test_fraction=0.2)
    lazy, eager = build_data(base), build_data(C.DataConfig(**{**base.__dict__, "in_memory": True}))
    assert isinstance(lazy.pool.y, LazyColumn) and isinstance(eager.pool.y, torch.Tensor)
    for a, b in ((lazy.pool, eager.pool), (lazy.reference, eager.reference), (lazy.test, eager.test)):
        assert torch.equal(a.x[:], b.x) and torch.equal(a.y[:], b.y) and torch.equal(a.corruption[:], b.corruption)


@pytest.mark.parametrize("ids", [np.arange(50, 1050), np.delete(np.arange(1000), [0, 5, 6, 999, 500])])
def test_dense_index_lookups_and_streamed_cache_equal_the_sorted_ones(tmp_path: Path, ids: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    ids = rng.permutation(ids)
    losses = rng.random(len(ids)).astype(np.float32)
    index = DenseIndex.of_unsorted(lambda: (ids[i:i + 128] for i in range(0, len(ids), 128)))
    assert index is not None and index.count == len(ids)
    sorted_losses = np.empty_like(losses)
    sorted_losses[index.positions(ids)[0]] = losses
    write_cache(str(tmp_path / "a"), index, sorted_losses, data_fingerprint="d", weights_fingerprint="w", seconds=0)
    write_cache(str(tmp_path / "b"), ids, losses, data_fingerprint="d", weights_fingerprint="w", seconds=0)
    a, _ = read_cache(str(tmp_path / "a"), data_fingerprint="d", weights_fingerprint="w")
    b, _ = read_cache(str(tmp_path / "b"), data_fingerprint="d", weights_fingerprint="w")
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.losses, b.losses)  # the same files either way
    assert a.index is not None and np.array_equal(a.index.holes, index.holes)
    q = torch.from_numpy(ids[::7])
    plain = ReferenceLosses(np.asarray(b.ids), np.asarray(b.losses))  # no index: binary search
    assert torch.equal(a.lookup(q), plain.lookup(q))
    assert torch.equal(a.lookup(q), torch.from_numpy(losses[::7]))
    for missing in (int(ids.min()) - 1, int(ids.max()) + 1, *np.setdiff1d(np.arange(ids.min(), ids.max()), ids)[:2]):
        with pytest.raises(KeyError, match="not in the reference-loss cache"):
            a.lookup(torch.tensor([int(ids[0]), missing]))


def test_dense_index_refuses_sparse_or_repeated_ids() -> None:
    assert DenseIndex.of_unsorted(lambda: iter([np.array([0, 100, 200])])) is None  # mostly holes
    assert DenseIndex.of_unsorted(lambda: iter([np.array([3, 1]), np.array([2, 3])])) is None  # 3 twice
    assert DenseIndex.of_unsorted(lambda: iter([np.array([3, 3, 1, 2])])) is None
    assert DenseIndex.of_sorted(iter([np.array([1, 2]), np.array([2, 3])]), 4) is None
    assert DenseIndex.of_sorted(iter([np.arange(1, 9), np.array([10, 11, 12])]), 11).holes.tolist() == [9]
    assert DenseIndex.of_sorted(iter([np.array([1, 2]), np.array([4, 5])]), 4) is None  # 1 hole in 4: too many
    assert DenseIndex.of_unsorted(lambda: iter([np.array([2 ** 62 + 1, 2 ** 62])])).lo == 2 ** 62  # huge ids stay exact


@pytest.mark.parametrize("labels, match", [
    (np.array([0, 1, -1, 2] * 10), "labels must be >= 0"),
    (np.array([0.0, 1.5] * 20), "labels must be integers"),
    (np.array(["a", "b"] * 20), "labels must be integers"),
    (np.zeros((40, 2), dtype=np.int64), "1-D"),
    (np.array([0, 1, 9, 2] * 10), "label 9 is out of range for data.num_classes=5"),
])
def test_bad_npy_labels_are_found_by_the_start_up_scan(tmp_path: Path, labels: np.ndarray, match: str) -> None:
    np.save(tmp_path / "x.npy", np.zeros((40, 4, 4), dtype=np.uint8))
    np.save(tmp_path / "y.npy", labels)
    with pytest.raises(ValueError, match=match):
        load_source("npy", path=str(tmp_path), num_classes=5, order="bijection")


def test_integral_float_npy_labels_read_as_int64(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((40, 4, 4), dtype=np.uint8))
    np.save(tmp_path / "y.npy", np.array([0.0, 3.0] * 20))
    train, _ = load_source("npy", path=str(tmp_path), order="bijection")
    assert train.y[:].dtype == torch.int64 and set(train.y[:].tolist()) == {0, 3} and train.num_classes == 4
