"""`Selector` and the per-example loss helpers it builds on."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from learnability.flops import ModelCost, cnn_cost, mlp_cost, step_flops
from learnability.losses import check_per_example, cross_entropy, score_losses
from learnability.models import build_model
from learnability.reference import ReferenceLosses
from learnability.selector import Selector

SHAPE, K = (1, 8, 8), 4
BIG_B, SMALL_B = 12, 5


def _batch(n: int = BIG_B, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *SHAPE), generator=g) * 2 - 1
    y = torch.randint(0, K, (n,), generator=g)
    ids = torch.arange(n, dtype=torch.int64) + 1000 * seed
    return x, y, ids


def _cached_reference(n_batches: int = 4) -> ReferenceLosses:
    ids = torch.cat([_batch(seed=s)[2] for s in range(n_batches)])
    losses = torch.rand(len(ids), generator=torch.Generator().manual_seed(42)) * 3
    return ReferenceLosses.from_unsorted(ids, losses)


def _proxy(name: str = "mlp_tiny", seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = build_model(name, SHAPE, K)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def _selector(name: str = "mlp_tiny", seed: int = 0, model_seed: int = 0, **kwargs) -> Selector:
    proxy, opt = _proxy(name, model_seed)
    return Selector(score="learnability", batch_size=SMALL_B, proxy=proxy, proxy_optimizer=opt,
                    reference_losses=_cached_reference(), seed=seed, **kwargs)


# --- losses ---------------------------------------------------------------------------------


def test_cross_entropy_is_per_example() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 0])
    got = cross_entropy(logits, y)
    assert got.shape == (3,)
    torch.testing.assert_close(got, nn.functional.cross_entropy(logits, y, reduction="none"))
    torch.testing.assert_close(got[1], torch.tensor(2.0).log())


def test_check_per_example() -> None:
    check_per_example(torch.zeros(3), 3)
    with pytest.raises(ValueError, match="one loss per example"):
        check_per_example(torch.tensor(1.0), 3)
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        check_per_example(torch.zeros(3, 1), 3)


def test_score_losses_chunks_and_restores_mode() -> None:
    torch.manual_seed(0)
    model = build_model("cnn_tiny", SHAPE, K).train()
    x, y, _ = _batch()
    stats = copy.deepcopy({k: v for k, v in model.state_dict().items() if "running" in k or "batches" in k})
    a = score_losses(model, (x, y), chunk=5)
    assert model.training
    for k, v in stats.items():
        assert torch.equal(model.state_dict()[k], v), k
    model.eval()
    b = score_losses(model, (x, y))
    assert not model.training
    with torch.no_grad():
        direct = cross_entropy(model(x), y)
    torch.testing.assert_close(a, direct)
    torch.testing.assert_close(b, direct)


# --- Selector -------------------------------------------------------------------------------


def test_select_returns_b_distinct_indices() -> None:
    sel = _selector()
    for seed in range(3):
        x, y, ids = _batch(seed=seed)
        s = sel.select_index((x, y), ids)
        assert s.index.shape == (SMALL_B,) and s.index.dtype == torch.int64
        assert len(set(s.index.tolist())) == SMALL_B
        assert all(0 <= i < BIG_B for i in s.index.tolist())
        assert s.scores.shape == (BIG_B,) and torch.isfinite(s.scores).all()
        assert set(s.losses) == {"online", "reference"}
        torch.testing.assert_close(s.scores, s.losses["online"] - s.losses["reference"])
        torch.testing.assert_close(s.losses["reference"], sel.reference_losses.lookup(ids))


def test_topk_selector_picks_highest_scores() -> None:
    sel = _selector(sampler="topk")
    x, y, ids = _batch()
    s = sel.select_index((x, y), ids)
    assert set(s.index.tolist()) == set(torch.topk(s.scores, SMALL_B).indices.tolist())


def test_train_proxy_changes_the_proxy() -> None:
    sel = _selector()
    x, y, ids = _batch()
    before = copy.deepcopy(sel.proxy.state_dict())
    s = sel.select_index((x, y), ids)
    for k, v in sel.proxy.state_dict().items():  # selecting alone does not train
        assert torch.equal(v, before[k]), k
    loss = sel.train_proxy((x[s.index], y[s.index]))
    assert loss == pytest.approx(float(s.losses["online"][s.index].mean()), rel=1e-5)
    changed = [k for k, v in sel.proxy.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    assert not torch.equal(sel.select_index((x, y), ids).losses["online"], s.losses["online"])


def test_scoring_leaves_batchnorm_statistics_and_mode_alone() -> None:
    sel = _selector("cnn_tiny")
    sel.proxy.train()
    x, y, ids = _batch()
    before = copy.deepcopy(sel.proxy.state_dict())
    sel.select_index((x, y), ids)
    assert sel.proxy.training
    for k, v in sel.proxy.state_dict().items():
        assert torch.equal(v, before[k]), k
    sel.proxy.eval()
    sel.select_index((x, y), ids)
    assert not sel.proxy.training
    # training the proxy does update its BN statistics (so the check above can fail)
    sel.train_proxy((x[:SMALL_B], y[:SMALL_B]))
    assert sel.proxy.training
    assert not torch.equal(sel.proxy.state_dict()["features.1.running_mean"], before["features.1.running_mean"])


def test_select_checks_its_inputs() -> None:
    sel = _selector()
    x, y, ids = _batch()
    with pytest.raises(ValueError, match="at least"):
        sel.select_index((x[:SMALL_B - 1], y[:SMALL_B - 1]), ids[:SMALL_B - 1])
    with pytest.raises(ValueError, match="disagree"):
        sel.select_index((x, y[:-1]), ids)
    with pytest.raises(ValueError, match="disagree"):
        sel.select_index((x, y), ids[:-1])
    s = sel.select_index((x[:SMALL_B], y[:SMALL_B]), ids[:SMALL_B])  # B == b: everything is selected
    assert sorted(s.index.tolist()) == list(range(SMALL_B))
    with pytest.raises(KeyError):
        sel.select_index((x, y), ids + 10 ** 12)  # ids the reference cache does not hold


def test_scalar_loss_function_is_refused() -> None:
    def mean_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    sel = _selector(loss_fn=mean_loss)
    x, y, ids = _batch()
    with pytest.raises(ValueError, match="one loss per example"):
        sel.select_index((x, y), ids)
    with pytest.raises(ValueError, match="one loss per example"):
        sel.train_proxy((x[:SMALL_B], y[:SMALL_B]))


def test_a_scoring_only_selector_needs_no_proxy_optimizer() -> None:
    """A selector that only scores (a scoring actor, whose proxy weights are published to it) is
    built without an optimizer; training its proxy is then an error that says what is missing."""
    proxy, _ = _proxy()
    sel = Selector(score="learnability", batch_size=SMALL_B, proxy=proxy, reference_losses=_cached_reference())
    x, y, ids = _batch()
    assert sel.select_index((x, y), ids).index.shape == (SMALL_B,)
    with pytest.raises(ValueError, match="proxy_optimizer"):
        sel.train_proxy((x[:SMALL_B], y[:SMALL_B]))
    state = sel.state_dict()
    assert "proxy_optimizer" not in state
    sel.load_state_dict(state)


def test_constructor_checks() -> None:
    proxy, opt = _proxy()
    with pytest.raises(ValueError, match="proxy"):
        Selector(score="learnability", batch_size=4, reference_losses=_cached_reference())
    with pytest.raises(ValueError, match="reference"):
        Selector(score="learnability", batch_size=4, proxy=proxy, proxy_optimizer=opt)
    with pytest.raises(ValueError, match="learner"):
        Selector(score="rho", batch_size=4, reference=proxy)
    with pytest.raises(ValueError, match="batch_size"):
        Selector(score="uniform", batch_size=0)
    with pytest.raises(ValueError, match="unknown score"):
        Selector(score="nope", batch_size=4)
    with pytest.raises(ValueError, match="unknown sampler"):
        Selector(score="uniform", batch_size=4, sampler="nope")


def _run(sel: Selector, seeds: range) -> list[tuple[list[int], torch.Tensor]]:
    out = []
    for seed in seeds:
        x, y, ids = _batch(seed=seed)
        s = sel.select_index((x, y), ids)
        sel.train_proxy((x[s.index], y[s.index]))
        out.append((s.index.tolist(), s.scores))
    return out


def test_state_dict_round_trip_gives_identical_next_selections() -> None:
    sel = _selector(seed=1, model_seed=0)
    _run(sel, range(0, 1))
    buf = io.BytesIO()
    torch.save(sel.state_dict(), buf)
    future = _run(sel, range(1, 4))

    other = _selector(seed=7, model_seed=5)  # another generator and other proxy weights, then restored
    buf.seek(0)
    other.load_state_dict(torch.load(buf, weights_only=False))
    for (idx_a, scores_a), (idx_b, scores_b) in zip(future, _run(other, range(1, 4))):
        assert idx_a == idx_b
        assert torch.equal(scores_a, scores_b)
    assert other.ledger.flops == sel.ledger.flops

    fresh = _selector(seed=7, model_seed=5)  # without the state the selections differ
    assert [i for i, _ in _run(fresh, range(1, 4))] != [i for i, _ in future]


def test_seeded_selectors_agree_and_leave_global_rng_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(2)
    a = [i for i, _ in _run(_selector(seed=3), range(3))]
    b = [i for i, _ in _run(_selector(seed=3), range(3))]
    assert a == b
    sel = _selector(seed=3)
    x, y, ids = _batch()
    torch.manual_seed(5)
    s = sel.select_index((x, y), ids)  # the first call also measures the proxy's FLOPs
    sel.train_proxy((x[s.index], y[s.index]))
    assert torch.equal(torch.rand(2), expected)


@pytest.mark.parametrize("proxy_name, cost", [("mlp_tiny", mlp_cost(SHAPE, (32,), K)),
                                              ("cnn_tiny", cnn_cost(SHAPE, 8, K))])
def test_ledger_matches_step_flops_cached(proxy_name: str, cost: ModelCost) -> None:
    sel = _selector(proxy_name)
    x, y, ids = _batch()
    s = sel.select_index((x, y), ids)
    sel.train_proxy((x[s.index], y[s.index]))
    want = step_flops(learner=ModelCost(0.0, 0.0), b=SMALL_B, big_b=BIG_B, proxy=cost, reference=cost,
                      reference_cached=True)
    assert sel.ledger.flops["scoring"] == want["scoring"] == cost.forward * BIG_B
    assert sel.ledger.flops["proxy_train"] == want["proxy_train"] == cost.train * SMALL_B
    assert sel.ledger.flops["learner"] == 0.0 and sel.ledger.flops["reference"] == 0.0
    assert sel.ledger.seconds["scoring"] > 0 and sel.ledger.seconds["proxy_train"] > 0


def test_ledger_matches_step_flops_uncached_reference() -> None:
    proxy, opt = _proxy()
    torch.manual_seed(1)
    reference = build_model("mlp_tiny", SHAPE, K)
    sel = Selector(score="learnability", batch_size=SMALL_B, proxy=proxy, proxy_optimizer=opt, reference=reference)
    x, y, ids = _batch()
    s = sel.select_index((x, y), ids)
    sel.train_proxy((x[s.index], y[s.index]))
    cost = mlp_cost(SHAPE, (32,), K)
    want = step_flops(learner=ModelCost(0.0, 0.0), b=SMALL_B, big_b=BIG_B, proxy=cost, reference=cost,
                      reference_cached=False)
    assert sel.ledger.flops["scoring"] == want["scoring"] == 2 * cost.forward * BIG_B
    assert sel.ledger.flops["proxy_train"] == want["proxy_train"]
    with torch.no_grad():
        torch.testing.assert_close(s.losses["reference"], cross_entropy(reference(x), y))


def test_rho_scores_with_the_learner() -> None:
    torch.manual_seed(0)
    learner, reference = build_model("cnn_tiny", SHAPE, K), build_model("mlp_tiny", SHAPE, K)
    sel = Selector(score="rho", batch_size=SMALL_B, learner=learner, reference=reference, sampler="topk")
    x, y, ids = _batch()
    s = sel.select_index((x, y), ids)
    with torch.no_grad():
        learner.eval()
        expected = cross_entropy(learner(x), y) - cross_entropy(reference(x), y)
    torch.testing.assert_close(s.scores, expected)
    assert math.isnan(sel.train_proxy((x[s.index], y[s.index])))  # no proxy to train
    l_cost, r_cost = cnn_cost(SHAPE, 8, K), mlp_cost(SHAPE, (32,), K)
    want = step_flops(learner=l_cost, b=SMALL_B, big_b=BIG_B, reference=r_cost, reference_cached=False,
                      learner_scores=True)
    assert sel.ledger.flops["scoring"] == want["scoring"]
    assert sel.ledger.flops["proxy_train"] == want["proxy_train"] == 0.0


def test_uniform_selector_needs_no_models() -> None:
    sel = Selector(score="uniform", batch_size=SMALL_B, seed=0)
    x, y, ids = _batch()
    s = sel.select_index((x, y), ids)
    assert len(set(s.index.tolist())) == SMALL_B
    assert torch.equal(s.scores, torch.zeros(BIG_B))
    assert sel.ledger.total_flops() == 0.0


@pytest.mark.parametrize("n_clean", [2, SMALL_B, 9])
def test_oracle_keeps_every_clean_candidate_first(n_clean: int) -> None:
    from learnability.tasks import CorruptionFlags
    x, y, ids = _batch()
    clean = torch.randperm(BIG_B, generator=torch.Generator().manual_seed(n_clean))[:n_clean]
    codes = torch.ones(BIG_B, dtype=torch.int8)
    codes[clean] = 0
    flags = CorruptionFlags.of(ids.flip(0), codes.flip(0))  # any order of the pool
    for sampler, temperature in (("softmax", 1.0), ("softmax", 100.0), ("topk", 1.0)):
        sel = Selector(score="oracle", batch_size=SMALL_B, corrupted_fn=flags, sampler=sampler,
                       temperature=temperature, seed=n_clean)
        picked = set(sel.select_index((x, y), ids).index.tolist())
        want = set(clean.tolist())
        assert (want <= picked) if n_clean <= SMALL_B else (picked <= want), (sampler, temperature)
        assert sel.ledger.total_flops() == 0.0
    # among clean ones (more than b), which are kept is random, not by position
    kept = [set(Selector(score="oracle", batch_size=SMALL_B, corrupted_fn=flags, seed=s).select_index((x, y), ids)
                .index.tolist()) for s in range(8)]
    assert n_clean <= SMALL_B or len({frozenset(k) for k in kept}) > 1


def test_oracle_needs_the_ground_truth() -> None:
    with pytest.raises(ValueError, match="ground-truth corruption flags"):
        Selector(score="oracle", batch_size=SMALL_B)
    from learnability.tasks import CorruptionFlags
    x, y, ids = _batch()
    sel = Selector(score="oracle", batch_size=SMALL_B, corrupted_fn=CorruptionFlags.of(ids[:6], torch.zeros(6)))
    with pytest.raises(ValueError, match="not in the pool"):
        sel.select_index((x, y), ids)
    with pytest.raises(ValueError, match="pass the super-batch's ids"):
        sel.select_index((x, y))


def test_graded_oracle_keeps_the_least_damaged_first() -> None:
    from learnability.tasks import CorruptionFlags
    x, y, ids = _batch()
    codes = torch.tensor([3, 1, 2, 3, 1, 0, 2, 3, 1, 2, 3, 1], dtype=torch.int8)  # one clean, then grades
    flags = CorruptionFlags.of(ids, codes, grades={1: 0.25, 2: 0.5, 3: 1.0})
    assert flags(ids[:3]).tolist() == [1.0, 0.25, 0.5]
    sel = Selector(score="oracle_graded", batch_size=SMALL_B, corrupted_fn=flags, seed=0)
    picked = sel.select_index((x, y), ids).index
    assert sorted(codes[picked].tolist()) == [0, 1, 1, 1, 1]  # the clean one, then the lightest kind
    with pytest.raises(ValueError, match=r"no grade for corruption code\(s\) \[3\]"):
        CorruptionFlags.of(ids, codes, grades={1: 0.25, 2: 0.5})
