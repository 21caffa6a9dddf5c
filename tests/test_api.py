"""The public API for a user's own loop: Selector on any batch structure, super_batches, RunLogger."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset, TensorDataset

import learnability
from learnability import RunLogger, Selector, functional, super_batches
from learnability.models import build_model
from learnability.io import read_jsonl
from learnability.report import build_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DictSet(Dataset):
    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "label": self.y[i]}


def dict_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch["image"]), batch["label"], reduction="none")


def test_super_batches_map_style_dicts_and_stable_ids():
    ds = DictSet(100)
    loader = super_batches(ds, batch_size=10, filter_ratio=0.5, seed=3)
    seen = []
    for batch, ids in loader:
        assert set(batch) == {"image", "label"} and batch["image"].shape == (20, 1, 8, 8)
        assert ids.dtype == torch.int64 and ids.shape == (20,)
        assert torch.equal(batch["label"], ds.y[ids])  # ids are the dataset's indices
        seen += ids.tolist()
    assert sorted(seen) == list(range(100))
    again = [ids.tolist() for _, ids in super_batches(ds, batch_size=10, filter_ratio=0.5, seed=3)]
    assert sum(again, []) == seen  # seeded shuffling, no global RNG


def test_super_batches_iterable_and_errors():
    class Stream(IterableDataset):
        def __iter__(self):
            for i in range(50):
                yield torch.full((2,), float(i)), i % 3

    batches = list(super_batches(Stream(), batch_size=5, filter_ratio=0.75))
    assert len(batches) == 2 and batches[1][1].tolist() == list(range(20, 40))
    assert torch.equal(batches[0][0][0][:, 0], torch.arange(20.0))
    with pytest.raises(ValueError, match="filter_ratio"):
        super_batches(DictSet(10), batch_size=2, filter_ratio=1.0)
    with pytest.raises(ValueError, match="fewer than one super-batch"):
        super_batches(DictSet(10), batch_size=8, filter_ratio=0.5)


def _selector(score: str = "learnability", loss=dict_loss) -> Selector:
    torch.manual_seed(0)
    proxy, reference = build_model("cnn_tiny", (1, 8, 8), 3), build_model("mlp_tiny", (1, 8, 8), 3)
    return Selector(score=score, batch_size=6, proxy=proxy, proxy_optimizer=torch.optim.AdamW(proxy.parameters()),
                    reference=reference, loss_fn=loss, seed=1)


def test_selector_returns_same_structure_and_touches_no_global_state():
    sel = _selector()
    batch, ids = next(iter(super_batches(DictSet(40), batch_size=6, filter_ratio=0.5)))
    learner = build_model("cnn_small", (1, 8, 8), 3)
    rng = torch.random.get_rng_state()
    bn = [b.clone() for b in sel.proxy.buffers()]
    out = sel.select(batch, ids)
    assert set(out) == {"image", "label"} and out["image"].shape == (6, 1, 8, 8)
    chosen = sel.last.index
    assert torch.equal(out["label"], batch["label"][chosen]) and len(set(chosen.tolist())) == 6
    assert all(torch.equal(a, b) for a, b in zip(bn, sel.proxy.buffers()))  # scoring in eval mode
    assert sel.proxy.training  # and the mode is restored
    assert torch.isfinite(torch.tensor(sel.train_proxy(out)))
    sel.charge_learner(learner, out)
    assert torch.equal(rng, torch.random.get_rng_state())
    flops = sel.flops
    assert flops["scoring"] > 0 and flops["proxy_train"] > 0 and flops["learner"] > 0
    assert sel.summary()["flops_total"] == pytest.approx(sum(flops.values()))


def test_selector_state_round_trip_resumes_identically():
    a = _selector()
    batch, ids = next(iter(super_batches(DictSet(40), batch_size=6, filter_ratio=0.5)))
    a.train_proxy(a.select(batch, ids))
    b = _selector()
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.select_index(batch, ids).index, b.select_index(batch, ids).index)


def test_selector_bad_input_messages():
    sel = _selector()
    batch, ids = next(iter(super_batches(DictSet(40), batch_size=6, filter_ratio=0.5)))
    with pytest.raises(ValueError, match="at least"):
        sel.select({k: v[:5] for k, v in batch.items()})
    with pytest.raises(ValueError, match="disagree"):
        sel.select({"image": batch["image"], "label": batch["label"][:-1]})
    scalar = _selector(loss=lambda m, b: dict_loss(m, b).mean())
    with pytest.raises(ValueError, match="scalar.*one loss per example"):
        scalar.select(batch, ids)


def test_functional_layer_exports_pure_functions():
    for name in functional.__all__:
        assert callable(getattr(functional, name)) or isinstance(getattr(functional, name), type)
    s = functional.compute_scores("learnability", {"online": torch.tensor([2.0, 1.0]), "reference": torch.tensor([0.5, 1.0])}, 2)
    assert torch.equal(s, torch.tensor([1.5, 0.0]))
    assert set(learnability.__all__) >= {"Selector", "super_batches", "RunLogger", "functional"}


def test_runlogger_runs_are_reported(tmp_path):
    for arm, accs in (("uniform", [0.5, 0.6, 0.7, 0.8]), ("learnability", [0.6, 0.8, 0.8, 0.9])):
        sel = Selector(score="uniform", batch_size=2)
        with RunLogger(str(tmp_path / arm), arm=arm, config={"model": {"learner": "mine"}}) as log:
            for step, acc in enumerate(accs, 1):
                sel.ledger.add("learner", flops=100.0, seconds=1.0)
                log.write(step, sel.ledger, loss=torch.tensor(1.0), test_accuracy=acc)
    path, rows = build_report([str(tmp_path)], str(tmp_path / "rep"))
    table = {r["arm"]: r for r in rows}
    assert table["learnability"]["updates_saved"] == pytest.approx(1 - 3 / 4)
    with open(path) as f:
        assert "n/a" in f.read()  # no corruption record in a user's run
    with pytest.raises(FileExistsError):
        RunLogger(str(tmp_path / "uniform"), arm="uniform")


def test_example_script_runs(tmp_path):
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("dataset-fashion-mnist is not installed")
    out = tmp_path / "own"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "own_loop.py"), "20", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "test accuracy after 20 selected steps" in r.stdout
    rows = read_jsonl(str(out / "metrics.jsonl"))
    assert rows[-1]["flops_learner"] > 0 and rows[-1]["flops_reference"] > 0 and rows[-1]["test_accuracy"] > 0.1
