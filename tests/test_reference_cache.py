"""The frozen reference: per-id loss lookup, training once, reusing, and refusing mismatches."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import learnability.loss_cache as loss_cache_mod
import learnability.reference as reference_mod
from learnability.data import ImageSet
from learnability.flops import measure_cost, mlp_cost
from learnability.losses import cross_entropy
from learnability.models import build_model
from learnability.loss_cache import read_cache, write_cache
from learnability.reference import CacheMismatchError, ReferenceLosses, prepare_reference

SHAPE, K = (1, 4, 4), 3
CPU = torch.device("cpu")


def test_lookup_by_id_without_float_casting() -> None:
    big = 2 ** 53
    ids = torch.tensor([big + 1, 5, 2 ** 24 + 1, big, 2 ** 24, big + 2, 0], dtype=torch.int64)
    losses = torch.arange(len(ids), dtype=torch.float32) * 0.5
    cache = ReferenceLosses.from_unsorted(ids, losses)
    assert np.array_equal(cache.ids, torch.sort(ids).values.numpy())
    assert cache.ids.dtype == np.int64
    # float64 cannot tell these ids apart; the lookup must
    assert float(big) == float(big + 1)
    want = [big, big + 1, big + 2, 2 ** 24 + 1, 2 ** 24, 0, 5]
    got = cache.lookup(torch.tensor(want, dtype=torch.int64))
    expected = [float(losses[ids.tolist().index(i)]) for i in want]
    assert got.tolist() == expected
    assert cache.lookup(torch.tensor([5, 5, 5])).tolist() == [0.5, 0.5, 0.5]


def test_lookup_missing_id_is_a_key_error() -> None:
    big = 2 ** 53
    cache = ReferenceLosses.from_unsorted(torch.tensor([big, 3, 10]), torch.tensor([1.0, 2.0, 3.0]))
    for missing in ([big + 1], [4], [11], [-1], [3, 99]):
        with pytest.raises(KeyError, match="not in the reference-loss cache"):
            cache.lookup(torch.tensor(missing, dtype=torch.int64))


def _set(n: int, seed: int, id_offset: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *SHAPE), generator=g) * 2 - 1
    y = torch.randint(0, K, (n,), generator=g)
    return ImageSet(x, y, torch.arange(n, dtype=torch.int64) + id_offset, K)


TRAIN = _set(24, seed=0)
POOL = _set(30, seed=1, id_offset=2 ** 40)
SETTINGS = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "seed": 0}


def _prepare(ref_dir: Path, *, pool: ImageSet = POOL, train_set: ImageSet = TRAIN, init_seed: int = 0,
             cache: bool = True, **overrides):
    torch.manual_seed(init_seed)
    model = build_model("mlp_tiny", SHAPE, K)
    settings = {**SETTINGS, **overrides}
    return prepare_reference(model, measure_cost(model, SHAPE), ref_dir=str(ref_dir), train_set=train_set, pool=pool,
                             cache=cache, device=CPU, progress=False, **settings)


def _refuse_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("the reference was retrained")
    monkeypatch.setattr(reference_mod, "train_model", fail)


def test_prepare_trains_saves_and_caches(tmp_path: Path) -> None:
    ref = _prepare(tmp_path)
    assert {"model.pt", "meta.json", "losses.json"} <= set(os.listdir(tmp_path))
    assert isinstance(ref.losses.ids, np.memmap) and isinstance(ref.losses.losses, np.memmap)
    assert not ref.model.training
    cost = mlp_cost(SHAPE, (32,), K)
    seen = SETTINGS["epochs"] * len(TRAIN)
    assert ref.one_off_flops == seen * cost.train + len(POOL) * cost.forward
    assert json.loads((tmp_path / "meta.json").read_text())["examples_seen"] == seen
    # the cache holds the reference's losses on the pool, by id
    with torch.no_grad():
        direct = cross_entropy(ref.model(POOL.x), POOL.y)
    torch.testing.assert_close(ref.losses.lookup(POOL.ids), direct)
    torch.testing.assert_close(ref.losses.lookup(POOL.ids.flip(0)), direct.flip(0))


def test_second_call_loads_without_retraining(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _prepare(tmp_path)
    _refuse_training(monkeypatch)
    second = _prepare(tmp_path, init_seed=123)  # a differently initialised model gets the saved weights
    for (k, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert np.array_equal(second.losses.ids, first.losses.ids)
    assert np.array_equal(second.losses.losses, first.losses.losses)
    assert second.one_off_flops == first.one_off_flops
    assert second.one_off_seconds == pytest.approx(first.one_off_seconds)


def test_without_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _prepare(tmp_path, cache=False)
    assert ref.losses is None
    assert not (tmp_path / "losses.json").exists()
    assert ref.one_off_flops == SETTINGS["epochs"] * len(TRAIN) * mlp_cost(SHAPE, (32,), K).train
    _refuse_training(monkeypatch)
    assert _prepare(tmp_path).losses is not None  # the trained weights are reused to build the cache later


def test_changed_pool_is_refused(tmp_path: Path) -> None:
    _prepare(tmp_path)
    flipped = copy.deepcopy(POOL)
    flipped.y[7] = (flipped.y[7] + 1) % K
    with pytest.raises(CacheMismatchError, match="different pool data"):
        _prepare(tmp_path, pool=flipped)
    renumbered = copy.deepcopy(POOL)
    renumbered.ids[0] = -5
    with pytest.raises(CacheMismatchError, match="different pool data"):
        _prepare(tmp_path, pool=renumbered)


@pytest.mark.parametrize("change, key", [({"epochs": 3}, "epochs"), ({"lr": 0.5}, "lr"), ({"seed": 1}, "seed"),
                                         ({"batch_size": 4}, "batch_size")])
def test_changed_training_settings_are_refused(tmp_path: Path, change: dict, key: str) -> None:
    _prepare(tmp_path, cache=False)
    with pytest.raises(CacheMismatchError, match=key):
        _prepare(tmp_path, cache=False, **change)


def test_changed_training_data_is_refused(tmp_path: Path) -> None:
    _prepare(tmp_path, cache=False)
    other = copy.deepcopy(TRAIN)
    other.x[0, 0, 0, 0] += 0.5
    with pytest.raises(CacheMismatchError, match="train_fingerprint"):
        _prepare(tmp_path, cache=False, train_set=other)


def test_corrupted_weights_are_refused(tmp_path: Path) -> None:
    _prepare(tmp_path, cache=False)
    (tmp_path / "model.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CacheMismatchError, match="model.pt"):
        _prepare(tmp_path, cache=False)


def test_swapped_weights_fail_the_checksum(tmp_path: Path) -> None:
    _prepare(tmp_path, cache=False)
    torch.manual_seed(99)
    torch.save(build_model("mlp_tiny", SHAPE, K).state_dict(), tmp_path / "model.pt")
    with pytest.raises(CacheMismatchError, match="checksum"):
        _prepare(tmp_path, cache=False)


def test_corrupted_loss_cache_record_is_refused(tmp_path: Path) -> None:
    _prepare(tmp_path)
    (tmp_path / "losses.json").write_bytes(b"not json {")
    with pytest.raises(CacheMismatchError, match="unreadable"):
        _prepare(tmp_path)


def test_cache_mismatch_is_a_value_error() -> None:
    assert issubclass(CacheMismatchError, ValueError)


def _data_files(ref_dir: Path) -> dict[str, Path]:
    record = json.loads((ref_dir / "losses.json").read_text())
    return {k: ref_dir / v for k, v in record["files"].items()}


@pytest.mark.parametrize("which", ["ids", "losses"])
def test_one_flipped_byte_fails_the_checksum(tmp_path: Path, which: str) -> None:
    _prepare(tmp_path)
    f = _data_files(tmp_path)[which]
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0x01  # a value byte, past the .npy header: still a valid array, wrong content
    f.write_bytes(bytes(raw))
    with pytest.raises(CacheMismatchError, match=rf"{f.name} does not match its sha256.*delete .*losses.json"):
        _prepare(tmp_path)


def test_missing_or_truncated_data_file_is_refused(tmp_path: Path) -> None:
    _prepare(tmp_path)
    files = _data_files(tmp_path)
    files["losses"].write_bytes(files["losses"].read_bytes()[:-8])
    with pytest.raises(CacheMismatchError, match="sha256"):
        _prepare(tmp_path)
    files["losses"].unlink()
    with pytest.raises(CacheMismatchError, match="missing"):
        _prepare(tmp_path)


def test_cache_mismatch_exits_2_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from learnability import cli

    def boom(argv):
        raise CacheMismatchError("the reference-loss cache file x.npy does not match its sha256")
    monkeypatch.setitem(cli.COMMANDS, "run", boom)
    assert cli.main(["run"]) == 2
    assert "x.npy does not match its sha256" in capsys.readouterr().err


def test_crash_while_writing_never_replaces_a_good_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = torch.tensor([2 ** 40 + 3, 7, 2 ** 25 + 1], dtype=torch.int64)
    write_cache(str(tmp_path), ids, np.array([1.0, 2.0, 3.0], dtype=np.float32),
                data_fingerprint="d", weights_fingerprint="w", seconds=1.0)
    good = sorted(os.listdir(tmp_path))

    real_save = np.save
    calls = []

    def torn_save(f, arr, **kw):  # write half the bytes of the second file, then "crash"
        calls.append(1)
        if len(calls) == 2:
            f.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt("power cut")
        real_save(f, arr, **kw)
    monkeypatch.setattr(np, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        write_cache(str(tmp_path), ids, np.array([9.0, 9.0, 9.0], dtype=np.float32),
                    data_fingerprint="d", weights_fingerprint="w", seconds=2.0)
    monkeypatch.setattr(np, "save", real_save)
    cache, seconds = read_cache(str(tmp_path), data_fingerprint="d", weights_fingerprint="w")
    assert seconds == 1.0
    assert cache.lookup(ids).tolist() == [1.0, 2.0, 3.0]
    # a complete new data file written before the crash is left beside the good cache, never used
    assert set(good) <= set(os.listdir(tmp_path))
    # a crash after both data files but before the record keeps the old record too
    monkeypatch.setattr(loss_cache_mod, "atomic_write_text", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_cache(str(tmp_path), ids, np.array([5.0, 5.0, 5.0], dtype=np.float32),
                    data_fingerprint="d", weights_fingerprint="w", seconds=3.0)
    monkeypatch.undo()
    cache, seconds = read_cache(str(tmp_path), data_fingerprint="d", weights_fingerprint="w")
    assert (seconds, cache.lookup(ids).tolist()) == (1.0, [1.0, 2.0, 3.0])
    # the next complete write replaces it and sweeps the leftovers
    write_cache(str(tmp_path), ids, np.array([4.0, 5.0, 6.0], dtype=np.float32),
                data_fingerprint="d", weights_fingerprint="w", seconds=4.0)
    cache, _ = read_cache(str(tmp_path), data_fingerprint="d", weights_fingerprint="w")
    assert cache.lookup(ids).tolist() == [4.0, 5.0, 6.0]
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".npy")]) == 2
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_crash_during_first_build_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loss_cache_mod, "atomic_write_text", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _prepare(tmp_path)
    monkeypatch.undo()
    assert not (tmp_path / "losses.json").exists()
    ref = _prepare(tmp_path)  # rebuilt from scratch
    assert len(ref.losses) == len(POOL)


def test_lookup_on_a_memory_mapped_cache_with_ids_beyond_float_precision(tmp_path: Path) -> None:
    n = 5000
    rng = np.random.default_rng(0)
    ids = (2 ** 53 + rng.choice(10 ** 9, n, replace=False)).astype(np.int64)  # float64 cannot tell many apart
    losses = rng.random(n).astype(np.float32)
    write_cache(str(tmp_path), ids, losses, data_fingerprint="d", weights_fingerprint="w", seconds=0.0)
    cache, _ = read_cache(str(tmp_path), data_fingerprint="d", weights_fingerprint="w")
    assert isinstance(cache.ids, np.memmap)
    q = rng.permutation(n)[:300]
    assert cache.lookup(torch.from_numpy(ids[q])).numpy().tolist() == losses[q].tolist()
    small = np.arange(2 ** 24 - 2, 2 ** 24 + 3, dtype=np.int64)  # float32 cannot tell 2**24 from 2**24 + 1
    write_cache(str(tmp_path), small, np.arange(5, dtype=np.float32), data_fingerprint="d", weights_fingerprint="w",
                seconds=0.0)
    cache, _ = read_cache(str(tmp_path), data_fingerprint="d", weights_fingerprint="w")
    assert cache.lookup(torch.tensor([2 ** 24 + 1, 2 ** 24, 2 ** 24 + 2])).tolist() == [3.0, 2.0, 4.0]
    with pytest.raises(KeyError, match="not in the reference-loss cache"):
        cache.lookup(torch.tensor([2 ** 24 + 3]))
    with pytest.raises(ValueError, match="integers"):
        cache.lookup(torch.tensor([1.0]))


def test_cache_from_a_lazy_column_is_built_in_chunks(tmp_path: Path) -> None:
    class Column:  # a lazy column: slicing loads only those rows, and it says how many it loaded
        def __init__(self, x):
            self.x, self.largest = x, 0

        def __len__(self):
            return len(self.x)

        def __getitem__(self, s):
            out = self.x[s]
            self.largest = max(self.largest, len(out))
            return out

    torch.manual_seed(0)
    model = build_model("mlp_tiny", SHAPE, K).eval()
    col = Column(POOL.x)
    cache, _ = reference_mod.load_or_build_cache(model, str(tmp_path), (col, POOL.y), POOL.ids, "d", "w", CPU, chunk=7)
    assert col.largest == 7
    with torch.no_grad():
        torch.testing.assert_close(cache.lookup(POOL.ids), cross_entropy(model(POOL.x), POOL.y))


def test_real_cli_run_with_a_corrupted_cache_exits_2_naming_the_file(tmp_path: Path, capsys) -> None:
    from learnability.cli import main

    args = ["run", "--data.source=digits", "--data.reference_size=300", "--model.learner=mlp_tiny",
            "--model.proxy=mlp_tiny", "--train.steps=2", "--train.batch_size=16", "--train.eval_every=2",
            "--reference.epochs=1", "--progress=false", "--train.threads=1", f"--reference.dir={tmp_path / 'ref'}"]
    assert main([*args, f"--out={tmp_path / 'a'}"]) == 0
    f = _data_files(tmp_path / "ref")["losses"]
    raw = bytearray(f.read_bytes())
    raw[200] ^= 0xFF
    f.write_bytes(bytes(raw))
    capsys.readouterr()
    assert main([*args, f"--out={tmp_path / 'b'}"]) == 2
    err = capsys.readouterr().err
    assert f.name in err and "sha256" in err and "delete" in err


def test_a_named_cache_of_rows_round_trips_memory_mapped_and_checksummed(tmp_path):
    from learnability.loss_cache import read_cache, write_cache

    ids = np.array([2**40 + 7, 5, 2**25 + 1], dtype=np.int64)
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_cache(str(tmp_path), ids, rows, data_fingerprint="d", weights_fingerprint="w", seconds=1.5, name="embeddings")
    assert (tmp_path / "embeddings.json").is_file() and not (tmp_path / "losses.json").exists()
    cache, seconds = read_cache(str(tmp_path), data_fingerprint="d", weights_fingerprint="w", name="embeddings")
    assert seconds == 1.5 and isinstance(cache.losses, np.memmap) and cache.losses.shape == (3, 4)
    assert torch.equal(cache.lookup(torch.tensor([5, 2**40 + 7])), torch.from_numpy(rows[[1, 0]]))
    values = next(tmp_path.glob("embeddings-*.values.npy"))
    data = bytearray(values.read_bytes())
    data[-1] ^= 0xFF
    values.write_bytes(bytes(data))
    with pytest.raises(CacheMismatchError, match="sha256"):
        read_cache(str(tmp_path), data_fingerprint="d", weights_fingerprint="w", name="embeddings")
