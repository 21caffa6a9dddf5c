"""The savings arithmetic: mid-schedule reach and fully decayed budgets, on hand-made metric rows."""

from __future__ import annotations

import pytest

from learnability import analysis


def _run(steps: int, accs: list[float], flops_per_step: float = 10.0, reference: float = 0.0) -> list[dict]:
    """Metric rows of a run of `steps` evaluated evenly len(accs) times, the last at its last step."""
    every = steps // len(accs)
    rows = []
    for s in range(1, steps + 1):
        r = {"step": s, "flops_total": reference + flops_per_step * s, "flops_reference": reference,
             "seconds_total": 0.5 * s}
        if s % every == 0 and s // every <= len(accs):
            r["test_accuracy"] = accs[s // every - 1]
        rows.append(r)
    return rows


def test_budget_reach_interpolates_between_the_bracketing_budgets() -> None:
    assert analysis.budget_reach(0.5, [(100, 0.4), (200, 0.6), (400, 0.7)]) == (pytest.approx(150.0), False)
    assert analysis.budget_reach(0.6, [(400, 0.7), (100, 0.4), (200, 0.6)]) == (200.0, False)  # order free; equal counts
    assert analysis.budget_reach(0.3, [(100, 0.4), (200, 0.6)]) == (100.0, True)  # censored: at most the smallest
    assert analysis.budget_reach(0.9, [(100, 0.4), (200, 0.6)]) == (None, False)
    # not monotonic: the first budget at or above the target is the crossing
    assert analysis.budget_reach(0.5, [(100, 0.3), (200, 0.55), (300, 0.45), (400, 0.7)])[0] == pytest.approx(180.0)
    with pytest.raises(ValueError, match="budgets must differ"):
        analysis.budget_reach(0.5, [(100, 0.3), (100, 0.6)])


def test_budget_savings_against_uniforms_end_with_compute_interpolated() -> None:
    uniform = _run(1000, [0.2, 0.4, 0.5, 0.6])  # target: 0.6, its end (not the mean of the last three)
    arm = [_run(300, [0.3, 0.5, 0.55], flops_per_step=12.0, reference=600.0),
           _run(500, [0.3, 0.5, 0.6, 0.65, 0.70], flops_per_step=12.0, reference=600.0),
           _run(1000, [0.5, 0.6, 0.7, 0.75], flops_per_step=12.0, reference=600.0)]
    d = analysis.budget_savings(uniform, arm, amortise=10)
    assert d["target"] == 0.6 and d["ends"] == {300: 0.55, 500: 0.70, 1000: 0.75} and not d["censored"]
    assert d["needed_steps"] == pytest.approx(300 + 0.05 / 0.15 * 200)  # 366.7 steps
    assert d["updates_saved"] == pytest.approx(1 - d["needed_steps"] / 1000)
    flops = 600 + 12 * d["needed_steps"]  # the reference in full, the steps at the arm's rate
    assert d["compute_saved"] == pytest.approx(1 - flops / 10000)
    assert d["compute_saved_amortised"] == pytest.approx(1 - (flops - 600 * 0.9) / 10000)
    assert d["wallclock_saved"] == pytest.approx(1 - 0.5 * d["needed_steps"] / 500)


def test_budget_savings_censored_and_never_reached() -> None:
    uniform = _run(1000, [0.2, 0.4, 0.5, 0.6])
    d = analysis.budget_savings(uniform, [_run(300, [0.5, 0.6, 0.65]), _run(1000, [0.7, 0.7, 0.7, 0.7])])
    assert d["censored"] and d["needed_steps"] == 300 and d["updates_saved"] == pytest.approx(0.7)
    assert d["compute_saved"] == pytest.approx(0.7)
    d = analysis.budget_savings(uniform, [_run(1000, [0.1, 0.2, 0.3, 0.4])])
    assert d["needed_steps"] is None and d["updates_saved"] is None and d["compute_saved"] is None
    # uniform against itself needs its full budget: nothing saved
    d = analysis.budget_savings(uniform, [uniform])
    assert d["updates_saved"] == 0.0 and d["compute_saved"] == 0.0 and d["censored"]


def test_end_accuracy_is_the_last_evaluation_and_a_run_without_one_is_an_error() -> None:
    assert analysis.end_accuracy(_run(100, [0.1, 0.9, 0.3])) == 0.3
    with pytest.raises(ValueError, match="no evaluations"):
        analysis.end_accuracy([{"step": 1}])


def test_run_mean_averages_the_rows_that_log_the_key() -> None:
    rows = [{"step": 1, "class_balance_selected": 0.9}, {"step": 2}, {"step": 3, "class_balance_selected": 1.0},
            {"step": 4, "class_balance_selected": None}]
    assert analysis.run_mean(rows, "class_balance_selected") == pytest.approx(0.95)
    assert analysis.run_mean(rows, "swapped_selected") is None
    assert analysis.corrupted_selected([{"corrupted_selected": 0.2}, {"corrupted_selected": 0.4}]) == pytest.approx(0.3)


# (100, 20, 10, 3) and (100, 20, 10, 7): 0.6 and 1.4 passes drawn, where ignoring the epochs (1 - (1 - q)^passes)
# is 4 and 2 points off: the closed form must count whole and partial epochs to pass
@pytest.mark.parametrize("n,big_b,b,steps", [(100, 20, 10, 3), (100, 20, 10, 7), (100, 20, 10, 15), (100, 50, 10, 37),
                                            (90, 30, 30, 4), (1000, 64, 16, 250)])
def test_random_keep_coverage_matches_a_simulated_stream(n: int, big_b: int, b: int, steps: int) -> None:
    """Against the loop's own stream (without replacement within an epoch) keeping b of each B at
    random, averaged over 400 seeds: the closed form lies within the simulation's noise."""
    import torch

    from learnability.data import IndexStream

    shares = []
    for seed in range(400):
        stream, g, seen = IndexStream(n, big_b, seed), torch.Generator().manual_seed(seed), set()
        for _ in range(steps):
            pos = stream.next()
            seen.update(pos[torch.randperm(big_b, generator=g)[:b]].tolist())
        shares.append(len(seen) / n)
    want = analysis.random_keep_coverage(big_b * steps, b * steps, n)
    assert sum(shares) / len(shares) == pytest.approx(want, abs=0.01)
    assert analysis.random_keep_coverage(b * steps, b * steps, n) == pytest.approx(min(1.0, b * steps / n))
    with pytest.raises(ValueError, match="kept <= drawn"):
        analysis.random_keep_coverage(10, 20, n)


def test_paired_counts_seeds_ahead_and_behind_and_gives_the_exact_sign_test() -> None:
    p = analysis.paired({0: 0.55, 1: 0.44, 2: 0.44, 3: 0.50}, {0: 0.53, 1: 0.40, 2: 0.50, 4: 0.9})
    assert p["seeds"] == [0, 1, 2]  # seed 3 and 4 ran for one arm only
    assert (p["ahead"], p["behind"], p["level"]) == (2, 1, 0)
    assert p["diffs"][0] == pytest.approx(0.02) and p["diffs"][2] == pytest.approx(-0.06)
    assert p["mean"] == pytest.approx(0.0) and p["sd"] == pytest.approx(0.0529150, rel=1e-5)  # stdev of 2, 4, -6 points
    assert p["sign_p"] == 1.0  # 2 of 3: P(X <= 1) * 2 = 2 * 4 / 8
    five = analysis.paired({s: 1.0 for s in range(5)}, {s: 0.0 for s in range(5)})
    assert five["ahead"] == 5 and five["sign_p"] == pytest.approx(2 / 32)
    four = analysis.paired({s: float(s != 0) for s in range(5)}, {s: 0.5 for s in range(5)})
    assert (four["ahead"], four["behind"]) == (4, 1) and four["sign_p"] == pytest.approx(2 * 6 / 32)


def test_paired_ranks_a_miss_behind_any_number_and_keeps_it_out_of_the_mean() -> None:
    p = analysis.paired({0: None, 1: 0.3, 2: None}, {0: 0.1, 1: 0.2, 2: None})
    assert (p["ahead"], p["behind"], p["level"]) == (1, 1, 1)
    assert p["diffs"] == {0: None, 1: pytest.approx(0.1), 2: None}
    assert p["mean"] == pytest.approx(0.1) and p["sd"] is None
    assert analysis.paired({0: 0.5}, {0: 0.5})["sign_p"] == 1.0  # all level: nothing to test
    with pytest.raises(ValueError, match="no seed in common"):
        analysis.paired({0: 0.1}, {1: 0.1})
