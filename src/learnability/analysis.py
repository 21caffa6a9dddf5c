"""The target, when an arm reaches it, and the savings: defined once, used by report and bench.

Target: the uniform arm's final test accuracy, the mean of its last three evaluations. An arm
reaches it at the first evaluation where the mean of its last three evaluations is at or above the
target (single evaluations are too noisy). Savings are fractions of what uniform needed to reach
the same target, measured at that point, every overhead counted:

    updates_saved   = 1 - arm steps / uniform steps
    compute_saved   = 1 - arm FLOPs / uniform FLOPs      (reference training + caching in full)
    compute_saved_amortised: the same with one-off reference costs divided over `amortise` runs
    wallclock_saved = 1 - arm seconds / uniform seconds   (evaluation excluded, reference included)
Negative where worse; None where the arm never reached the target.

Fully decayed budgets (`budget_savings`): mid-schedule reach compares an arm whose learning rate
has not decayed with uniform's decayed end, and which way that leans depends on the regime (where
the model underfits, a run still at a high learning rate can be ahead of a shorter run decayed to
zero: the image-text bench shows it). The protocol of strong baselines runs each arm at several
budgets (step counts), each with its schedule decayed to zero at its own end, and takes the model
at the end: the target is uniform's accuracy at the end of the full budget, and an arm needs the
budget where its end-of-run accuracy crosses it (linear between the two budgets that bracket the
crossing: where accuracy is concave in the budget, that overstates the need, so the savings lean
low). FLOPs and seconds are interpolated the same way between those runs.
"""

from __future__ import annotations

import math
import statistics
from typing import Mapping, Sequence

WINDOW = 3


def evaluations(rows: Sequence[dict]) -> list[dict]:
    """The metric rows that carry a test accuracy, in step order."""
    return [r for r in rows if r.get("test_accuracy") is not None]


def final_accuracy(rows: Sequence[dict]) -> float:
    """Mean of the last three evaluations (fewer if the run has fewer)."""
    evals = evaluations(rows)
    if not evals:
        raise ValueError("the run has no evaluations; was it stopped before its first eval?")
    return statistics.fmean(r["test_accuracy"] for r in evals[-WINDOW:])


def reach_row(rows: Sequence[dict], target: float) -> dict | None:
    """The first evaluation row where the mean of the last three evaluations is >= target."""
    evals = evaluations(rows)
    for i in range(min(WINDOW, len(evals)) - 1, len(evals)):
        window = evals[max(0, i - WINDOW + 1):i + 1]
        if statistics.fmean(r["test_accuracy"] for r in window) >= target - 1e-12:
            return evals[i]
    return None


def _saved(arm: float, base: float) -> float:
    return 1.0 - arm / base if base else float("nan")


def savings(uniform_rows: Sequence[dict], arm_rows: Sequence[dict], amortise: int = 10) -> dict:
    """Savings of an arm against the uniform arm; see the module docstring."""
    if amortise < 1:
        raise ValueError("amortise must be >= 1")
    target = final_accuracy(uniform_rows)
    base, hit = reach_row(uniform_rows, target), reach_row(arm_rows, target)
    out = {"target": target, "final_accuracy": final_accuracy(arm_rows),
           "corrupted_selected": corrupted_selected(arm_rows),
           "reached_at_step": hit["step"] if hit else None, "uniform_reached_at_step": base["step"],
           "updates_saved": None, "compute_saved": None, "compute_saved_amortised": None, "wallclock_saved": None}
    if hit is None:
        return out
    one_off = hit.get("flops_reference", 0.0)
    base_amortised = base["flops_total"] - base.get("flops_reference", 0.0) * (1 - 1 / amortise)
    out.update({
        "updates_saved": _saved(hit["step"], base["step"]),
        "compute_saved": _saved(hit["flops_total"], base["flops_total"]),
        "compute_saved_amortised": _saved(hit["flops_total"] - one_off * (1 - 1 / amortise), base_amortised),
        "wallclock_saved": _saved(hit["seconds_total"], base["seconds_total"]),
    })
    return out


def end_accuracy(rows: Sequence[dict]) -> float:
    """The accuracy at the run's last evaluation: the fully decayed model's."""
    evals = evaluations(rows)
    if not evals:
        raise ValueError("the run has no evaluations; was it stopped before its first eval?")
    return evals[-1]["test_accuracy"]


def budget_reach(target: float, ends: Sequence[tuple[float, float]]) -> tuple[float | None, bool]:
    """The budget an arm needs to end at `target`, from `ends` = (budget, end accuracy) of its runs.

    Budgets ascending; the first at or above the target is the crossing, interpolated linearly from
    the budget before it. Returns (budget, censored): censored when even the smallest budget ends at
    or above the target (the need is at most that budget); (None, False) when none reaches it."""
    ends = sorted(ends)
    if len({b for b, _ in ends}) != len(ends):
        raise ValueError(f"budgets must differ; got {[b for b, _ in ends]}")
    for i, (b, acc) in enumerate(ends):
        if acc >= target - 1e-12:
            if i == 0:
                return b, True
            b0, a0 = ends[i - 1]
            return b0 + (target - a0) / (acc - a0) * (b - b0), False
    return None, False


def budget_savings(uniform_rows: Sequence[dict], arm_runs: Sequence[Sequence[dict]], amortise: int = 10) -> dict:
    """Savings of an arm run at several fully decayed budgets (`arm_runs`, the metric rows of each)
    against uniform's full-budget run (its end accuracy is the target); see the module docstring.
    `censored`: the arm's smallest budget already reached the target, so the savings are lower bounds."""
    if amortise < 1:
        raise ValueError("amortise must be >= 1")
    target, base = end_accuracy(uniform_rows), uniform_rows[-1]
    runs = sorted(arm_runs, key=lambda rows: rows[-1]["step"])
    ends = [(float(rows[-1]["step"]), end_accuracy(rows)) for rows in runs]
    steps, censored = budget_reach(target, ends)
    out = {"target": target, "ends": {int(b): a for b, a in ends}, "censored": censored, "needed_steps": steps,
           "updates_saved": None, "compute_saved": None, "compute_saved_amortised": None, "wallclock_saved": None}
    if steps is None:
        return out
    lasts = [rows[-1] for rows in runs]
    i = next(k for k, r in enumerate(lasts) if r["step"] >= steps - 1e-9)
    lo, hi = lasts[max(i - 1, 0)], lasts[i]
    w = 0.0 if hi is lo else (steps - lo["step"]) / (hi["step"] - lo["step"])

    def at(key: str) -> float:
        return (1 - w) * lo.get(key, 0.0) + w * hi.get(key, 0.0)

    one_off = at("flops_reference")
    base_amortised = base["flops_total"] - base.get("flops_reference", 0.0) * (1 - 1 / amortise)
    out.update({
        "updates_saved": _saved(steps, base["step"]),
        "compute_saved": _saved(at("flops_total"), base["flops_total"]),
        "compute_saved_amortised": _saved(at("flops_total") - one_off * (1 - 1 / amortise), base_amortised),
        "wallclock_saved": _saved(at("seconds_total"), base["seconds_total"]),
    })
    return out


def run_mean(rows: Sequence[dict], key: str) -> float | None:
    """The mean of a per-step metric `key` over a run's rows that log it; None when none does."""
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.fmean(vals) if vals else None


def corrupted_selected(rows: Sequence[dict], key: str = "corrupted_selected") -> float | None:
    """Mean fraction of corrupted examples in the selected batches (or of one kind: `key`, e.g.
    `swapped_selected`); None when the run did not log it."""
    return run_mean(rows, key)


def random_keep_coverage(drawn: int, kept: int, n: int) -> float:
    """The share of an `n`-example pool a run would have trained on had it kept `kept` of its `drawn`
    candidates at random: the stream draws without replacement within an epoch, so each example is
    drawn k = floor(drawn / n) or k + 1 times, and is missed with probability (1 - kept / drawn)^k.
    Beside `distinct_trained`, it tells a selection that narrows (well below) from one that spreads."""
    if n < 1 or drawn < 1 or not 0 < kept <= drawn:
        raise ValueError(f"need n >= 1 and 0 < kept <= drawn; got n={n}, drawn={drawn}, kept={kept}")
    q, draws = kept / drawn, drawn / n
    k, r = int(draws), draws - int(draws)
    return (1 - r) * (1 - (1 - q) ** k) + r * (1 - (1 - q) ** (k + 1))


def step_time_shares(rows: Sequence[dict]) -> dict[str, float]:
    """Shares of training wall-clock (one-off reference work and evaluation excluded) by category."""
    last = rows[-1]
    cats = ("data", "learner", "scoring", "selection", "proxy_train")
    total = sum(last.get(f"seconds_{c}", 0.0) for c in cats)
    return {c: (last.get(f"seconds_{c}", 0.0) / total if total else 0.0) for c in cats}


def median(values: Sequence[float | None]) -> float | None:
    """Median over seeds; None if any seed never reached the target (treated as the worst)."""
    vals = [v for v in values if v is not None]
    if len(vals) < len(values):
        vals += [float("-inf")] * (len(values) - len(vals))
    if not vals:
        return None
    m = statistics.median(vals)
    return None if m == float("-inf") else m


def paired(a: Mapping[int, float | None], b: Mapping[int, float | None]) -> dict:
    """Arm `a` against arm `b` seed by seed (the seeds both ran): on how many `a` is ahead, behind or
    level, the per-seed differences a - b (`known`: how many are numbers), their mean and standard
    deviation, and the exact two-sided sign test's p-value over the seeds that are not level (1.0
    when none). None is a seed that never reached the target, behind any number (two Nones are
    level; a difference with a None is None and is left out of the mean). With the few seeds a bench
    runs, the count and p say how far a median's ranking can be trusted: at 3 seeds even 3 of 3 is
    p = 0.25."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError(f"no seed in common: {sorted(a)} and {sorted(b)}")

    def sign(x: float | None, y: float | None) -> int:
        if x is None or y is None:
            return (x is not None) - (y is not None)
        return (x > y) - (x < y)

    signs = [sign(a[s], b[s]) for s in seeds]
    diffs = {s: (a[s] - b[s] if a[s] is not None and b[s] is not None else None) for s in seeds}
    known = [d for d in diffs.values() if d is not None]
    ahead, behind = signs.count(1), signs.count(-1)
    n = ahead + behind
    tail = sum(math.comb(n, k) for k in range(min(ahead, behind) + 1)) / 2 ** n if n else 0.5
    return {"seeds": seeds, "ahead": ahead, "behind": behind, "level": signs.count(0), "diffs": diffs,
            "known": len(known), "mean": statistics.fmean(known) if known else None,
            "sd": statistics.stdev(known) if len(known) > 1 else None, "sign_p": min(1.0, 2 * tail)}
