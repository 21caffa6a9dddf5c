"""The frozen reference: per-id loss lookup, training once, reusing, and refusing mismatches."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch

import learnability.reference as reference_mod
from learnability.data import ImageSet
from learnability.flops import measure_cost, mlp_cost
from learnability.losses import cross_entropy
from learnability.models import build_model
from learnability.reference import CacheMismatchError, ReferenceLosses, prepare_reference

SHAPE, K = (1, 4, 4), 3
CPU = torch.device("cpu")


def test_lookup_by_id_without_float_casting() -> None:
    big = 2 ** 53
    ids = torch.tensor([big + 1, 5, 2 ** 24 + 1, big, 2 ** 24, big + 2, 0], dtype=torch.int64)
    losses = torch.arange(len(ids), dtype=torch.float32) * 0.5
    cache = ReferenceLosses.from_unsorted(ids, losses)
    assert torch.equal(cache.ids, torch.sort(ids).values)
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
    assert {"model.pt", "meta.json", "losses.pt"} <= set(os.listdir(tmp_path))
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
    assert torch.equal(second.losses.ids, first.losses.ids)
    assert torch.equal(second.losses.losses, first.losses.losses)
    assert second.one_off_flops == first.one_off_flops
    assert second.one_off_seconds == pytest.approx(first.one_off_seconds)


def test_without_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _prepare(tmp_path, cache=False)
    assert ref.losses is None
    assert not (tmp_path / "losses.pt").exists()
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


def test_corrupted_loss_cache_is_refused(tmp_path: Path) -> None:
    _prepare(tmp_path)
    (tmp_path / "losses.pt").write_bytes(b"not a torch file")
    with pytest.raises(CacheMismatchError, match="unreadable"):
        _prepare(tmp_path)


def test_cache_mismatch_is_a_value_error() -> None:
    assert issubclass(CacheMismatchError, ValueError)
