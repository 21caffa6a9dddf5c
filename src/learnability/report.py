"""Run directories -> a markdown report with PNG plots, from the run files alone.

`build_report(["runs/compare-x"], out_dir)` reads each run's `config.json` and `metrics.jsonl`
(a compare directory holds one run per arm), plots test accuracy against learner updates, total
FLOPs and wall-clock, and tabulates savings against the uniform arm (see `analysis`).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence

from learnability import analysis
from learnability.io import atomic_write_text, read_jsonl


def find_runs(paths: Sequence[str]) -> list[str]:
    """Run directories (holding metrics.jsonl) at or directly below each path."""
    runs = []
    for p in paths:
        if os.path.isfile(os.path.join(p, "metrics.jsonl")):
            runs.append(p)
        elif os.path.isdir(p):
            runs += sorted(os.path.join(p, d) for d in os.listdir(p)
                           if os.path.isfile(os.path.join(p, d, "metrics.jsonl")))
        else:
            raise FileNotFoundError(f"{p} is not a run directory (no metrics.jsonl) nor a folder of runs")
    if not runs:
        raise FileNotFoundError(f"no run directories (with metrics.jsonl) found in {', '.join(paths)}")
    return runs


def load_run(path: str) -> dict:
    config_path = os.path.join(path, "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config_path} is not valid JSON ({e}); restore it from a copy of the run") from e
    rows = read_jsonl(os.path.join(path, "metrics.jsonl"))
    if not rows:
        raise ValueError(f"{path}/metrics.jsonl holds no rows")
    summary = {}
    if os.path.isfile(os.path.join(path, "summary.json")):  # absent while a run is going or was cut short
        try:
            with open(os.path.join(path, "summary.json"), encoding="utf-8") as f:
                summary = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:  # the rest of the report stands without it
            print(f"learnability: warning: {path}/summary.json is not valid JSON ({e}); the report leaves this run "
                  f"out of its coverage and small-model tables", file=sys.stderr)
    return {"path": path, "arm": cfg.get("name") or cfg["selection"]["score"], "config": cfg, "rows": rows,
            "summary": summary}


def table(runs: list[dict], amortise: int = 10) -> list[dict]:
    """One row per run: savings against the uniform run (None without one), shares of time."""
    base = next((r for r in runs if r["arm"] == "uniform"), None)
    out = []
    for run in runs:
        if base is not None:
            row = analysis.savings(base["rows"], run["rows"], amortise)
        else:
            row = {"final_accuracy": analysis.final_accuracy(run["rows"]),
                   "corrupted_selected": analysis.corrupted_selected(run["rows"])}
        last = run["rows"][-1]
        row.update({"arm": run["arm"], "steps": last["step"], "flops_total": last["flops_total"],
                    "seconds_total": last["seconds_total"],
                    "selection_time_share": analysis.step_time_shares(run["rows"])["selection"],
                    "scoring_time_share": analysis.step_time_shares(run["rows"])["scoring"]})
        out.append(row)
    return out


def pct(v: float | None) -> str:
    return "not reached" if v is None else f"{100 * v:+.1f}%"


def share(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def markdown_table(rows: list[dict]) -> str:
    head = ("| arm | updates saved | compute saved | compute saved (amortised) | wall-clock saved | "
            "final accuracy | corrupted selected | selection share of step time |\n"
            "|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['arm']} | {pct(r.get('updates_saved'))} | {pct(r.get('compute_saved'))} | "
        f"{pct(r.get('compute_saved_amortised'))} | {pct(r.get('wallclock_saved'))} | "
        f"{r['final_accuracy']:.4f} | {share(r['corrupted_selected'])} | {share(r['selection_time_share'], 2)} |\n"
        for r in rows)
    return head + body


def plot(runs: list[dict], out_dir: str) -> list[str]:
    """Three PNGs of test accuracy against learner updates, total FLOPs and wall-clock seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = [("step", "learner updates", "accuracy_vs_updates.png"),
            ("flops_total", "total FLOPs (every overhead counted)", "accuracy_vs_flops.png"),
            ("seconds_total", "wall-clock seconds (training, reference included)", "accuracy_vs_wallclock.png")]
    target = None
    base = next((r for r in runs if r["arm"] == "uniform"), None)
    if base is not None:
        target = analysis.final_accuracy(base["rows"])
    paths = []
    for key, label, name in axes:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
        for run in runs:
            ev = analysis.evaluations(run["rows"])
            ax.plot([r[key] for r in ev], [r["test_accuracy"] for r in ev], marker=".", label=run["arm"])
        if target is not None:
            ax.axhline(target, color="grey", linestyle="--", linewidth=1, label="target (uniform final)")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, name)
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def coverage_lines(runs: list[dict]) -> list[str]:
    """Markdown lines on how much of the pool each run trained on (`distinct_trained`) against what
    keeping the same share of its draws at random would have covered; none when no run logs it."""
    lines = []
    for run in runs:
        last, n = run["rows"][-1], run["summary"].get("pool_size")
        if last.get("distinct_trained") is None or not n or not last.get("candidates_drawn"):
            continue
        chance = analysis.random_keep_coverage(last["candidates_drawn"], last["examples_seen"], n)
        if run["summary"].get("coverage_partial"):  # resumed from a checkpoint without it: counted from there on
            lines.append(f"| {run['arm']} | {last['examples_seen'] / n:.2f} | {share(last['distinct_trained'])} "
                         f"(counted from a resume on) | {share(chance)} | n/a |")
            continue
        lines.append(f"| {run['arm']} | {last['examples_seen'] / n:.2f} | {share(last['distinct_trained'])} | "
                     f"{share(chance)} | {last['distinct_trained'] / chance:.2f} |")
    if not lines:
        return []
    return ["", "## What the learner trained on", "",
            "The share of the pool trained on at least once, against the share that keeping the same number of "
            "each run's candidates at random would cover. A ratio well below 1 means the selection keeps revisiting "
            "a narrower set (it may still pay: noise is what it should leave out).", "",
            "| arm | passes over the pool (examples trained / pool) | pool trained on | at random | ratio |",
            "|---|---|---|---|---|", *lines]


def small_model_lines(runs: list[dict]) -> list[str]:
    """Markdown lines on the small models' own test accuracy at the end of each selecting run (the
    summary's `reference_accuracy`, `proxy_accuracy`) beside the learner's; none when no run has them."""
    have = [r for r in runs if {"reference_accuracy", "proxy_accuracy"} & set(r["summary"])]
    if not have:
        return []
    lines = [f"| {r['arm']} | {r['summary'].get('eval_split', 'test')} | {share(r['summary'].get('reference_accuracy'))} | "
             f"{share(r['summary'].get('proxy_accuracy'))} | {share(r['summary'].get('final_accuracy'))} |" for r in have]
    return ["", "## The small models", "",
            "Accuracy of the reference (frozen, or as trained alongside) and of the online proxy at the end of each "
            "run, on the split and with the evaluation the learner gets; the learner's is its last evaluation. "
            "Learnability gains on the clean reference alone only where the reference is strong enough (on the "
            "image-text bench: docs/image-text-benchmark.md, points 8c-8e).", "",
            "| arm | split | reference | online proxy | learner (last evaluation) |", "|---|---|---|---|---|", *lines]


def actor_learner_lines(runs: list[dict]) -> list[str]:
    """Markdown lines on runs scored by Ray actors (`backend=ray`): the learner's idle time waiting
    on the queue and every actor's scoring FLOPs and seconds; none when no run used actors."""
    ray_runs = [r for r in runs if "seconds_idle" in r["rows"][-1]]
    if not ray_runs:
        return []
    lines = ["", "## Actor-learner (backend=ray)", "",
             "Scoring ran on Ray actors apart from the learner: the learner's seconds above exclude it; "
             "its idle time is the wait for selected batches. Actor seconds overlap the learner's.", "",
             "| arm | actors | learner idle s | learner idle fraction | max staleness (steps) | restarts | requests re-issued "
             "| actor | actor scoring FLOPs | actor scoring s | actor selection s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in ray_runs:
        last = run["rows"][-1]
        n = int(run["config"].get("ray", {}).get("actors", 1))
        head = (f"| {run['arm']} | {n} | {last['seconds_idle']:.1f} | {100 * last.get('learner_idle_fraction', 0.0):.1f}% | "
                f"{max(r.get('staleness', 0) for r in run['rows'])} | {last.get('actor_restarts', 0)} | "
                f"{last.get('requests_reissued', 0)} |")
        for i in range(n):
            lines.append((head if i == 0 else "| | | | | | | |") +
                         f" {i} | {last.get(f'actor{i}_flops_scoring', 0.0):.3g} | {last.get(f'actor{i}_seconds_scoring', 0.0):.1f} | "
                         f"{last.get(f'actor{i}_seconds_selection', 0.0):.1f} |")
    return lines


def build_report(paths: Sequence[str], out_dir: str | None = None, amortise: int = 10) -> tuple[str, list[dict]]:
    """Write `report.md` and plots into `out_dir` (default: the first path). Returns its path and the table."""
    runs = [load_run(p) for p in find_runs(paths)]
    runs.sort(key=lambda r: (r["arm"] != "uniform", r["arm"]))
    out_dir = out_dir or (paths[0] if len(paths) == 1 and os.path.isdir(paths[0]) else "report")
    os.makedirs(out_dir, exist_ok=True)
    rows = table(runs, amortise)
    plots = plot(runs, out_dir)
    cfg = runs[0]["config"]

    def c(section: str, key: str) -> Any:
        return cfg.get(section, {}).get(key, "n/a")

    lines = [
        "# learnability report", "",
        f"Runs: {', '.join(r['path'] for r in runs)}", "",
        f"Data: {c('data', 'source')}, label noise {c('data', 'label_noise')}, learner {c('model', 'learner')}, "
        f"proxy {c('model', 'proxy')}, b = {c('train', 'batch_size')}, filter ratio {c('selection', 'filter_ratio')}, "
        f"sampler {c('selection', 'sampler')} (temperature {c('selection', 'temperature')}).", "",
        "Target: uniform's final accuracy (mean of its last three evaluations); an arm reaches it at the first "
        "evaluation whose mean over the last three is at or above it. Savings are against uniform at that point; "
        f"compute counts reference training and caching in full (amortised: over {amortise} runs).", "",
        markdown_table(rows), "",
        "## Where the time went", "",
        "| arm | learner FLOPs | scoring FLOPs | proxy training FLOPs | reference FLOPs (one-off) | learner s | scoring s | selection s | proxy training s | reference s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        last = run["rows"][-1]
        lines.append(f"| {run['arm']} | " + " | ".join(f"{last.get('flops_' + c, 0):.3g}" for c in ("learner", "scoring", "proxy_train", "reference"))
                     + " | " + " | ".join(f"{last.get('seconds_' + c, 0):.1f}" for c in ("learner", "scoring", "selection", "proxy_train", "reference")) + " |")
    lines += coverage_lines(runs)
    lines += small_model_lines(runs)
    lines += actor_learner_lines(runs)
    lines += ["", "## Plots", ""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots]
    path = os.path.join(out_dir, "report.md")
    atomic_write_text(path, "\n".join(lines) + "\n")
    atomic_write_text(os.path.join(out_dir, "report.json"), json.dumps(rows, indent=2) + "\n")
    return path, rows


SAVED = ("updates_saved", "compute_saved", "compute_saved_amortised", "wallclock_saved")


def seed_folders(path: str) -> tuple[dict[int, str], list[str]]:
    """The per-seed folders (`seed<N>`) of a multi-seed compare and its arms in --arms order; ({}, [])
    for any other folder. With the compare's `compare.json`, every seed it names must have run."""
    saved: dict = {}
    if os.path.isfile(os.path.join(path, "compare.json")):
        with open(os.path.join(path, "compare.json"), encoding="utf-8") as f:
            saved = json.load(f)
    if saved.get("seeds"):
        folders = {int(s): os.path.join(path, f"seed{int(s)}") for s in saved["seeds"]}
        missing = [s for s, f in folders.items() if not os.path.isdir(f)]
        if missing:
            raise FileNotFoundError(f"{path}: seed {', '.join(map(str, missing))} of {saved['seeds']} has not run "
                                    f"(no seed<N> folder); `learnability compare --resume {path}` runs it")
        return folders, list(saved.get("arms", []))
    if not os.path.isdir(path) or os.path.isfile(os.path.join(path, "metrics.jsonl")):
        return {}, []
    found = {int(d[4:]): os.path.join(path, d) for d in os.listdir(path)
             if d.startswith("seed") and d[4:].isdigit() and os.path.isdir(os.path.join(path, d))}
    return dict(sorted(found.items())), []


def seeds_report(folders: dict[int, str], out_dir: str, amortise: int = 10,
                 order: Sequence[str] = ()) -> tuple[str, list[dict]]:
    """One report per seed (into `out_dir/seed<N>`: the seed's own folder when `out_dir` holds them),
    then `out_dir/report.md`: each arm's medians over the seeds (a seed that never reached the target
    counts as the worst) and each arm against uniform seed by seed (`analysis.paired` on the final
    accuracy; with two or more selecting arms, also the first selecting arm against each other one on
    updates saved; arms in `order`, e.g. compare's --arms, then the rest by name). Runs without a
    `summary.json` (cut short, or still going) are named in the report. Returns its path and the
    median rows."""
    if len(folders) < 2:
        raise ValueError(f"a multi-seed report needs two or more seed folders; found {sorted(folders) or 'none'}")
    per_seed = {s: {r["arm"]: r for r in build_report([f], os.path.join(out_dir, f"seed{s}"), amortise)[1]}
                for s, f in folders.items()}
    unfinished = [f"{os.path.basename(run)} (seed {s})" for s, f in folders.items() for run in find_runs([f])
                  if not os.path.isfile(os.path.join(run, "summary.json"))]
    found = {a for rows in per_seed.values() for a in rows}
    arms = [a for a in dict.fromkeys(order) if a in found] + sorted(found - set(order), key=lambda a: (a != "uniform", a))
    seeds = list(per_seed)

    def values(arm: str, key: str) -> dict[int, float | None]:
        return {s: rows[arm].get(key) for s, rows in per_seed.items() if arm in rows}

    med = []
    for arm in arms:
        row = {"arm": arm, "seeds": sorted(values(arm, "final_accuracy"))}
        row.update({k: analysis.median(list(values(arm, k).values())) for k in (*SAVED, "final_accuracy")})
        med.append(row)
    lines = ["# learnability report over seeds", "",
             f"Seeds {', '.join(map(str, seeds))} (`train.seed`: initialisation, data order and selection draws; the "
             f"data split, `data.seed`, is the same for every seed). Each seed's own report: "
             + ", ".join(f"[seed {s}](seed{s}/report.md)" for s in folders) + ".", "",
             *([f"**Not finished** (no summary.json; their rows so far are counted): {', '.join(unfinished)}. "
                "`learnability compare --resume` on the compare's folder finishes them.", ""] if unfinished else []),
             "Medians over the seeds (a seed on which an arm never reached uniform's final accuracy counts as the worst):", "",
             "| arm | seeds | updates saved | compute saved | compute saved (amortised) | wall-clock saved | final accuracy "
             "(median) | final accuracy (per seed) |", "|---|---|---|---|---|---|---|---|"]
    for m in med:
        each = ", ".join(f"{v:.4f}" for v in values(m["arm"], "final_accuracy").values())
        lines.append(f"| {m['arm']} | {len(m['seeds'])} | " + " | ".join(pct(m[k]) for k in SAVED)
                     + f" | {m['final_accuracy']:.4f} | {each} |")
    paired = []
    if "uniform" in arms:
        paired += [(a, "uniform", "final_accuracy") for a in arms if a != "uniform"]
    selecting = [a for a in arms if a != "uniform"]
    if len(selecting) > 1 and "uniform" in arms:
        paired += [(a, selecting[0], "updates_saved") for a in selecting[1:]]
    if paired:
        lines += ["", "## Seed by seed", "",
                  "Each arm minus the other on the same seed (\"-\": one of the two never reached the target there: "
                  "behind any number, left out of the mean); ahead / behind: the seeds on which it is above or below; "
                  "p: the exact two-sided sign test over those seeds (with 3 seeds even 3 of 3 is p = 0.25, with 5 "
                  "seeds 5 of 5 is 0.06: a median's ranking is only as firm as this).", "",
                  "| arm | against | measure | difference per seed (points) | mean ± sd | ahead / behind | p |",
                  "|---|---|---|---|---|---|---|"]
        for a, b, key in paired:
            p = analysis.paired(values(a, key), values(b, key))
            diffs = ", ".join("-" if d is None else f"{round(100 * d, 1) + 0.0:+.1f}" for d in p["diffs"].values())
            mean = "-" if p["mean"] is None else f"{round(100 * p['mean'], 1) + 0.0:+.1f}" + (
                "" if p["sd"] is None else f" ± {100 * p['sd']:.1f}") + (
                f" ({p['known']} of {len(p['seeds'])} seeds)" if p["known"] < len(p["seeds"]) else "")
            lines.append(f"| {a} | {b} | {key.replace('_', ' ')} | {diffs} | {mean} | {p['ahead']} / {p['behind']}"
                         + (f" ({p['level']} level)" if p["level"] else "") + f" | {p['sign_p']:.2f} |")
            p["diffs"] = {str(s): d for s, d in p["diffs"].items()}
            med[arms.index(a)].setdefault("paired", []).append({"against": b, "measure": key, **p})
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "report.md")
    atomic_write_text(path, "\n".join(lines) + "\n")
    atomic_write_text(os.path.join(out_dir, "report.json"), json.dumps({"seeds": seeds, "arms": med}, indent=2) + "\n")
    return path, med
