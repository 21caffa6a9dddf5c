"""Contract tests over every registered score and sampler, plus the softmax sampler's statistics.

A new score or sampler is covered by the loops below without writing a test; a new score only needs
a hand-made expected value in `EXPECTED` (the sign test fails until it has one).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from learnability.scores import LOSS_KINDS, compute_scores, get_score, list_scores
from learnability.selection import get_sampler, is_joint, list_samplers

B = 7

# Hand-made losses: online, reference and learner all differ, so each score's formula is pinned.
ONLINE = torch.tensor([2.0, 0.5, 1.0, 3.0, 0.1, 1.5, 0.7])
REFERENCE = torch.tensor([0.2, 1.5, 1.0, 0.4, 2.0, 0.3, 0.9])
LEARNER = torch.tensor([1.0, 1.0, 4.0, 0.2, 0.6, 2.5, 0.1])
CORRUPTED = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0])  # ground truth, not a loss (the oracle's)
HAND = {"online": ONLINE, "reference": REFERENCE, "learner": LEARNER, "corrupted": CORRUPTED}
EXPECTED = {
    "learnability": ONLINE - REFERENCE,
    "hard_learner": ONLINE,
    "easy_reference": -REFERENCE,
    "rho": LEARNER - REFERENCE,
    "uniform": torch.zeros(B),
    "random": torch.zeros(B),  # the random-subset control: selection by softmax of equal scores
    "oracle": -1e4 * CORRUPTED,
    "oracle_graded": -1e4 * CORRUPTED,  # the same ranking; the task gives grades instead of flags
}


def _random_losses(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {kind: torch.rand(n, generator=g) * 5 for kind in LOSS_KINDS}


def test_registries_are_not_empty() -> None:
    assert {"learnability", "hard_learner", "easy_reference", "uniform", "rho"} <= set(list_scores())
    assert {"softmax", "topk"} <= set(list_samplers())


def test_one_sampler_registry_holds_flat_and_joint_samplers() -> None:
    flat, joint = list_samplers("flat"), list_samplers("joint")
    assert list_samplers() == flat and "jest" in joint and not set(flat) & set(joint)
    assert list_samplers("all") == sorted(flat + joint)
    assert [is_joint(n) for n in ("softmax", "jest")] == [False, True]
    with pytest.raises(ValueError, match="unknown sampler kind"):
        list_samplers("matrix")
    with pytest.raises(ValueError, match="unknown sampler 'nope'; choose one of jest, softmax, topk"):
        is_joint("nope")


# --- scores ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_scores())
def test_score_shape_finite_deterministic(name: str) -> None:
    losses = _random_losses(B, seed=1)
    s1 = compute_scores(name, losses, B)
    s2 = compute_scores(name, {k: v.clone() for k, v in losses.items()}, B)
    assert s1.shape == (B,)
    assert s1.is_floating_point()
    assert torch.isfinite(s1).all()
    assert torch.equal(s1, s2)


@pytest.mark.parametrize("name", list_scores())
def test_score_on_hand_made_case(name: str) -> None:
    if name not in EXPECTED:
        pytest.fail(f"score {name!r} has no hand-made expected value; add one to EXPECTED")
    got = compute_scores(name, HAND, B)
    torch.testing.assert_close(got, EXPECTED[name])


@pytest.mark.parametrize("name", list_scores())
def test_score_reads_only_the_losses_it_declares(name: str) -> None:
    needs = get_score(name).needs
    base = _random_losses(B, seed=2)
    other = _random_losses(B, seed=3)
    changed = {k: (base[k] if k in needs else other[k]) for k in LOSS_KINDS}
    assert torch.equal(compute_scores(name, base, B), compute_scores(name, changed, B))
    # ... and only those are needed: passing exactly the declared kinds works.
    compute_scores(name, {k: base[k] for k in needs}, B)


def test_learnability_prefers_learnable_over_noisy_and_easy() -> None:
    # example 0: learnable (online high, reference low); 1: noisy (both high); 2: easy (both low)
    online = torch.tensor([3.0, 3.0, 0.1])
    reference = torch.tensor([0.1, 3.0, 0.1])
    s = compute_scores("learnability", {"online": online, "reference": reference}, 3)
    assert int(s.argmax()) == 0
    assert s[0] > s[1] and s[0] > s[2]


@pytest.mark.parametrize("name", [n for n in list_scores() if get_score(n).needs])
def test_compute_scores_rejects_bad_losses(name: str) -> None:
    needs = get_score(name).needs
    good = _random_losses(B, seed=4)
    for kind in needs:
        missing = {k: v for k, v in good.items() if k != kind}
        with pytest.raises(ValueError, match=kind):
            compute_scores(name, missing, B)
        for bad_shape in (torch.rand(B + 1), torch.rand(B, 1), torch.rand(())):
            with pytest.raises(ValueError, match="one value per example"):
                compute_scores(name, {**good, kind: bad_shape}, B)
        for bad_value in (float("nan"), float("inf"), float("-inf")):
            t = good[kind].clone()
            t[3] = bad_value
            with pytest.raises(ValueError, match="non-finite"):
                compute_scores(name, {**good, kind: t}, B)


def test_unknown_score_is_a_value_error_listing_choices() -> None:
    with pytest.raises(ValueError, match="learnability"):
        get_score("no_such_score")
    with pytest.raises(ValueError):
        compute_scores("no_such_score", {}, 3)


# --- samplers -------------------------------------------------------------------------------

SCORES = torch.tensor([0.3, -1.2, 2.5, 0.0, 1.1, -0.4, 0.9, 1.7, -2.0, 0.6])


def _draw(name: str, scores: torch.Tensor, k: int, seed: int, temperature: float = 1.0) -> torch.Tensor:
    return get_sampler(name)(scores, k, temperature=temperature, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list_samplers())
@pytest.mark.parametrize("k", [1, 4, len(SCORES)])
def test_sampler_returns_k_distinct_indices(name: str, k: int) -> None:
    idx = _draw(name, SCORES, k, seed=0)
    assert idx.shape == (k,)
    assert idx.dtype == torch.int64
    assert len(set(idx.tolist())) == k
    assert all(0 <= i < len(SCORES) for i in idx.tolist())
    if k == len(SCORES):
        assert sorted(idx.tolist()) == list(range(len(SCORES)))


@pytest.mark.parametrize("name", list_samplers())
def test_sampler_deterministic_under_seeded_generator(name: str) -> None:
    for seed in range(5):
        assert torch.equal(_draw(name, SCORES, 4, seed), _draw(name, SCORES, 4, seed))
    # the generator advances: repeated draws from one generator are not all the same for softmax
    g = torch.Generator().manual_seed(0)
    draws = {tuple(get_sampler(name)(SCORES, 4, generator=g).tolist()) for _ in range(20)}
    if name == "softmax":
        assert len(draws) > 1
    if name == "topk":
        assert len(draws) == 1


@pytest.mark.parametrize("name", list_samplers())
def test_sampler_does_not_touch_global_rng(name: str) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _draw(name, SCORES, 4, seed=9)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", list_samplers())
def test_sampler_errors(name: str) -> None:
    sampler = get_sampler(name)
    g = torch.Generator().manual_seed(0)
    for k in (0, -1, len(SCORES) + 1):
        with pytest.raises(ValueError, match="1 <= k <= B"):
            sampler(SCORES, k, generator=g)
    for bad in (float("nan"), float("inf"), float("-inf")):
        s = SCORES.clone()
        s[2] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            sampler(s, 2, generator=g)
    for t in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            sampler(SCORES, 2, temperature=t, generator=g)
    with pytest.raises(ValueError, match="1-D"):
        sampler(SCORES.view(2, 5), 2, generator=g)


def test_unknown_sampler_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="softmax"):
        get_sampler("no_such_sampler")


def test_topk_picks_highest_and_breaks_ties_by_lower_index() -> None:
    assert _draw("topk", SCORES, 3, seed=0).tolist() == [2, 7, 4]
    ties = torch.tensor([1.0, 5.0, 5.0, 0.0, 5.0])
    assert _draw("topk", ties, 2, seed=0).tolist() == [1, 2]


# --- softmax sampler statistics -------------------------------------------------------------


def _exact_probabilities(scores: torch.Tensor, k: int, temperature: float) -> tuple[list[float], dict]:
    """Inclusion probability of each index, and of each unordered k-set, under k sequential softmax
    draws without replacement, by enumerating every ordered sequence."""
    w = [math.exp(float(s) / temperature) for s in scores]
    n = len(w)
    incl = [0.0] * n
    sets: dict[frozenset, float] = {}
    for seq in itertools.permutations(range(n), k):
        p, left = 1.0, sum(w)
        for i in seq:
            p *= w[i] / left
            left -= w[i]
        for i in seq:
            incl[i] += p
        sets[frozenset(seq)] = sets.get(frozenset(seq), 0.0) + p
    return incl, sets


def test_softmax_inclusion_matches_sequential_sampling() -> None:
    scores = torch.tensor([1.0, 0.0, -0.5, 2.0, 0.5])
    k, temperature, draws = 2, 0.8, 4000
    incl, sets = _exact_probabilities(scores, k, temperature)
    assert math.isclose(sum(incl), k)
    g = torch.Generator().manual_seed(2024)
    sampler = get_sampler("softmax")
    counts = [0] * len(scores)
    set_counts: dict[frozenset, int] = {}
    for _ in range(draws):
        idx = sampler(scores, k, temperature=temperature, generator=g).tolist()
        for i in idx:
            counts[i] += 1
        set_counts[frozenset(idx)] = set_counts.get(frozenset(idx), 0) + 1
    for i, p in enumerate(incl):
        se = math.sqrt(p * (1 - p) / draws)
        assert abs(counts[i] / draws - p) < 4 * se, (i, counts[i] / draws, p)
    for s, p in sets.items():
        se = math.sqrt(p * (1 - p) / draws)
        assert abs(set_counts.get(s, 0) / draws - p) < 4 * se, (sorted(s), set_counts.get(s, 0) / draws, p)


def test_softmax_inclusion_test_can_fail() -> None:
    """The check above would notice a wrong sampler: with-replacement-like independent inclusion
    (p_i * k) is far from the exact answer for these scores."""
    scores = torch.tensor([1.0, 0.0, -0.5, 2.0, 0.5])
    incl, _ = _exact_probabilities(scores, 2, 0.8)
    naive = torch.softmax(scores / 0.8, 0) * 2
    se = math.sqrt(0.25 / 4000)
    assert max(abs(a - b) for a, b in zip(incl, naive.tolist())) > 4 * se


def test_softmax_tiny_temperature_equals_topk() -> None:
    for seed in range(10):
        for k in (1, 3, len(SCORES)):
            assert _draw("softmax", SCORES, k, seed, temperature=1e-9).tolist() == _draw("topk", SCORES, k, 0).tolist()


def test_softmax_huge_temperature_is_near_uniform() -> None:
    scores = torch.tensor([5.0, 0.0, -5.0, 2.0, 1.0])
    k, draws = 2, 3000
    g = torch.Generator().manual_seed(7)
    counts = torch.zeros(len(scores))
    for _ in range(draws):
        counts[get_sampler("softmax")(scores, k, temperature=1e6, generator=g)] += 1
    p = k / len(scores)
    se = math.sqrt(p * (1 - p) / draws)
    assert (counts / draws - p).abs().max() < 4 * se
    # whereas temperature 1 is far from uniform for these scores
    counts1 = torch.zeros(len(scores))
    for _ in range(500):
        counts1[get_sampler("softmax")(scores, k, temperature=1.0, generator=g)] += 1
    assert counts1[0] / 500 > 0.95 and counts1[2] / 500 < 0.05
