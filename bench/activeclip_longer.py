"""Is the bench's target uniform's plateau? Uniform trained longer, and what the arms save against it.

    # uniform alone at longer budgets (same settings but train.steps), one process per seed:
    python bench/activeclip.py --arms=uniform --budgets=1 --train.steps=3000 --seeds=0 --out=runs/u3000 \\
        --results=runs/u3000/r0 --name=activeclip-uniform3000            # and seeds 1, 2; and 5000 steps
    # optionally other arms at a longer budget too (the uniform run above is kept):
    python bench/activeclip.py --arms=activeclip --budgets=1 --train.steps=5000 --seeds=0 --out=runs/u5000 --reuse \
        --results=runs/u5000/ac0 --name=activeclip-5000
    # or an arm alone (no uniform run: its end accuracy only), against uniform's longer runs above:
    python bench/activeclip.py --arms=oracle --budgets=1 --train.steps=5000 --no-uniform --seeds=0 \
        --out=runs/o5000 --results=runs/o5000 --name=oracle5000-s0
    python bench/activeclip_longer.py --table=bench/results/activeclip.json \
        --longer=runs/u3000/r0/activeclip-uniform3000.json,...,runs/u5000/ac2/activeclip-5000.json

Reads the arm table of `bench/activeclip.py` (each arm's zero-shot at the end of each fully decayed
budget, per seed) and results at longer budgets, run with the same settings but train.steps
(uniform's, and optionally other arms', whose end there joins their budget ends; a uniform run given
again at the same budget and seed is reported beside the first, which stays the target), and writes
bench/results/activeclip-longer.{json,md}:
- uniform's end zero-shot and R@1 per budget and seed, and its seed spread at each budget;
- each arm's updates saved against uniform at each longer budget: the budget the arm needs to end
  at uniform's end accuracy (`analysis.budget_reach` over the arm's budget ends) over uniform's
  budget. Where the arm's largest budget ends below that target the need lies beyond its runs,
  so the saving is reported as an upper bound ("<"); where its smallest budget already ends above
  it, as a lower bound ("≥").
Trains nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from common import run_main

from learnability import analysis
from learnability.io import atomic_write_text


def same_settings(a: str) -> str:
    """A results file's settings without its step counts (the only thing the longer runs change)."""
    return re.sub(r"; budgets [\d, ]+ steps$", "", re.sub(r"\b\d+ steps, lr", "N steps, lr", a))


def load(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: cannot read a results JSON ({e})")


def bounded_median(cells: list[tuple[float, str]]) -> tuple[float, str]:
    """Median of (value, mark) cells, mark "<" (upper bound), "≥" (lower bound) or "" (exact). The
    median is marked "≤" when an upper bound sorts at or above it, "≥" when a lower bound sorts at or
    below it (the true median may then lie on that side), "~" when both."""
    cells = sorted(cells)
    k = len(cells) // 2
    if len(cells) % 2 == 0:
        mid = (cells[k - 1][0] + cells[k][0]) / 2
        above, below = cells[k - 1:], cells[:k + 1]
    else:
        mid, above, below = cells[k][0], cells[k:], cells[:k + 1]
    up, low = any(m == "<" for _, m in above), any(m == "≥" for _, m in below)
    return mid, "~" if up and low else "≤" if up else "≥" if low else ""


def join_tables(paths: list[str]) -> dict:
    """One arm table from several of the same settings (budgets aside) and the same uniform ends per
    seed (one host, one target): their rows, an arm given twice for a seed kept from the first."""
    tables = [load(p) for p in paths]
    first = tables[0]
    uniform = {r["seed"]: r["end_zeroshot"] for r in first["rows"] if r["arm"] == "uniform"}
    rows, seen = list(first["rows"]), {(r["arm"], r["seed"]) for r in first["rows"]}
    for path, t in zip(paths[1:], tables[1:]):
        if same_settings(t["settings"]) != same_settings(first["settings"]) or t["budgets"][-1] != first["budgets"][-1]:
            raise SystemExit(f"{path}: settings or full budget differ from {paths[0]}:\n  {t['settings']}\n"
                             f"  {first['settings']}")
        other = {r["seed"]: r["end_zeroshot"] for r in t["rows"] if r["arm"] == "uniform"}
        if any(uniform.get(s) != e for s, e in other.items()):
            raise SystemExit(f"{path}: its uniform ends {other} differ from {paths[0]}'s {uniform}: another target "
                             "(e.g. another host's kernels); join only tables trained against the same uniform runs")
        rows += [r for r in t["rows"] if (r["arm"], r["seed"]) not in seen]
        seen |= {(r["arm"], r["seed"]) for r in t["rows"]}
    budgets = sorted({b for t in tables for b in t["budgets"]})
    return {**first, "rows": rows, "budgets": budgets,
            "command": " + ".join(t["command"] for t in tables) if len(tables) > 1 else first["command"]}


def flops_at(steps: float, flops: dict[float, float]) -> float | None:
    """The FLOP ledger of an arm at `steps` (between two of its budgets: linear, as its accuracy is
    interpolated), from `flops` = {budget: flops at that budget's end}; None where a budget that
    brackets `steps` has no ledger (results written before they were recorded)."""
    budgets = sorted(flops)
    hi = next((b for b in budgets if b >= steps - 1e-9), None)
    if hi is None:
        return None
    lo = max((b for b in budgets if b < hi), default=hi)
    if hi == lo or steps >= hi - 1e-9:
        return flops[hi]
    w = (steps - lo) / (hi - lo)
    return (1 - w) * flops[lo] + w * flops[hi]


def savings(table: dict, uniform: dict[int, dict[int, dict]], longer: dict[tuple[str, int], dict[int, float]],
            longer_flops: dict[tuple[str, int], dict[int, float]] | None = None) -> list[dict]:
    """Per arm, longer budget and seed: the updates the arm saves against uniform trained that long
    (`longer`: (arm, seed) -> {budget: end zero-shot} of the arm's runs beyond the table's budgets),
    and the compute, where every run involved recorded its FLOP ledger (`flops_<steps>`; the
    reference's training and caching counted in full; `longer_flops` like `longer`)."""
    out = []
    for r in table["rows"]:
        if r["arm"] == "uniform":
            continue
        ends = [(float(b), r[f"end_{b}"]) for b in table["budgets"] if r.get(f"end_{b}") is not None]
        ends += [(float(b), e) for b, e in longer.get((r["arm"], r["seed"]), {}).items()]
        ledger = {float(b): r[f"flops_{b}"] for b in table["budgets"] if r.get(f"flops_{b}") is not None}
        ledger.update({float(b): f for b, f in (longer_flops or {}).get((r["arm"], r["seed"]), {}).items() if f is not None})
        ledger = {b: f for b, f in ledger.items() if any(b == e for e, _ in ends)}
        if set(ledger) != {b for b, _ in ends}:
            ledger = {}  # a budget without its ledger: no compute for this arm and seed
        top = max(b for b, _ in ends)
        for n, by_seed in sorted(uniform.items()):
            if r["seed"] not in by_seed:
                continue
            target = by_seed[r["seed"]]["end_zeroshot"]
            need, censored = analysis.budget_reach(target, ends)
            base = by_seed[r["seed"]].get(f"flops_{n}")
            spent = flops_at(top if need is None else need, ledger) if ledger else None
            compute = None if spent is None or not base else (max(0.0, 1 - spent / base) if need is None else 1 - spent / base)
            if need is None:
                cell = {"updates_saved": max(0.0, 1 - top / n), "mark": "<"}
            else:
                cell = {"updates_saved": 1 - need / n, "mark": "≥" if censored else ""}
            cell["compute_saved"] = compute
            out.append({"arm": r["arm"], "seed": r["seed"], "uniform_steps": n, "target": target,
                        "arm_budgets": [int(b) for b, _ in sorted(ends)], "needed_steps": need, **cell})
    return out


ORACLES = ("oracle", "oracle_filter", "oracle_graded")  # perfect filters: before training, in the loop, graded


def oracle_share(medians: dict[str, tuple[float, str]], arm: str, n: int) -> str:
    """The arm's median saving against uniform@n as a share of the strongest oracle's there (the one
    with the largest exact median), e.g. "102% of oracle_graded"; "≥"/"≤" where the arm's median is
    a bound on one side, "-" where no oracle's median is exact or the arm's is bounded both ways."""
    exact = [(medians[f"{o}@{n}"][0], o) for o in ORACLES if f"{o}@{n}" in medians and not medians[f"{o}@{n}"][1]]
    if arm in ORACLES or not exact:
        return ""
    o, name = max(exact)
    if any(medians[f"{x}@{n}"][1] and medians[f"{x}@{n}"][0] > o for x in ORACLES if f"{x}@{n}" in medians):
        return ""  # an oracle without runs long enough may save more: the strongest is not known
    v, mark = medians[f"{arm}@{n}"]
    if o <= 0 or mark == "~":
        return "-"
    return f"{mark}{v / o:.0%} of {name}"


def pct(x: float, mark: str = "") -> str:
    return f"{mark}{x * 100:.0f}%"


def compute_cell(own: list[dict]) -> str:
    """Per seed and median compute saved ("<" where the arm's longest run ends short: its compute there
    bounds the saving from above; "n/a" where a run involved has no FLOP ledger)."""
    if any(c.get("compute_saved") is None for c in own):
        return ", ".join("n/a" if c.get("compute_saved") is None else pct(c["compute_saved"], c["mark"]) for c in own)
    med = bounded_median([(c["compute_saved"], c["mark"]) for c in own])
    return ", ".join(pct(c["compute_saved"], c["mark"]) for c in own) + f"; {pct(*med)}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default="bench/results/activeclip.json",
                   help="the arm table of bench/activeclip.py, or a comma list of tables of the same settings and "
                        "uniform runs (e.g. with activeclip-oracle-graded.json: its arms join the first's)")
    p.add_argument("--longer", required=True, help="comma list of results JSONs at longer budgets (uniform's; "
                                                   "other arms' rows in them join those arms' budgets)")
    p.add_argument("--results", default="bench/results")
    p.add_argument("--name", default="activeclip-longer")
    a = p.parse_args()
    table = join_tables(a.table.split(","))
    full = table["budgets"][-1]
    uniform: dict[int, dict[int, dict]] = {full: {r["seed"]: r for r in table["rows"] if r["arm"] == "uniform"}}
    longer: dict[tuple[str, int], dict[int, float]] = {}
    longer_flops: dict[tuple[str, int], dict[int, float | None]] = {}
    again: list[dict] = []  # uniform trained again at a budget and seed another file already gave
    for path in a.longer.split(","):
        part = load(path)
        if same_settings(part["settings"]) != same_settings(table["settings"]):
            raise SystemExit(f"{path}: settings differ from {a.table} in more than the steps:\n  {part['settings']}\n"
                             f"  {table['settings']}")
        n = part["budgets"][-1]
        if n <= full:
            raise SystemExit(f"{path}: uniform at {n} steps is not longer than the table's {full}")
        for r in part["rows"]:
            if r["arm"] != "uniform":
                longer.setdefault((r["arm"], r["seed"]), {})[n] = r["end_zeroshot"]
                longer_flops.setdefault((r["arm"], r["seed"]), {})[n] = r.get(f"flops_{n}")
            elif r["seed"] not in uniform.setdefault(n, {}):
                uniform[n][r["seed"]] = r
            elif uniform[n][r["seed"]]["end_zeroshot"] != r["end_zeroshot"]:  # trained again: the first is the target
                again.append({"steps": n, "seed": r["seed"], "file": path, "end_zeroshot": r["end_zeroshot"],
                              "first_end_zeroshot": uniform[n][r["seed"]]["end_zeroshot"]})
    seeds = sorted(uniform[full])
    cells = savings(table, {n: u for n, u in uniform.items() if n > full}, longer, longer_flops)
    arms = list(dict.fromkeys(c["arm"] for c in cells))
    medians = {f"{arm}@{n}": bounded_median([(c["updates_saved"], c["mark"]) for c in cells
                                             if c["arm"] == arm and c["uniform_steps"] == n])
               for arm in arms for n in sorted(uniform) if n > full}
    spread = {n: max(r["end_zeroshot"] for r in u.values()) - min(r["end_zeroshot"] for r in u.values())
              for n, u in uniform.items()}

    beyond = [n for n in sorted(uniform) if n > full]
    with_compute = {c["uniform_steps"] for c in cells if c.get("compute_saved") is not None}
    md = [f"Table: `{a.table}` ({table['command']})  ", f"Longer runs: {', '.join(f'`{x}`' for x in a.longer.split(','))}  ",
          f"Settings: {table['settings']}", "",
          "**Uniform at longer budgets** (each run's schedule decayed to zero at its end; zero-shot on the "
          "test images, R@1 image-to-text / text-to-image):", "",
          "| steps | " + " | ".join(f"seed {s}" for s in seeds) + " | median | seed spread |",
          "|---|" + "---|" * (len(seeds) + 2)]
    for n in sorted(uniform):
        rs = [uniform[n].get(s) for s in seeds]
        ends = [r["end_zeroshot"] for r in rs if r]
        md.append(f"| {n} | " + " | ".join(
            f"{r['end_zeroshot']:.3f} (R@1 {r['final_r1_i2t']:.3f} / {r['final_r1_t2i']:.3f})" if r else "-" for r in rs)
            + f" | {analysis.median(ends):.3f} | {spread[n] * 100:.1f} pts |")
    if longer:
        md += ["", "**Arms at longer budgets** (zero-shot at the end; uniform's at the same budget in brackets, "
                   "where it was trained that long):", "",
               "| arm | steps | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|---|" + "---|" * len(seeds)]
        for (arm, n) in sorted({(arm, n) for (arm, _), d in longer.items() for n in d}):
            md.append(f"| {arm} | {n} | " + " | ".join(
                f"{longer[arm, s][n]:.3f}" + (f" ({uniform[n][s]['end_zeroshot']:.3f})" if s in uniform.get(n, {}) else "")
                if n in longer.get((arm, s), {}) else "-" for s in seeds) + " |")
    if again:
        md += ["", "**Uniform trained again** (a later file's uniform run at a budget and seed an earlier file already "
                   "gave, e.g. an arm's bench run without the first run's folder; the first is the target; the "
                   "difference is run-to-run variation, e.g. float32 kernels on another CPU):", "",
               "| steps | seed | first | again | difference | file |", "|---|---|---|---|---|---|"]
        md += [f"| {g['steps']} | {g['seed']} | {g['first_end_zeroshot']:.3f} | {g['end_zeroshot']:.3f} | "
               f"{(g['end_zeroshot'] - g['first_end_zeroshot']) * 100:+.1f} pts | `{g['file']}` |" for g in again]
    md += ["", f"**Updates saved against uniform at each budget** (from the arm's fully decayed budgets "
               f"{', '.join(map(str, table['budgets']))}, and any longer ones above; \"<\": its largest budget B ends "
               f"below uniform's, so it saves less than 1 - B/N, possibly nothing; \"≥\": its smallest budget "
               f"already reaches):", "",
           "| arm | " + " | ".join(f"vs uniform@{n} (per seed) | median | share of the strongest oracle's"
                                  + (" | compute saved (per seed; median)" if n in with_compute else "") for n in beyond)
           + " |", "|---|" + "".join("---|---|---|" + ("---|" if n in with_compute else "") for n in beyond)]
    for arm in arms:
        row = [arm]
        for n in beyond:
            own = sorted((c for c in cells if c["arm"] == arm and c["uniform_steps"] == n), key=lambda c: c["seed"])
            row += [", ".join(pct(c["updates_saved"], c["mark"]) for c in own), pct(*medians[f"{arm}@{n}"]),
                    oracle_share(medians, arm, n)]
            if n in with_compute:
                row.append(compute_cell(own))
        md.append("| " + " | ".join(row) + " |")
    md.append("")
    md.append("Share of the strongest oracle's: the arm's median saving over the largest exact median saving of the "
              "perfect filters at the same uniform budget (oracle: clean pairs only; oracle_filter: in the loop at "
              "f = 0.5; oracle_graded: in the loop, grading the noise kinds; the issue's target is 60%); \"≤\" or "
              "\"≥\" where the arm's median is a bound; none where no oracle's median is exact, or one whose runs stop "
              "short (a bound) may save more than the strongest exact one. Compute saved (where every run involved "
              "recorded its FLOP ledger): the arm's FLOPs at the budget it needs, linear between its two budgets as "
              "the updates are, learner, proxy scoring and training and the reference's training and caching in full, "
              "over uniform's FLOPs at its budget.")
    md.append("")
    text = "\n".join(md)
    os.makedirs(a.results, exist_ok=True)
    atomic_write_text(os.path.join(a.results, a.name + ".md"), text)
    atomic_write_text(os.path.join(a.results, a.name + ".json"), json.dumps(
        {"table": a.table, "longer_files": a.longer.split(","), "settings": table["settings"],
         "arms_longer": {f"{arm}@seed{s}": {str(n): e for n, e in d.items()} for (arm, s), d in longer.items()},
         "uniform": {str(n): {str(s): {k: r[k] for k in ("end_zeroshot", "final_r1_i2t", "final_r1_t2i")}
                              for s, r in u.items()} for n, u in sorted(uniform.items())},
         "uniform_spread": {str(n): v for n, v in spread.items()}, "uniform_again": again, "savings": cells,
         "medians": {k: {"updates_saved": v, "mark": m} for k, (v, m) in medians.items()},
         "oracle_share": {f"{arm}@{n}": oracle_share(medians, arm, n) for arm in arms for n in beyond
                          if oracle_share(medians, arm, n)}}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
