"""JEST joint example selection: the conditional logits against brute force, the sampler's contract
(distinct indices, exact size, filtering ratios, determinism), its exact chunk-wise distribution,
greedy equivalence, closeness to the exhaustive optimum, and input errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from learnability.contrastive import joint_loss_matrix
from learnability.joint import (
    conditional_logits,
    get_joint_sampler,
    jest_sample,
    joint_score,
    list_joint_samplers,
)
from learnability.selection import softmax


def _gauss(b: int, seed: int) -> torch.Tensor:
    return torch.randn(b, b, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _learnability(b: int, seed: int) -> torch.Tensor:
    """A JEST-style learnability matrix: learner minus reference pairwise sigmoid losses."""
    g = torch.Generator().manual_seed(seed)
    emb = [F.normalize(torch.randn(b, 8, generator=g, dtype=torch.float64), dim=1) for _ in range(4)]
    return joint_loss_matrix(emb[0], emb[1], 2.0, -3.0) - joint_loss_matrix(emb[2], emb[3], 2.0, -3.0)


def _brute_joint(m: torch.Tensor, s: list[int]) -> float:
    return sum(float(m[i, j]) for i in s for j in s)


def _draw(m: torch.Tensor, k: int, n_chunks: int, seed: int, temperature: float = 1.0) -> torch.Tensor:
    return jest_sample(m, k, n_chunks, temperature=temperature, generator=torch.Generator().manual_seed(seed))


def test_registry() -> None:
    assert "jest" in list_joint_samplers()
    assert get_joint_sampler("jest") is jest_sample
    with pytest.raises(ValueError, match="jest"):
        get_joint_sampler("no_such_sampler")


def test_joint_score_matches_brute_force() -> None:
    m = _gauss(8, 0)
    for s in ([], [3], [0, 5, 2], list(range(8))):
        assert math.isclose(float(joint_score(m, torch.tensor(s, dtype=torch.long))), _brute_joint(m, s),
                            rel_tol=1e-12, abs_tol=1e-12)


def test_conditional_logits_match_brute_force() -> None:
    m = _gauss(7, 1)
    for chosen in ([], [4], [0, 6, 2], [1, 2, 3, 5]):
        mask = torch.zeros(7, dtype=torch.bool)
        mask[chosen] = True
        got = conditional_logits(m, mask)
        for c in range(7):
            if c in chosen:
                assert got[c] == float("-inf")
            else:
                gain = _brute_joint(m, chosen + [c]) - _brute_joint(m, chosen)
                assert math.isclose(float(got[c]), gain, rel_tol=1e-12, abs_tol=1e-12)
    torch.testing.assert_close(conditional_logits(m, torch.zeros(7, dtype=torch.bool)), m.diagonal())


@pytest.mark.parametrize("b,k,n_chunks", [(64, 32, 16), (160, 32, 16), (320, 32, 16), (320, 32, 1), (320, 32, 32),
                                          (10, 10, 5)])
def test_distinct_indices_of_exact_size_at_each_filtering_ratio(b: int, k: int, n_chunks: int) -> None:
    m = _learnability(b, seed=b)
    idx = _draw(m, k, n_chunks, seed=0)
    assert idx.shape == (k,) and idx.dtype == torch.int64
    assert len(set(idx.tolist())) == k
    assert 0 <= int(idx.min()) and int(idx.max()) < b


def test_deterministic_under_seeded_generator_and_leaves_global_rng_alone() -> None:
    m = _gauss(40, 2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for seed in range(3):
        assert torch.equal(_draw(m, 8, 4, seed), _draw(m, 8, 4, seed))
    assert torch.equal(torch.rand(3), expected)
    g = torch.Generator().manual_seed(0)
    assert len({tuple(jest_sample(m, 8, 4, generator=g).tolist()) for _ in range(10)}) > 1


def test_one_chunk_is_softmax_sampling_on_the_diagonal() -> None:
    m = _gauss(30, 3)
    for seed in range(5):
        expected = softmax(m.diagonal(), 6, temperature=0.7, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(_draw(m, 6, 1, seed, temperature=0.7), expected)


def test_chunked_draws_follow_the_conditional_softmax() -> None:
    """k = n_chunks = 2 of B = 4: P(a then b) = softmax(M_diag / T)[a] * softmax(logits given {a} / T)[b]."""
    m = torch.tensor([[0.5, 1.0, -1.0, 0.0], [0.2, 0.0, 0.5, -0.5], [1.5, -0.5, 0.3, 0.4], [0.0, 0.3, -0.2, 0.1]],
                     dtype=torch.float64)
    t, draws = 0.8, 3000
    first = torch.softmax(m.diagonal() / t, 0)
    exact = {}
    for a in range(4):
        mask = torch.zeros(4, dtype=torch.bool)
        mask[a] = True
        second = torch.softmax(conditional_logits(m, mask) / t, 0)  # -inf at a: probability 0
        for b in range(4):
            if b != a:
                exact[(a, b)] = float(first[a] * second[b])
    assert math.isclose(sum(exact.values()), 1.0)
    g = torch.Generator().manual_seed(11)
    counts: dict[tuple[int, int], int] = {}
    for _ in range(draws):
        pair = tuple(jest_sample(m, 2, 2, temperature=t, generator=g).tolist())
        counts[pair] = counts.get(pair, 0) + 1
    for pair, p in exact.items():
        se = math.sqrt(p * (1 - p) / draws)
        assert abs(counts.get(pair, 0) / draws - p) < 4 * se, (pair, counts.get(pair, 0) / draws, p)
    # ... and the check can fail: ignoring the conditioning (independent draws) is far off here
    indep = {(a, b): float(first[a] * first[b] / (1 - first[a])) for (a, b) in exact}
    assert max(abs(indep[q] - exact[q]) for q in exact) > 4 * math.sqrt(0.25 / draws)


def _greedy(m: torch.Tensor, k: int) -> list[int]:
    chosen: list[int] = []
    for _ in range(k):
        rest = [c for c in range(m.shape[0]) if c not in chosen]
        chosen.append(max(rest, key=lambda c: _brute_joint(m, chosen + [c])))
    return chosen


def test_one_draw_per_chunk_at_tiny_temperature_is_greedy() -> None:
    for seed in range(4):
        m = _gauss(12, 10 + seed)
        assert _draw(m, 5, 5, seed, temperature=1e-9).tolist() == _greedy(m, 5)


def _all_subset_scores(m: torch.Tensor, k: int) -> torch.Tensor:
    subsets = torch.tensor(list(itertools.combinations(range(m.shape[0]), k)))
    return m[subsets[:, :, None], subsets[:, None, :]].sum(dim=(1, 2))


@pytest.mark.parametrize("make,greedy_gap,two_chunk_gap", [(_learnability, 0.1, 0.3), (_gauss, 0.25, 0.5)])
def test_near_the_exhaustive_optimum_and_far_above_random(make, greedy_gap: float, two_chunk_gap: float) -> None:
    """B = 10, k = 4, 12 matrices, all 210 subsets enumerated. gap = (optimum - score) / (optimum - mean
    subset score): 0 is the best subset, 1 a random one. Greedy is not exact, so the bounds are on the
    mean gap, with several-sigma margins measured over 200 matrices (learnability matrices: mean gap
    0.015 greedy, 0.06 with two chunks; iid Gaussian: 0.10 and 0.25)."""
    gaps_greedy, gaps_two = [], []
    for seed in range(12):
        m = make(10, seed)
        all_scores = _all_subset_scores(m, 4)
        best, mean = all_scores.max(), all_scores.mean()
        idx = _draw(m, 4, 4, seed, temperature=0.01)
        score = joint_score(m, idx)
        gaps_greedy.append(float((best - score) / (best - mean)))
        assert float((all_scores <= score).double().mean()) >= 0.8  # every draw beats most subsets
        for rep in range(3):
            gaps_two.append(float((best - joint_score(m, _draw(m, 4, 2, 100 * seed + rep, 0.01))) / (best - mean)))
    assert sum(gaps_greedy) / len(gaps_greedy) <= greedy_gap
    assert sum(gaps_two) / len(gaps_two) <= two_chunk_gap


def test_errors() -> None:
    m = _gauss(10, 4)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="equal chunks"):
        jest_sample(m, 6, 4, generator=g)
    with pytest.raises(ValueError, match="equal chunks"):
        jest_sample(m, 6, 0, generator=g)
    for k in (0, 11):
        with pytest.raises(ValueError, match="1 <= k <= B"):
            jest_sample(m, k, 1, generator=g)
    for bad in (torch.rand(10), torch.rand(10, 9), torch.rand(2, 5, 5)):
        with pytest.raises(ValueError, match="square"):
            jest_sample(bad, 2, 1, generator=g)
        with pytest.raises(ValueError, match="square"):
            joint_score(bad, torch.tensor([0]))
    for value in (float("nan"), float("inf")):
        bad = m.clone()
        bad[2, 7] = value
        with pytest.raises(ValueError, match="NaN or inf"):
            jest_sample(bad, 2, 1, generator=g)
        with pytest.raises(ValueError, match="NaN or inf"):
            conditional_logits(bad, torch.zeros(10, dtype=torch.bool))
    for t in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            jest_sample(m, 2, 1, temperature=t, generator=g)
    with pytest.raises(ValueError, match="chosen_mask"):
        conditional_logits(m, torch.zeros(9, dtype=torch.bool))
    with pytest.raises(ValueError, match="chosen_mask"):
        conditional_logits(m, torch.zeros(10))
    with pytest.raises(ValueError, match="repeated"):
        joint_score(m, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        joint_score(m, torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="integer"):
        joint_score(m, torch.tensor([0.0, 1.0]))
