"""Property tests (hypothesis) on every score function and sampler, and on the `Selector` shell.

The stated rules (the README's "What happens when" table lists them with the bad input):

- every sampler (registered or joint) returns exactly k distinct int64 indices in [0, B); k = B is
  a permutation; k = 1 works; B need not be a multiple of anything;
- k < 1, k > B or a non-integer k is a ValueError; NaN or inf scores are a ValueError naming how
  many and where; a temperature that is not a finite number > 0 is a ValueError;
- ties: topk takes the lower index (deterministic); softmax draws uniformly among exactly tied keys,
  including all-equal scores and temperatures so small that the noise vanishes against the scores;
- a temperature near 0 (down to the smallest subnormal) behaves as top-k; a huge one (up to the
  largest float) is a near-uniform draw; neither overflows to NaN or biases toward low positions;
- NaN or inf losses are a ValueError naming the loss kind, the count and the positions (and the
  example ids, from a `Selector`); finite losses whose score overflows float32, and per-example and
  pairwise losses mixed in one call, are ValueErrors;
- ids up to the int64 range pass through `Selector.select` and `ReferenceLosses.lookup` unchanged
  (never cast to float); float or bool ids are a ValueError; integer ids of any width are accepted.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from learnability.joint import conditional_logits, jest_sample, joint_score, list_joint_samplers, get_joint_sampler
from learnability.reference import ReferenceLosses
from learnability.scores import LOSS_KINDS, compute_scores, get_score, list_scores
from learnability.selection import get_sampler, list_samplers
from learnability.selector import Selector

INT64_MAX = 2 ** 63 - 1
TINY_T = [5e-324, 1e-300, 1e-30, 1e-9]
HUGE_T = [1e9, 1e30, 1e300, 1.7e308]
EDGE_T = TINY_T + [0.5, 1.0, 2.0] + HUGE_T

finite = st.floats(allow_nan=False, allow_infinity=False)
# Scores: any finite float64, or few distinct values (many ties), or moderate values.
score_lists = st.one_of(
    st.lists(finite, min_size=1, max_size=40),
    st.lists(st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e10]), min_size=1, max_size=40),
    st.lists(st.floats(-10, 10), min_size=1, max_size=40),
    st.integers(1, 40).map(lambda n: [3.0] * n),  # all equal
)
temperatures = st.one_of(st.sampled_from(EDGE_T), st.floats(min_value=1e-300, max_value=1e300))


def _check_index(idx: torch.Tensor, k: int, b: int) -> None:
    assert idx.shape == (k,)
    assert idx.dtype == torch.int64
    values = idx.tolist()
    assert len(set(values)) == k, f"duplicates in {values}"
    assert all(0 <= i < b for i in values), values
    if k == b:
        assert sorted(values) == list(range(b))


# --- samplers: size, distinctness, range ----------------------------------------------------------


@pytest.mark.parametrize("name", list_samplers())
@given(scores=score_lists, data=st.data(), temperature=temperatures, seed=st.integers(0, 2 ** 32))
def test_every_sampler_returns_k_distinct_indices(name: str, scores: list[float], data, temperature: float,
                                                  seed: int) -> None:
    b = len(scores)
    k = data.draw(st.one_of(st.just(1), st.just(b), st.integers(1, b)), label="k")
    for dtype in (torch.float64, torch.float32):
        s = torch.tensor(scores, dtype=torch.float64).to(dtype)
        assume(torch.isfinite(s).all())  # float64 values beyond float32's range
        idx = get_sampler(name)(s, k, temperature=temperature, generator=torch.Generator().manual_seed(seed))
        _check_index(idx, k, b)


@pytest.mark.parametrize("name", list_samplers())
@given(scores=score_lists, data=st.data())
def test_every_sampler_refuses_k_outside_1_to_b(name: str, scores: list[float], data) -> None:
    b = len(scores)
    k = data.draw(st.one_of(st.integers(-5, 0), st.integers(b + 1, b + 100)), label="k")
    with pytest.raises(ValueError, match=r"1 <= k <= B"):
        get_sampler(name)(torch.tensor(scores, dtype=torch.float64), k)


@pytest.mark.parametrize("name", list_samplers())
@pytest.mark.parametrize("k", [2.0, True, "2", None, torch.tensor(2)])
def test_every_sampler_refuses_a_non_integer_k(name: str, k) -> None:
    with pytest.raises(ValueError, match="k must be an integer"):
        get_sampler(name)(torch.rand(5), k)


@pytest.mark.parametrize("name", list_samplers())
@given(scores=st.lists(st.floats(-5, 5), min_size=1, max_size=30), data=st.data())
def test_every_sampler_refuses_nan_and_inf_scores_naming_where(name: str, scores: list[float], data) -> None:
    positions = data.draw(st.sets(st.integers(0, len(scores) - 1), min_size=1), label="positions")
    s = torch.tensor(scores, dtype=torch.float64)
    for p in positions:
        s[p] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    with pytest.raises(ValueError, match=rf"{len(positions)} NaN or inf value\(s\), at positions \[{min(positions)}"):
        get_sampler(name)(s, 1, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list_samplers())
@pytest.mark.parametrize("temperature", [0.0, -0.0, -1e-300, -1.0, math.nan, math.inf, -math.inf, True, "1", None])
def test_every_sampler_refuses_a_bad_temperature(name: str, temperature) -> None:
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        get_sampler(name)(torch.rand(5), 2, temperature=temperature)


@pytest.mark.parametrize("name", list_samplers())
@pytest.mark.parametrize("scores", [torch.rand(2, 3), torch.tensor(1.0), torch.zeros(0), [1.0, 2.0],
                                    torch.tensor([True, False]), torch.tensor([1 + 1j, 2 + 0j])])
def test_every_sampler_refuses_scores_that_are_not_a_real_vector(name: str, scores) -> None:
    with pytest.raises(ValueError, match="scores|1 <= k <= B"):
        get_sampler(name)(scores, 1)


# --- samplers: ties and temperature limits --------------------------------------------------------


@given(scores=score_lists, data=st.data())
def test_topk_is_the_stable_descending_order(scores: list[float], data) -> None:
    k = data.draw(st.integers(1, len(scores)), label="k")
    got = get_sampler("topk")(torch.tensor(scores, dtype=torch.float64), k).tolist()
    want = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    assert got == want


@given(scores=score_lists, data=st.data(), temperature=st.sampled_from([5e-324, 1e-320]),
       seed=st.integers(0, 2 ** 32))
def test_softmax_near_zero_temperature_is_top_k_up_to_ties(scores: list[float], data, temperature: float,
                                                           seed: int) -> None:
    k = data.draw(st.integers(1, len(scores)), label="k")
    s = torch.tensor(scores, dtype=torch.float64)
    idx = get_sampler("softmax")(s, k, temperature=temperature, generator=torch.Generator().manual_seed(seed))
    kth = sorted(scores, reverse=True)[k - 1]
    chosen = set(idx.tolist())
    # temperature * noise is below 1e-317 here: only scores within that of the k-th can swap
    assert all(i in chosen for i, v in enumerate(scores) if v > kth + 1e-300)
    assert all(scores[i] >= kth - 1e-300 for i in chosen)


def _inclusion(scores: torch.Tensor, k: int, temperature: float, draws: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(len(scores))
    for _ in range(draws):
        counts[get_sampler("softmax")(scores, k, temperature=temperature, generator=g)] += 1
    return counts / draws


@pytest.mark.parametrize("scores, temperature", [
    (torch.full((6,), 3.0), 1.0),                  # all equal
    (torch.full((6,), 1e10, dtype=torch.float64), 1e-9),  # noise below the scores' resolution: exact key ties
    (torch.full((6,), -2.0), 1e-300),              # tiny temperature, all equal
    (torch.full((6,), 0.0), 5e-324),               # smallest temperature: noise underflows to 0
])
def test_softmax_draws_uniformly_among_exact_ties(scores: torch.Tensor, temperature: float) -> None:
    k, draws = 2, 3000
    p = k / len(scores)
    se = math.sqrt(p * (1 - p) / draws)
    got = _inclusion(scores, k, temperature, draws, seed=11)
    assert (got - p).abs().max() < 4 * se, got


def test_softmax_tie_at_the_top_is_uniform_among_the_tied_only() -> None:
    scores = torch.tensor([0.0, 5.0, 1.0, 5.0, 5.0, 4.999])
    got = _inclusion(scores, 1, 1e-30, 3000, seed=3)
    se = math.sqrt(2 / 9 / 3000)
    assert got[[0, 2, 5]].sum() == 0
    assert (got[[1, 3, 4]] - 1 / 3).abs().max() < 4 * se, got


@pytest.mark.parametrize("temperature", [1e300, 1.7e308])
def test_softmax_huge_temperature_is_near_uniform_without_overflow(temperature: float) -> None:
    scores = torch.tensor([1e295, 0.0, -1e295, 5e294, 1.0, -3.0], dtype=torch.float64)  # |scores / t| <= 1e-5
    k, draws = 2, 3000
    p = k / len(scores)
    se = math.sqrt(p * (1 - p) / draws)
    got = _inclusion(scores, k, temperature, draws, seed=5)
    assert (got - p).abs().max() < 4 * se, got


# --- joint sampler (JEST) -------------------------------------------------------------------------

matrices = st.integers(1, 10).flatmap(lambda b: st.one_of(
    st.lists(st.floats(-1e3, 1e3), min_size=b * b, max_size=b * b),
    st.lists(st.sampled_from([0.0, 1.0]), min_size=b * b, max_size=b * b),
    st.just([0.0] * (b * b)),
).map(lambda v: torch.tensor(v, dtype=torch.float64).view(b, b)))


@pytest.mark.parametrize("name", list_joint_samplers())
@given(m=matrices, data=st.data(), temperature=temperatures, seed=st.integers(0, 2 ** 32))
def test_every_joint_sampler_returns_k_distinct_indices(name: str, m: torch.Tensor, data, temperature: float,
                                                        seed: int) -> None:
    b = m.shape[0]
    k = data.draw(st.one_of(st.just(1), st.just(b), st.integers(1, b)), label="k")
    n_chunks = data.draw(st.sampled_from([d for d in range(1, k + 1) if k % d == 0]), label="n_chunks")
    idx = get_joint_sampler(name)(m, k, n_chunks, temperature=temperature, generator=torch.Generator().manual_seed(seed))
    _check_index(idx, k, b)
    assert torch.isfinite(joint_score(m, idx))


@given(m=matrices, data=st.data())
def test_jest_refuses_bad_k_and_chunks(m: torch.Tensor, data) -> None:
    b = m.shape[0]
    k = data.draw(st.one_of(st.integers(-3, 0), st.integers(b + 1, b + 20)), label="k")
    with pytest.raises(ValueError, match=r"1 <= k <= B"):
        jest_sample(m, k, 1)
    k = data.draw(st.integers(1, b), label="k")
    n_chunks = data.draw(st.integers(-3, 3 * k).filter(lambda c: c < 1 or k % c), label="n_chunks")
    with pytest.raises(ValueError, match="equal chunks"):
        jest_sample(m, k, n_chunks)
    for bad in (float(k), True if k != 1 else 2.0):
        with pytest.raises(ValueError, match="must be an integer"):
            jest_sample(m, bad, 1)  # type: ignore[arg-type]


@given(m=matrices, data=st.data())
def test_jest_and_conditional_logits_refuse_nan_and_inf(m: torch.Tensor, data) -> None:
    b = m.shape[0]
    i, j = data.draw(st.integers(0, b - 1)), data.draw(st.integers(0, b - 1))
    m = m.clone()
    m[i, j] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    with pytest.raises(ValueError, match="NaN or inf"):
        jest_sample(m, 1, 1)
    with pytest.raises(ValueError, match="NaN or inf"):
        conditional_logits(m, torch.zeros(b, dtype=torch.bool))


def test_jest_overflowing_sums_are_a_clear_error() -> None:
    m = torch.full((4, 4), 1e308, dtype=torch.float64)
    with pytest.raises(ValueError, match="overflow"):
        jest_sample(m, 4, 4)


def test_jest_on_all_equal_scores_is_uniform() -> None:
    m = torch.zeros(5, 5)
    g = torch.Generator().manual_seed(1)
    draws = 1500
    counts = torch.zeros(5)
    for _ in range(draws):
        counts[jest_sample(m, 2, 2, temperature=5e-324, generator=g)] += 1
    se = math.sqrt(0.4 * 0.6 / draws)
    assert (counts / draws - 0.4).abs().max() < 4 * se, counts


# --- scores ---------------------------------------------------------------------------------------

loss_values = st.floats(0, 1e6)


@pytest.mark.parametrize("name", list_scores())
@given(data=st.data(), n=st.integers(1, 20), pairwise=st.booleans())
def test_every_score_is_finite_with_the_right_shape(name: str, data, n: int, pairwise: bool) -> None:
    shape = (n, n) if pairwise else (n,)
    size = n * n if pairwise else n
    equal = data.draw(st.booleans(), label="all-equal losses")
    losses = {}
    for kind in LOSS_KINDS:
        v = [data.draw(loss_values)] * size if equal else data.draw(st.lists(loss_values, min_size=size, max_size=size))
        losses[kind] = torch.tensor(v, dtype=torch.float64).view(shape)
    s = compute_scores(name, losses, n)
    assert torch.isfinite(s).all()
    assert s.shape in ((n,), shape)  # a score that reads no loss (uniform) gives [n]
    if get_score(name).needs:
        assert s.shape == shape


@pytest.mark.parametrize("name", [n for n in list_scores() if get_score(n).needs])
@given(data=st.data(), n=st.integers(1, 20))
def test_every_score_refuses_nan_and_inf_losses_naming_kind_count_and_positions(name: str, data, n: int) -> None:
    kind = data.draw(st.sampled_from(get_score(name).needs), label="kind")
    positions = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1), label="positions"))
    losses = {k: torch.rand(n) for k in LOSS_KINDS}
    for p in positions:
        losses[kind][p] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    with pytest.raises(ValueError) as e:
        compute_scores(name, losses, n)
    msg = str(e.value)
    assert f"{kind} loss has {len(positions)} non-finite value(s)" in msg, msg
    assert str(positions[:5]) in msg, msg


@pytest.mark.parametrize("name", [n for n in list_scores() if get_score(n).needs])
def test_every_score_refuses_overflow_and_mixed_shapes(name: str) -> None:
    n = 4
    kind = get_score(name).needs[0]
    huge = {k: torch.full((n,), 1e300, dtype=torch.float64) for k in LOSS_KINDS}
    huge["reference"] = -huge["reference"]
    with pytest.raises(ValueError, match="overflows float32"):
        compute_scores(name, huge, n)
    if len(get_score(name).needs) > 1:
        mixed = {k: torch.rand(n) for k in LOSS_KINDS}
        mixed[kind] = torch.rand(n, n)
        with pytest.raises(ValueError, match=r"mix per-example \[4\] and pairwise \[4, 4\]"):
            compute_scores(name, mixed, n)
    for bad in ([1.0] * n, torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.complex64)):
        with pytest.raises(ValueError, match="real-valued tensor"):
            compute_scores(name, {**{k: torch.rand(n) for k in LOSS_KINDS}, kind: bad}, n)


# --- Selector: whole batches, ids -----------------------------------------------------------------

id_sets = st.sets(st.one_of(st.integers(2 ** 24, INT64_MAX), st.integers(0, 2 ** 24),
                            st.sampled_from([2 ** 24 + 1, 2 ** 53, 2 ** 53 + 1, INT64_MAX, INT64_MAX - 1])),
                  min_size=1, max_size=30)


@given(ids=id_sets, data=st.data(), sampler=st.sampled_from(list_samplers()), temperature=temperatures,
       seed=st.integers(0, 2 ** 32))
def test_selector_passes_huge_ids_through_and_selects_b_distinct(ids: set[int], data, sampler: str,
                                                                 temperature: float, seed: int) -> None:
    ids_t = torch.tensor(sorted(ids), dtype=torch.int64)[torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed))]
    n = len(ids_t)
    b = data.draw(st.one_of(st.just(1), st.just(n), st.integers(1, n)), label="b")
    losses = data.draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]) | st.floats(0, 100), min_size=n, max_size=n), label="losses")
    cache = ReferenceLosses.from_unsorted(ids_t.clone(), torch.tensor(losses))
    sel = Selector(score="easy_reference", batch_size=b, reference_losses=cache, sampler=sampler,
                   temperature=temperature, seed=seed)
    batch = {"id": ids_t.clone(), "x": torch.arange(n, dtype=torch.float32)}
    for id_dtype in (torch.int64, torch.int32) if bool((ids_t < 2 ** 31).all()) else (torch.int64,):
        out = sel.select(batch, ids_t.to(id_dtype))
        _check_index(sel.last.index, b, n)
        assert out["id"].dtype == torch.int64
        assert out["id"].tolist() == ids_t[sel.last.index].tolist()  # exact, never through float
        assert out["x"].tolist() == sel.last.index.float().tolist()
        torch.testing.assert_close(sel.last.scores, -torch.tensor(losses)[torch.arange(n)])
        if sampler == "topk":
            stored = torch.tensor(losses).tolist()  # as cached: float32 (5e-324 is 0.0 there)
            want = sorted(range(n), key=lambda i: (stored[i], i))[:b]
            assert sel.last.index.tolist() == want


@given(ids=id_sets)
def test_reference_lookup_is_exact_for_ids_up_to_int64_max(ids: set[int]) -> None:
    ids_t = torch.tensor(sorted(ids), dtype=torch.int64)
    losses = torch.arange(len(ids_t), dtype=torch.float32)
    cache = ReferenceLosses.from_unsorted(ids_t.flip(0), losses.flip(0))
    assert torch.equal(cache.lookup(ids_t), losses)
    for neighbour in (ids_t - 1, ids_t + 1):
        keep = (neighbour >= 0) & (neighbour <= INT64_MAX - 1) & ~torch.isin(neighbour, ids_t)
        if keep.any():
            with pytest.raises(KeyError, match="not in the reference-loss cache"):
                cache.lookup(neighbour[keep][:1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_float_and_bool_ids_are_refused(dtype: torch.dtype) -> None:
    cache = ReferenceLosses.from_unsorted(torch.tensor([0, 1, 2 ** 24 + 1]), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="integers"):
        cache.lookup(torch.tensor([0, 1], dtype=dtype))
    sel = Selector(score="easy_reference", batch_size=1, reference_losses=cache)
    with pytest.raises(ValueError, match="ids must be integers"):
        sel.select(torch.zeros(2, 3), torch.tensor([0, 1], dtype=dtype))


@given(n=st.integers(1, 20), data=st.data())
def test_selector_names_the_examples_with_nan_losses(n: int, data) -> None:
    ids = torch.arange(n, dtype=torch.int64) + 2 ** 40
    losses = torch.rand(n)
    positions = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1), label="positions"))
    losses[positions] = math.nan
    sel = Selector(score="easy_reference", batch_size=1, reference_losses=ReferenceLosses.from_unsorted(ids, losses))
    with pytest.raises(ValueError) as e:
        sel.select(torch.zeros(n, 2), ids)
    msg = str(e.value)
    assert f"{len(positions)} non-finite" in msg and str(ids[positions[:5]].tolist()) in msg, msg


@given(n=st.integers(1, 20), data=st.data())
def test_selector_refuses_b_above_b_super(n: int, data) -> None:
    b = data.draw(st.integers(n + 1, n + 50))
    sel = Selector(score="uniform", batch_size=b)
    with pytest.raises(ValueError, match=rf"super-batch has {n} examples but {b} are to be selected"):
        sel.select(torch.zeros(n, 2))


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(batch_size=-3), "batch_size must be >= 1"),
    (dict(batch_size=2.0), "batch_size must be an integer"),
    (dict(batch_size=True), "batch_size must be an integer"),
    (dict(batch_size=2, temperature=0.0), "temperature"),
    (dict(batch_size=2, temperature=math.nan), "temperature"),
    (dict(batch_size=2, temperature=math.inf), "temperature"),
    (dict(batch_size=2, temperature=-1), "temperature"),
])
def test_selector_constructor_refuses_bad_sizes_and_temperatures(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Selector(score="uniform", **kwargs)


def test_selector_uniform_b_equals_b_super_is_a_permutation_of_everything() -> None:
    sel = Selector(score="uniform", batch_size=7, seed=3)
    x = torch.arange(7)
    assert sorted(sel.select(x).tolist()) == list(range(7))


def test_cached_reference_without_ids_is_refused() -> None:
    cache = ReferenceLosses.from_unsorted(torch.arange(4), torch.rand(4))
    sel = Selector(score="easy_reference", batch_size=2, reference_losses=cache)
    with pytest.raises(ValueError, match="pass the super-batch's ids"):
        sel.select(torch.zeros(4, 2))
