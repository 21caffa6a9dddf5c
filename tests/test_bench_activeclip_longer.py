"""bench/activeclip_longer.py: an arm's savings against uniform trained longer, from its budget ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "bench")
SETTINGS = "noise swapped 0.4; b=128, {n} steps, lr 0.001 (cosine to 0, warm-up 100), eval every 200; budgets {b} steps"


def _uniform(seed: int, end: float) -> dict:
    return {"arm": "uniform", "seed": seed, "end_zeroshot": end, "final_r1_i2t": 0.2, "final_r1_t2i": 0.3}


def _write(tmp_path: Path, settings_n: int = 3000) -> tuple[Path, list[Path]]:
    table = {"command": "python bench/activeclip.py", "budgets": [1000, 2000],
             "settings": SETTINGS.format(n=2000, b="1000, 2000"),
             "rows": [_uniform(0, 0.50), _uniform(1, 0.52),
                      # seed 0: ends 0.50 at 1000 and 0.70 at 2000 -> reaches 0.60 at 1500 (50% of 3000)
                      {"arm": "activeclip", "seed": 0, "end_zeroshot": 0.70, "end_1000": 0.50, "end_2000": 0.70},
                      # seed 1: already 0.62 at 1000 -> at most 1000 (>= 67% of 3000)
                      {"arm": "activeclip", "seed": 1, "end_zeroshot": 0.70, "end_1000": 0.62, "end_2000": 0.70},
                      # ends below uniform@3000 on both seeds -> less than 1 - 2000/3000
                      {"arm": "hard_learner", "seed": 0, "end_zeroshot": 0.40, "end_2000": 0.40},
                      {"arm": "hard_learner", "seed": 1, "end_zeroshot": 0.45, "end_2000": 0.45}]}
    paths = [tmp_path / "table.json"]
    paths[0].write_text(json.dumps(table))
    for seed, end in ((0, 0.60), (1, 0.61)):
        part = {"command": "x", "budgets": [3000], "settings": SETTINGS.format(n=settings_n, b=settings_n),
                "rows": [_uniform(seed, end)]}
        paths.append(tmp_path / f"u{seed}.json")
        paths[-1].write_text(json.dumps(part))
    return paths[0], paths[1:]


def _run(tmp_path: Path, table: Path, uniform: list[Path]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.join(BENCH, "..", "src"),
                                                                   os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.run([sys.executable, os.path.join(BENCH, "activeclip_longer.py"), f"--table={table}",
                           "--longer=" + ",".join(map(str, uniform)), f"--results={tmp_path / 'res'}"],
                          env=env, capture_output=True, text=True, timeout=120)


def test_savings_against_a_longer_uniform(tmp_path: Path) -> None:
    table, uniform = _write(tmp_path)
    r = _run(tmp_path, table, uniform)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "res" / "activeclip-longer.json").read_text())
    cells = {(c["arm"], c["seed"]): c for c in res["savings"]}
    assert cells["activeclip", 0]["needed_steps"] == pytest.approx(1500)
    assert cells["activeclip", 0]["updates_saved"] == pytest.approx(0.5) and cells["activeclip", 0]["mark"] == ""
    assert cells["activeclip", 1]["updates_saved"] == pytest.approx(2 / 3) and cells["activeclip", 1]["mark"] == "≥"
    assert cells["hard_learner", 0]["mark"] == "<" and cells["hard_learner", 0]["updates_saved"] == pytest.approx(1 / 3)
    assert res["uniform_spread"]["3000"] == pytest.approx(0.01) and res["uniform_spread"]["2000"] == pytest.approx(0.02)
    assert res["medians"]["activeclip@3000"]["mark"] == "≥"
    md = (tmp_path / "res" / "activeclip-longer.md").read_text()
    assert "| hard_learner | <33%, <33% | ≤33% |" in md


def test_runs_with_other_settings_are_refused(tmp_path: Path) -> None:
    table, uniform = _write(tmp_path)
    bad = json.loads(uniform[0].read_text())
    bad["settings"] = bad["settings"].replace("b=128", "b=256")
    uniform[0].write_text(json.dumps(bad))
    r = _run(tmp_path, table, uniform)
    assert r.returncode != 0 and "settings differ" in r.stderr


def test_bounded_median_marks() -> None:
    sys.path.insert(0, BENCH)
    try:
        from activeclip_longer import bounded_median
    finally:
        sys.path.remove(BENCH)
    assert bounded_median([(0.4, ""), (0.45, ""), (0.33, "<")]) == (0.4, "")
    assert bounded_median([(0.2, ""), (0.25, ""), (0.33, "<")]) == (0.25, "≤")
    assert bounded_median([(0.5, "≥"), (0.6, ""), (0.7, "")]) == (0.6, "≥")
    assert bounded_median([(0.5, ""), (0.7, "")]) == (0.6, "")


def test_an_arm_run_at_a_longer_budget_joins_its_budget_ends(tmp_path: Path) -> None:
    table, uniform = _write(tmp_path)
    part = json.loads(uniform[0].read_text())
    # hard_learner seed 0 ends 0.40 at 2000 and 0.62 at 3000: it needs 2000 + 0.20 / 0.22 * 1000 steps for 0.60
    part["rows"].append({"arm": "hard_learner", "seed": 0, "end_zeroshot": 0.62})
    uniform[0].write_text(json.dumps(part))
    alone = tmp_path / "ac4000.json"  # an arm alone at a budget uniform was not trained at
    alone.write_text(json.dumps({"command": "x", "budgets": [4000], "settings": SETTINGS.format(n=4000, b=4000),
                                 "rows": [{"arm": "activeclip", "seed": 0, "end_zeroshot": 0.8}]}))
    r = _run(tmp_path, table, [*uniform, alone])
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "res" / "activeclip-longer.json").read_text())
    cell = next(c for c in res["savings"] if c["arm"] == "hard_learner" and c["seed"] == 0)
    assert cell["mark"] == "" and cell["needed_steps"] == pytest.approx(2000 + 0.2 / 0.22 * 1000)
    assert cell["arm_budgets"] == [2000, 3000]
    md = (tmp_path / "res" / "activeclip-longer.md").read_text()
    assert "| hard_learner | 3000 | 0.620 (0.600) | - |" in md and "| activeclip | 4000 | 0.800 | - |" in md


def test_uniform_trained_again_is_reported_and_the_first_stays_the_target(tmp_path: Path) -> None:
    table, uniform = _write(tmp_path)
    part = json.loads(uniform[0].read_text())
    # an arm's own bench run retrained uniform@3000 seed 0 and ended 1 point higher
    part["rows"] = [_uniform(0, 0.61), {"arm": "hard_learner", "seed": 0, "end_zeroshot": 0.62}]
    again = tmp_path / "again.json"
    again.write_text(json.dumps(part))
    r = _run(tmp_path, table, uniform + [again])
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "res" / "activeclip-longer.json").read_text())
    assert res["uniform"]["3000"]["0"]["end_zeroshot"] == 0.60
    assert res["uniform_again"] == [{"steps": 3000, "seed": 0, "file": str(again), "end_zeroshot": 0.61,
                                     "first_end_zeroshot": 0.60}]
    cell = next(c for c in res["savings"] if c["arm"] == "hard_learner" and c["seed"] == 0)
    assert cell["target"] == 0.60
    assert "| 3000 | 0 | 0.600 | 0.610 | +1.0 pts |" in (tmp_path / "res" / "activeclip-longer.md").read_text()
    # the same run given twice (e.g. kept by --reuse) is not a repeat
    r = _run(tmp_path, table, uniform + [uniform[0]])
    assert r.returncode == 0 and json.loads((tmp_path / "res" / "activeclip-longer.json").read_text())["uniform_again"] == []


def test_each_arm_saving_as_a_share_of_the_oracles(tmp_path: Path) -> None:
    table, uniform = _write(tmp_path)
    t = json.loads(table.read_text())
    # the oracle: 0.50 at 1000, 0.65 at 2000 -> reaches 0.60 (seed 0) at 1667 steps, 0.61 (seed 1) at 1733
    t["rows"] += [{"arm": "oracle", "seed": s, "end_zeroshot": 0.65, "end_1000": 0.50, "end_2000": 0.65} for s in (0, 1)]
    table.write_text(json.dumps(t))
    r = _run(tmp_path, table, uniform)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "res" / "activeclip-longer.json").read_text())
    oracle = res["medians"]["oracle@3000"]["updates_saved"]
    assert oracle == pytest.approx(1 - (1000 + 1000 * (0.10 + 0.11) / 2 / 0.15) / 3000)
    # activeclip's median is a lower bound (seed 1 reached at its smallest budget): so is its share
    share = res["medians"]["activeclip@3000"]["updates_saved"] / oracle
    assert res["medians"]["activeclip@3000"]["mark"] == "≥"
    assert res["oracle_share"]["activeclip@3000"] == f"≥{share:.0%} of oracle"
    assert f"| ≥{share:.0%} of oracle |" in (tmp_path / "res" / "activeclip-longer.md").read_text()
    assert "oracle@3000" not in res["oracle_share"]
    # an in-loop oracle saving more is the stronger bound, and the share is taken of it
    t["rows"] += [{"arm": "oracle_graded", "seed": s, "end_zeroshot": 0.7, "end_1000": 0.55, "end_2000": 0.7}
                  for s in (0, 1)]
    table.write_text(json.dumps(t))
    assert _run(tmp_path, table, uniform).returncode == 0
    res = json.loads((tmp_path / "res" / "activeclip-longer.json").read_text())
    graded = res["medians"]["oracle_graded@3000"]["updates_saved"]
    assert graded > oracle and res["oracle_share"]["hard_learner@3000"] == \
        f"≤{res['medians']['hard_learner@3000']['updates_saved'] / graded:.0%} of oracle_graded"
    # an oracle whose runs stop short of the target (an upper bound above the exact ones): no share
    t["rows"] += [{"arm": "oracle_filter", "seed": s, "end_zeroshot": 0.45, "end_1000": 0.45} for s in (0, 1)]
    table.write_text(json.dumps(t))
    assert _run(tmp_path, table, uniform).returncode == 0
    res = json.loads((tmp_path / "res" / "activeclip-longer.json").read_text())
    assert res["medians"]["oracle_filter@3000"] == {"updates_saved": pytest.approx(2 / 3), "mark": "≤"}
    assert 2 / 3 > graded
    assert "activeclip@3000" not in res["oracle_share"]


def test_tables_of_the_same_uniform_runs_join(tmp_path: Path) -> None:
    table, uniform = _write(tmp_path)
    t = json.loads(table.read_text())
    other = {**t, "budgets": [1500, 2000], "rows": [_uniform(0, 0.50), _uniform(1, 0.52),
                                                      {"arm": "oracle_graded", "seed": 0, "end_zeroshot": 0.7,
                                                       "end_1500": 0.55, "end_2000": 0.7}]}
    second = tmp_path / "graded.json"
    second.write_text(json.dumps(other))
    r = _run(tmp_path, Path(f"{table},{second}"), uniform)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "res" / "activeclip-longer.json").read_text())
    (cell,) = [c for c in res["savings"] if c["arm"] == "oracle_graded"]
    # 0.55 at 1500, 0.70 at 2000 -> 0.60 at 1500 + 500 / 3
    assert cell["arm_budgets"] == [1500, 2000] and cell["needed_steps"] == pytest.approx(1500 + 500 / 3)
    other["rows"][0] = _uniform(0, 0.51)  # another target: refused
    second.write_text(json.dumps(other))
    r = _run(tmp_path, Path(f"{table},{second}"), uniform)
    assert r.returncode != 0 and "uniform ends" in r.stderr


def test_compute_saved_from_the_runs_flop_ledgers(tmp_path: Path) -> None:
    """Where every run recorded its ledger (flops_<steps>), the arm's FLOPs at the budget it needs
    (linear between its budgets) over uniform's at its budget; older files without one get none."""
    table, uniform = _write(tmp_path)
    t = json.loads(table.read_text())
    for r in t["rows"]:  # activeclip seed 0: 1.1 per step + a one-off 100 (the reference)
        if r["arm"] == "activeclip" and r["seed"] == 0:
            r.update({"flops_1000": 1200.0, "flops_2000": 2300.0, "flops_reference": 100.0})
    table.write_text(json.dumps(t))
    for path in uniform:  # uniform: 1 per step
        part = json.loads(path.read_text())
        part["rows"][0]["flops_3000"] = 3000.0
        path.write_text(json.dumps(part))
    r = _run(tmp_path, table, uniform)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "res" / "activeclip-longer.json").read_text())
    cells = {(c["arm"], c["seed"]): c for c in res["savings"]}
    # it needs 1500 steps: 1200 + 0.5 * 1100 = 1750 FLOPs against uniform's 3000
    assert cells["activeclip", 0]["compute_saved"] == pytest.approx(1 - 1750 / 3000)
    assert cells["activeclip", 1]["compute_saved"] is None and cells["hard_learner", 0]["compute_saved"] is None
    md = (tmp_path / "res" / "activeclip-longer.md").read_text()
    assert "compute saved (per seed; median)" in md and "| 42%, n/a |" in md


def test_flops_at_interpolates_between_budgets() -> None:
    sys.path.insert(0, BENCH)
    try:
        from activeclip_longer import flops_at
    finally:
        sys.path.remove(BENCH)
    assert flops_at(1500, {1000.0: 10.0, 2000.0: 30.0}) == pytest.approx(20.0)
    assert flops_at(2000, {1000.0: 10.0, 2000.0: 30.0}) == 30.0 and flops_at(800, {1000.0: 10.0}) == 10.0
    assert flops_at(2500, {1000.0: 10.0, 2000.0: 30.0}) is None
