"""Shared pieces of the benchmarks: machine string, per-arm rows from run files, medians, tables.

The target and the savings come from `learnability.analysis` (defined once)."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable

import torch

from learnability import analysis
from learnability.io import read_jsonl
from learnability.report import pct, share  # noqa: F401 - the bench scripts format with the report's helpers


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def machine() -> str:
    """The machine a result came from. The CPU and torch's kernel set (e.g. AVX512, AVX2) are part of
    it: the same seed gives bit-identical runs only on the same kernels; other kernels round differently
    and moved a run's end zero-shot by 0.8 points (bench/results/activeclip-kernels.md)."""
    return (f"{platform.machine()}, {cpu_model() or 'unknown CPU'}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"(kernels {torch.backends.cpu.get_cpu_capability()}), threads {torch.get_num_threads()}")


def arm_rows(out: str, arms: list[str], amortise: int, extra_keys: tuple[str, ...] = (),
             selected_keys: tuple[str, ...] = ()) -> list[dict]:
    """Savings of each arm of the compare in `out` against its `uniform` arm, plus logged values:
    `extra_keys` at the last evaluations, `selected_keys` (e.g. a corruption kind's share of the
    selected batches) as means over every step."""
    uniform = read_jsonl(os.path.join(out, "uniform", "metrics.jsonl"))
    rows = []
    for arm in arms:
        metrics = read_jsonl(os.path.join(out, arm, "metrics.jsonl"))
        with open(os.path.join(out, arm, "summary.json")) as f:
            summary = json.load(f)
        s = analysis.savings(uniform, metrics, amortise)
        shares = analysis.step_time_shares(metrics)
        evals = analysis.evaluations(metrics)
        row = {"arm": arm, "updates_saved": s["updates_saved"], "compute_saved": s["compute_saved"],
               "compute_saved_amortised": s["compute_saved_amortised"], "wallclock_saved": s["wallclock_saved"],
               "final_accuracy": s["final_accuracy"], "corrupted_selected": s["corrupted_selected"],
               "proxy_flops_ratio": summary["proxy_flops_ratio"], "target": s["target"],
               "reached_at_step": s["reached_at_step"], "uniform_reached_at_step": s["uniform_reached_at_step"],
               "selection_time_share": shares["selection"], "scoring_time_share": shares["scoring"],
               "train_seconds": metrics[-1]["seconds_total"],
               # the small models' own accuracy at the end (None for uniform, and for runs before they were logged)
               "reference_accuracy": summary.get("reference_accuracy"), "proxy_accuracy": summary.get("proxy_accuracy")}
        for key in extra_keys:  # mean of the last three evaluations, like final_accuracy
            vals = [r[key] for r in evals[-analysis.WINDOW:] if key in r]
            row[f"final_{key}"] = sum(vals) / len(vals) if vals else None
        row.update({key: analysis.corrupted_selected(metrics, key) for key in selected_keys})
        rows.append(row)
    return rows


def medians(rows: list[dict], group: tuple[str, ...], keys: tuple[str, ...], arm_order: tuple[str, ...]) -> list[dict]:
    """Median over seeds of `keys` for each group (e.g. eta, arm)."""
    out = []
    groups = sorted({tuple(r[g] for g in group) for r in rows},
                    key=lambda k: tuple(-v if isinstance(v, float) else (arm_order.index(v) if v in arm_order else 99)
                                        for v in k))
    for k in groups:
        members = [r for r in rows if tuple(r[g] for g in group) == k]
        m = dict(zip(group, k))
        m["seeds"] = len(members)
        m.update({key: analysis.median([r.get(key) for r in members]) for key in keys})  # older rows may lack a key
        out.append(m)
    return out


def run_main(main: Callable[[], int | None]) -> int:
    """Run a bench script's `main` with the command line's handling of bad input: a wrong key, an
    impossible size or missing data ends in one line that says what to fix (exit 2), not a traceback;
    a NaN loss says where it stopped (exit 1). Anything else is a bug and keeps its traceback."""
    from learnability.errors import report_user_error

    try:
        return main() or 0
    except Exception as e:  # noqa: BLE001 - the helper decides; a bug is re-raised as it was
        code = report_user_error(e, os.path.basename(sys.argv[0]))
        if code is None:
            raise
        return code
