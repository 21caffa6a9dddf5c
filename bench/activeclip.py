"""ActiveCLIP and JEST benchmark: image-text training on the built-in compositional pairs.

    python bench/activeclip.py                      # 3 seeds, every arm (about 1.5 h a seed on one core)
    python bench/activeclip.py --seeds=1 --results=R1 ...   # seeds in parallel, one thread each, then
    python bench/activeclip.py --merge=R0/activeclip.json,R1/activeclip.json,R2/activeclip.json
    python bench/activeclip.py --arms=uniform,oracle --name=activeclip-oracle   # the noise bound alone
    python bench/activeclip.py --smoke              # tiny settings, seconds: the path the tests run
    python bench/activeclip.py --arms=activeclip_early,activeclip_late --name=activeclip-windows   # early or late?
    python bench/activeclip.py --arms=oracle --train.steps=5000 --budgets=1 --no-uniform   # ends only, for activeclip_longer.py
    python bench/activeclip.py --dataset=digits     # the same bench on pairs rendered from digits (the second dataset)

The pool carries mixed web-like noise (`NOISE`: swapped, uninformative and wrong-attribute captions,
and duplicated pairs; 80% of the pairs in all) and renders each of its 50k garments 4 times (own
colour, size, position and caption; noise drawn per pair), so the oracle's clean subset still
covers about 1 - 0.8**4 = 59% of the garments. Removing the noise helps uniform here (the milder
regimes of bench/results/activeclip-oracle*.md, where it did not, are kept), though a perfect filter
saves 28% of updates before training, 32.5% in the loop and 37.7% grading the noise kinds, not 40%,
against uniform@2000; against uniform near its plateau (10000 steps) the graded filter saves 49% and
activeclip 44% (docs/image-text-benchmark.md point 6d, with `--no-uniform` runs; issue #11; 8
renderings, half the oracle's repetition, change none of it: bench/results/activeclip-renderings8.md;
activeclip saves more than either: bench/results/activeclip-oracle-filter.md). Every arm
of a seed trains on the same data, seeds and evaluation schedule, with warm-up and a cosine learning
rate decayed to zero at its last step. Arms (`ARMS`):

- uniform: b pairs drawn uniformly (the baseline whose end-of-run zero-shot accuracy is the target);
- random_subset: B drawn, b kept uniformly at random (the control for drawing more per update);
- oracle: uniform on the pool's clean pairs only: a perfect, free noise filter (not a bound on
  selection here: ActiveCLIP saves more, docs/image-text-benchmark.md point 6b);
- oracle_filter: the perfect filter in the loop at activeclip's f = 0.5: B drawn from the noisy
  pool, its clean pairs kept first (score `oracle`, the ground truth), corrupted ones only to fill
  b; the bound on what filtering noise at f = 0.5 can save, with activeclip's candidates per update;
- oracle_graded: the same, keeping the least damaged pairs first (tasks.clip.NOISE_GRADES: clean,
  duplicate, wrong attribute, junk, swapped), the ground truth's version of grading noise;
- activeclip, easy_reference, hard_learner (f = 0.5) and jest (joint, f = 0.8);
- jest_f05: jest at activeclip's f = 0.5, which separates joint selection from harsher filtering;
- activeclip_early / activeclip_late: activeclip selecting only in the first / second half
  (`selection.end` / `selection.start`);
- rho (diagnostic, only when named in --arms): RHO-LOSS, learnability with the learner's own loss
  in place of the online proxy's: how much a better online model would change learnability's
  ranking (it runs the learner forward on all B candidates, so it is not built to save compute);
- jest_learner (only when named): JEST as its paper runs it, at f = 0.8, the learner scoring its own
  super-batch (its pairwise loss minus the reference's) in place of the online proxy; the learner's
  forward on all B candidates is counted as scoring compute;
- jest_t5 (only when named): jest sampled at temperature 5, which widens the set it trains on
  (docs/image-text-benchmark.md point 8f: level with activeclip on the garments validation split;
  point 8g: on test 44.1% of updates saved against activeclip's 49.5%, ahead on 2 of 3 seeds).
Any `--section.field=value` override applies to every arm (e.g. `--pairs.renderings=1
--pairs.swapped=0.2 --pairs.uninformative=0.1 --data.test_size=3000` gives back the earlier, milder
bench). Writes bench/results/<name>.json (a row per arm and seed) and a markdown table of medians.

Fully decayed budgets (the headline): each arm also trains at the `--budgets` fractions of
train.steps (0.3, 0.5, 0.75), each run with its own schedule decayed to zero at its end, largest first
and only while the last one still ended at or above the target (the budget the arm needs lies
between the smallest that reached and the largest that did not). The updates an arm needs are
interpolated linearly between the two budgets whose end accuracies bracket the target; "≥" marks
a seed where even the smallest budget already reached it (a lower bound). Mid-schedule (the second
table, full-budget runs only): an arm reaches the target at the first evaluation whose
three-evaluation mean is at or above uniform's final one, with its learning rate not yet decayed
there; on this bench that leans high (a 1000-step run decayed to zero ends below the 2000-step
run's accuracy at step 1000), so the decayed budgets are the measure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

from common import arm_rows, machine, medians, pct, run_main, share

from learnability import analysis
from learnability import config as C
from learnability.clip_loop import run_clip
from learnability.compare import arm_config
from learnability.data.sources import load_source
from learnability.io import atomic_write_text, read_jsonl
from learnability.pairs import CLEAN, PairSplits
from learnability.pairs.build import build_pairs

NOISE = {"swapped": 0.4, "uninformative": 0.2, "wrong_attribute": 0.1, "duplicates": 0.1}
# name: (compare arm, filtering ratio, selecting over which part of the run: (start, end) fractions)
ARMS = {
    "uniform": ("uniform", 0.0, None),
    "oracle": ("uniform", 0.0, None),
    "oracle_filter": ("oracle", 0.5, None),
    "oracle_graded": ("oracle_graded", 0.5, None),
    "activeclip": ("activeclip", 0.5, None),
    "jest": ("jest", 0.8, None),
    "jest_f05": ("jest", 0.5, None),
    "random_subset": ("random", 0.5, None),
    "easy_reference": ("easy_reference", 0.5, None),
    "hard_learner": ("hard_learner", 0.5, None),
    "activeclip_early": ("activeclip", 0.5, (0.0, 0.5)),
    "activeclip_late": ("activeclip", 0.5, (0.5, 1.0)),
    "rho": ("rho", 0.5, None),
    "jest_learner": ("jest_learner", 0.8, None),
    "jest_t5": ("jest", 0.8, None),
}
PAIRED_AGAINST = "activeclip"  # the arm every other scored arm is paired with, seed by seed, in the tables
ON_REQUEST = ("rho", "jest_learner", "jest_t5")  # run only when named in --arms (not by default)
TEMPERATURE = {"jest_t5": 5.0}  # an arm's own sampling temperature (others: selection.temperature)
# The actor (online proxy and reference): dual_cnn_tiny (a CNN on 2x-pooled images, bag-of-words
# text, about 1/10 of the learner's forward FLOPs), scoring each candidate by its contrastive loss
# within the super-batch; the reference trained 30 epochs on the 10k curated pairs. SigLIP's initial
# bias -5 (about -log b; -10 suits batches of thousands and stalls b = 128 for ~400 steps).
BENCH_OVERRIDES = ["--task=clip", "--pairs.logit_bias_init=-5", *[f"--pairs.{k}={v}" for k, v in NOISE.items()],
                   "--pairs.renderings=4", "--data.pool_size=50000", "--data.test_size=10000", "--train.steps=2000",
                   "--train.eval_every=200",
                   "--train.schedule=cosine", "--train.warmup=100", "--pairs.n_chunks=16", "--progress=false",
                   "--pairs.proxy=dual_cnn_tiny", "--pairs.actor_loss=contrastive", "--reference.epochs=30",
                   "--train.threads=1"]
# The second dataset (`--dataset=digits`): the same noise, models, schedule and budgets on pairs rendered
# from scikit-learn's 8x8 digits: 359 test digits, a 300-digit curated reference trained 1170 epochs
# (2 full batches of 128 an epoch: 2340 steps, the steps of the garments' reference, 30 epochs of 78),
# the other 1138 digits rendered 64 times each in the pool (72.8k pairs) on a 24-pixel canvas (the
# digits are 8x8). (A first run trained it 200 epochs, 400 steps, by a miscount: docs/image-text-benchmark.md point 8.)
DATASETS = {
    "fashion_mnist": [],
    "digits": ["--data.source=digits", "--data.reference_size=300", "--data.pool_size=0", "--pairs.image_size=24",
               "--pairs.renderings=64", "--reference.epochs=1170"],
}
SMOKE = ["--data.pool_size=400", "--data.reference_size=200", "--data.test_size=100", "--train.steps=8",
         "--train.batch_size=16", "--train.eval_every=2", "--train.warmup=2", "--pairs.retrieval_size=50",
         "--reference.epochs=1"]
EXTRA = ("r1_i2t", "r1_t2i", "attr_class", "attr_colour", "attr_size", "attr_position")
# each noise kind's share of the selected batches (the pool's shares are NOISE's)
BY_KIND = tuple(f"{k}_selected" for k in ("swapped", "uninformative", "wrong_attribute", "duplicate"))
KEYS = ("updates_saved", "compute_saved", "compute_saved_amortised", "wallclock_saved", "final_zeroshot",
        *(f"final_{k}" for k in EXTRA), "corrupted_selected", *BY_KIND, "proxy_flops_ratio", "selection_time_share")


def arm_run_config(cfg: C.RunConfig, name: str, out: str) -> C.RunConfig:
    """The run config of bench arm `name` (see `ARMS`), writing into `out/name`."""
    arm, f, window = ARMS[name]
    c = arm_config(cfg, arm, out)
    sel = dataclasses.replace(c.selection, filter_ratio=f or c.selection.filter_ratio,
                              temperature=TEMPERATURE.get(name, c.selection.temperature))
    if window is not None:
        steps = cfg.train.steps
        sel = dataclasses.replace(sel, start=int(window[0] * steps) + 1, end=0 if window[1] >= 1 else int(window[1] * steps))
    return dataclasses.replace(c, selection=sel, name=name, out=os.path.join(out, name))


def clean_only(splits: PairSplits) -> PairSplits:
    """The oracle's data: the pool's clean pairs only (what a perfect filter would keep)."""
    return dataclasses.replace(splits, pool=splits.pool.subset(splits.pool.corruption == CLEAN))


def budget_steps(fractions: str, full: int) -> list[int]:
    """The step counts of `--budgets` (fractions of train.steps; the full budget always included), ascending."""
    try:
        fr = {float(x) for x in fractions.split(",") if x} | {1.0}
    except ValueError:
        raise SystemExit(f"--budgets: a comma list of fractions of train.steps in (0, 1], e.g. 0.3,0.5,1; got {fractions!r}")
    if not all(0 < f <= 1 for f in fr):
        raise SystemExit(f"--budgets: every fraction must be in (0, 1]; got {sorted(fr)}")
    steps = sorted({max(1, round(f * full)) for f in fr})
    return steps


def run_name(arm: str, steps: int, full: int) -> str:
    """The run folder of `arm` at a budget of `steps` (the full budget's is the arm's name)."""
    return arm if steps == full else f"{arm}@{steps}"


def seed_rows(out: str, seed: int, arms: list[str], budgets: list[int], full: int, amortise: int) -> list[dict]:
    """One row per arm of a seed: mid-schedule savings of its full-budget run, and the fully decayed
    budgets' savings from those of its budget runs that finished."""
    rows = arm_rows(out, arms, amortise, extra_keys=EXTRA, selected_keys=BY_KIND)
    uniform = read_jsonl(os.path.join(out, "uniform", "metrics.jsonl"))
    for r in rows:
        runs = [read_jsonl(os.path.join(out, run, "metrics.jsonl")) for run in (run_name(r["arm"], b, full) for b in budgets)
                if os.path.isfile(os.path.join(out, run, "summary.json"))]
        d = analysis.budget_savings(uniform, runs, amortise)
        r.update(budget_flops(runs))
        r.update({"filtering": ARMS[r["arm"]][1], "seed": seed, "final_zeroshot": r["final_accuracy"],
                  "end_zeroshot": d["ends"][full], "needed_steps": d["needed_steps"],
                  "censored": d["censored"] and r["arm"] != "uniform",  # uniform needs its full budget by definition
                  **{f"end_{b}": d["ends"].get(b) for b in budgets},
                  **{f"decayed_{k}": d[k] for k in ("updates_saved", "compute_saved", "compute_saved_amortised",
                                                     "wallclock_saved")}})
    return rows


def budget_flops(runs: list[list[dict]]) -> dict:
    """The FLOP ledger at the end of each budget run (`flops_<steps>`: everything counted, the
    reference's one-off training and caching included) and that one-off part (`flops_reference`),
    so bench/activeclip_longer.py can set an arm's compute against uniform trained longer."""
    lasts = [rows[-1] for rows in runs if rows and "flops_total" in rows[-1]]
    return {**{f"flops_{int(r['step'])}": r["flops_total"] for r in lasts},
            **({"flops_reference": lasts[-1].get("flops_reference", 0.0)} if lasts else {})}


def reach_steps(rows: list[dict], m: dict) -> str:
    """Per seed: the step the arm reached the target at, over the step uniform did ("-": never)."""
    own = sorted((r for r in rows if r["arm"] == m["arm"]), key=lambda r: r["seed"])
    return ", ".join(f"{r['reached_at_step'] or '-'}/{r['uniform_reached_at_step']}" for r in own)


def decayed_cell(rows: list[dict], m: dict) -> str:
    """Per seed: the fully decayed budgets' updates saved ("≥": the smallest budget already reached the target)."""
    own = sorted((r for r in rows if r["arm"] == m["arm"]), key=lambda r: r["seed"])
    return ", ".join(("≥" if r["censored"] else "") + pct(r["decayed_updates_saved"]) for r in own)


def paired_lines(rows: list[dict], against: str = PAIRED_AGAINST) -> list[str]:
    """Each scored arm against `against`, seed by seed: updates saved on the fully decayed budgets (a
    missed seed behind any number; a censored one, whose smallest budget already reached, at its lower
    bound and its difference marked "≥" or "≤") and zero-shot at the full budget's end. Empty when
    `against` did not run or nothing else was scored; an arm with no seed in common says so."""
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a not in ("uniform", against)]
    if against not in {r["arm"] for r in rows} or not arms:
        return []

    def by_seed(arm: str, key: str) -> dict:
        return {r["seed"]: r[key] for r in rows if r["arm"] == arm}

    def signed(x: float) -> str:
        return f"{round(x, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0"

    def bound(arm: str, seed: int) -> str:  # a censored saving is a lower bound: of a difference, one side of it
        cut = {r["arm"] for r in rows if r["seed"] == seed and r.get("censored")}
        return "" if (arm in cut) == (against in cut) else ("≥" if arm in cut else "≤")

    def cell(arm: str, key: str, scale: float, unit: str) -> str:
        p = analysis.paired(by_seed(arm, key), by_seed(against, key))
        marks = {s: bound(arm, s) if key == "decayed_updates_saved" else "" for s in p["seeds"]}
        diffs = ", ".join("-" if d is None else marks[s] + signed(d * scale) for s, d in p["diffs"].items())
        mean = "-" if p["mean"] is None else signed(p["mean"] * scale) + (
            f" ± {p['sd'] * scale:.1f}" if p["sd"] is not None else "") + f" {unit}" + (
            f" ({p['known']} of {len(p['seeds'])} seeds)" if p["known"] < len(p["seeds"]) else "")
        return (f"{diffs} | {mean} | {p['ahead']} / {p['behind']}" + (f" / {p['level']} level" if p["level"] else "")
                + f" of {len(p['seeds'])} | {p['sign_p']:.2f}")

    lines = ["", f"**Paired by seed, against {against}** (each arm minus {against} on the same seed; \"-\": one of "
                 "the two never reached the target on that seed, counted behind any number and left out of the mean; "
                 "\"≥\" / \"≤\": one side's smallest budget already reached, so the difference is a bound; ahead / "
                 "behind: seeds on which the arm is above or below; p: the exact two-sided sign test over those seeds."
                 " At 3 seeds even 3 of 3 is p = 0.25, at 5 seeds 5 of 5 is 0.06: medians this close are not a "
                 "ranking):", "",
             "| arm | updates saved, decayed (per seed) | mean ± sd | ahead / behind | p | zero-shot at the full "
             "budget's end (per seed) | mean ± sd | ahead / behind | p |", "|---|---|---|---|---|---|---|---|---|"]
    ours = set(by_seed(against, "arm"))
    for arm in arms:
        if not ours & set(by_seed(arm, "arm")):
            lines.append(f"| {arm} | no seed in common with {against} | | | | | | | |")
            continue
        lines.append(f"| {arm} | {cell(arm, 'decayed_updates_saved', 100, 'pts')} | "
                     f"{cell(arm, 'end_zeroshot', 100, 'pts')} |")
    return lines


def markdown(med: list[dict], rows: list[dict], budgets: list[int], command: str, settings: str, where: str = "") -> str:
    bounds = [b for b in ("oracle", "oracle_filter") if any(m["arm"] == b for m in med)]  # clean-only, in-loop
    share_of = f"share of {' / '.join(bounds) or 'the oracle'}'s"
    lines = [f"Command: `{command}`  ", f"Settings: {settings}  ", f"Machine: {where or machine()}", "",
             "**Fully decayed budgets** (each arm trained at " + ", ".join(map(str, budgets)) + " steps, every run's "
             "schedule decayed to zero at its end; the target is uniform's zero-shot at the end of the full budget):", "",
             "| arm | filtering | seeds | zero-shot at the end of " + " / ".join(map(str, budgets)) + " steps | "
             "updates saved (per seed) | updates saved | " + share_of + " | compute saved | compute saved "
             "(amortised x10) | wall-clock saved |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    oracle = {(b, k): next(m[k] for m in med if m["arm"] == b) for b in bounds
              for k in ("updates_saved", "decayed_updates_saved")}

    def of(m: dict, key: str) -> str:  # the arm's saving as a share of each bound's
        if m["arm"] in ("uniform", *bounds) or m[key] is None:
            return ""
        return " / ".join(f"{m[key] / oracle[b, key]:.0%}" if oracle[b, key] else "-" for b in bounds)

    def low(m: dict) -> str:  # a median over lower bounds is a lower bound
        return "≥" if m["decayed_updates_saved"] is not None and any(
            r["censored"] for r in rows if r["arm"] == m["arm"]) else ""

    for m in med:
        ends = " / ".join(f"{m[f'end_{b}']:.4f}" if m.get(f"end_{b}") is not None else "-" for b in budgets)
        lines.append(f"| {m['arm']} | {m['filtering']} | {m['seeds']} | {ends} | {decayed_cell(rows, m)} | "
                     f"{low(m)}{pct(m['decayed_updates_saved'])} | {of(m, 'decayed_updates_saved')} | "
                     f"{low(m)}{pct(m['decayed_compute_saved'])} | {low(m)}{pct(m['decayed_compute_saved_amortised'])} | "
                     f"{low(m)}{pct(m['decayed_wallclock_saved'])} |")
    lines += ["", f"**Mid-schedule** (the full-budget runs only: an arm reaches uniform's final zero-shot, the mean of its "
                  "last three evaluations, at its first evaluation whose three-evaluation mean is at or above it; "
                  "its learning rate is not yet decayed there, which here leans high: see the decayed table):", "",
              "| arm | reached at / uniform at (per seed) | updates saved | " + share_of + " | compute saved | "
              "compute saved (amortised x10) | wall-clock saved | zero-shot | R@1 i2t | R@1 t2i | class / colour / size / "
              "position (in caption) | corrupted selected | swapped / junk / wrong attribute / duplicate selected |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in med:
        attrs = " / ".join(share(m[f"final_attr_{k}"]) if m.get(f"final_attr_{k}") is not None else "-"
                           for k in ("class", "colour", "size", "position"))
        by_kind = " / ".join(share(m[k]) if m.get(k) is not None else "-" for k in BY_KIND)
        lines.append(f"| {m['arm']} | {reach_steps(rows, m)} | {pct(m['updates_saved'])} | {of(m, 'updates_saved')} | "
                     f"{pct(m['compute_saved'])} | {pct(m['compute_saved_amortised'])} | {pct(m['wallclock_saved'])} | "
                     f"{m['final_zeroshot']:.4f} | {share(m['final_r1_i2t'])} | {share(m['final_r1_t2i'])} | {attrs} | "
                     f"{share(m['corrupted_selected'])} | {by_kind} |")
    lines += paired_lines(rows)
    uni = [r for r in rows if r["arm"] == "uniform"]
    ratios = sorted({round(r["proxy_flops_ratio"], 1) for r in rows if r.get("proxy_flops_ratio")})

    def spread(key: str) -> str:
        v = sorted(r[key] for r in uni)
        return f"{', '.join(f'{x:.4f}' for x in v)} (spread {max(v) - min(v):.4f})"

    small = [(m["arm"], ", ".join(f"seed {r['seed']} {r['reference_accuracy']:.3f} / " + (
                                      f"{r['proxy_accuracy']:.3f}" if r.get("proxy_accuracy") is not None else "-")
                                  for r in sorted(rows, key=lambda r: r["seed"]) if r["arm"] == m["arm"]
                                  and r.get("reference_accuracy") is not None)) for m in med]
    lines += ["", f"Uniform over seeds: zero-shot at the end {spread('end_zeroshot')}; mean of the last three "
                  f"evaluations {spread('final_zeroshot')}." if uni else "",
              "The small models' own zero-shot at the end of each arm's full-budget run, reference / online proxy "
              "(per seed): " + "; ".join(f"{a} {v}" for a, v in small if v) + "." if any(v for _, v in small) else "",
              f"Learner / proxy forward FLOPs per example: {', '.join(map(str, ratios)) or 'n/a'}. Medians over seeds "
              "(an arm that missed the target on a seed counts as the worst). Decayed budgets: an arm needs the budget "
              "where its end-of-run zero-shot crosses the target, linear between the two budgets that bracket it; its "
              "FLOPs and seconds are interpolated the same way; \"≥\": its smallest budget already ended above the "
              "target (a lower bound; a median over a seed's lower bound is one too); \"-\": that budget did not run on"
              " every seed (a larger one already ended below the target). Compute counts the learner, proxy scoring and"
              " training, and the reference's training and caching pass in full (amortised: the reference's one-off "
              "costs over 10 runs); the oracle's filter is free by definition. Attribute accuracies: the image's "
              "caption re-rendered with each value of one attribute, at the last evaluation, on the retrieval pairs. "
              "Updates and compute are deterministic given the seed; wall-clock is "
              "not (shared 2-core machine, one thread per process)."]
    return "\n".join(lines) + "\n"


def write(rows: list[dict], arms: list[str], budgets: list[int], results: str, name: str, meta: dict) -> str:
    keys = (*KEYS, "end_zeroshot", *(f"end_{b}" for b in budgets),
            *(f"decayed_{k}" for k in ("updates_saved", "compute_saved", "compute_saved_amortised", "wallclock_saved")))
    med = medians(rows, ("arm", "filtering"), keys, tuple(arms))
    os.makedirs(results, exist_ok=True)
    md = markdown(med, rows, budgets, meta["command"], meta["settings"], meta["machine"])
    atomic_write_text(os.path.join(results, f"{name}.json"),
                      json.dumps({"rows": rows, "medians": med, "budgets": budgets, **meta}, indent=2) + "\n")
    atomic_write_text(os.path.join(results, f"{name}.md"), md)
    return md


def merge_ends(parts: list[dict], arms: list[str], results: str, name: str) -> int:
    """Combine --no-uniform results files of disjoint seeds: the arms' end accuracies per seed."""
    rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: (arms.index(r["arm"]), r["seed"]))
    keys = [(r["arm"], r["seed"]) for r in rows]
    if len(keys) != len(set(keys)):
        raise SystemExit(f"an arm and seed appear in more than one results file: {sorted(keys)}")
    seeds = sorted({r["seed"] for r in rows})
    budgets = parts[0]["budgets"]
    meta = {"arms": arms, "command": " & ".join(p["command"] for p in parts) + " (in parallel), then --merge",
            "machine": parts[0]["machine"], "settings": parts[0]["settings"], "budgets": budgets,
            "seconds_per_process": [p["seconds"] for p in parts], "rows": rows}
    md = [f"Command: `{meta['command']}`  ", f"Settings: {meta['settings']}  ", f"Machine: {meta['machine']}", "",
          f"Arms trained alone (`--no-uniform`): zero-shot at the end of {budgets[-1]} steps (R@1 image-to-text / "
          "text-to-image); their savings come from `bench/activeclip_longer.py`, against uniform trained as long.", "",
          "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | median | corrupted / swapped selected (median) "
          "| pool trained on / class balance (median) |",
          "|---|" + "---|" * (len(seeds) + 3)]

    def kept(own: dict, key: str, fmt=share) -> str:  # rows written before a measure was recorded have none
        got = [r[key] for r in own.values() if r.get(key) is not None]
        return fmt(analysis.median(got)) if len(got) == len(own) else "-"

    for arm in arms:
        own = {r["seed"]: r for r in rows if r["arm"] == arm}
        md.append(f"| {arm} | " + " | ".join(
            f"{own[s]['end_zeroshot']:.4f} (R@1 {share(own[s]['final_r1_i2t'])} / {share(own[s]['final_r1_t2i'])})"
            if s in own else "-" for s in seeds)
            + f" | {analysis.median([r['end_zeroshot'] for r in own.values()]):.4f} | "
            f"{kept(own, 'corrupted_selected')} / {kept(own, 'swapped_selected')} | "
            f"{kept(own, 'distinct_trained')} / {kept(own, 'class_balance_selected', lambda x: f'{x:.3f}')} |")
    os.makedirs(results, exist_ok=True)
    atomic_write_text(os.path.join(results, f"{name}.json"), json.dumps(meta, indent=2) + "\n")
    atomic_write_text(os.path.join(results, f"{name}.md"), "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def merge(paths: list[str], results: str, name: str) -> int:
    """Combine results files of disjoint seeds run as separate processes into one table."""
    parts = []
    for path in paths:
        with open(path) as f:
            parts.append(json.load(f))
    if len({p["settings"] for p in parts}) != 1:
        raise SystemExit("the results files were run with different settings: " + "; ".join(p["settings"] for p in parts))
    arms = list(dict.fromkeys(a for p in parts for a in p["arms"]))
    alone = [not any(r["arm"] == "uniform" for r in p["rows"]) for p in parts]  # --no-uniform runs: ends only
    if any(alone) and not all(alone):
        raise SystemExit("--merge: some files are --no-uniform runs (arms alone, no target) and some are not; merge "
                         "each kind on its own and join them with bench/activeclip_longer.py")
    if all(alone):
        return merge_ends(parts, arms, results, name)
    rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: (r["seed"], arms.index(r["arm"])))
    seeds = [r["seed"] for r in rows if r["arm"] == "uniform"]
    if len(seeds) != len(set(seeds)):
        raise SystemExit(f"seeds overlap between the results files: {sorted(seeds)}")
    meta = {"arms": arms, "command": " & ".join(p["command"] for p in parts) + " (in parallel), then --merge",
            "machine": parts[0]["machine"], "settings": parts[0]["settings"],
            "seconds": max(p["seconds"] for p in parts), "seconds_per_process": [p["seconds"] for p in parts]}
    print(write(rows, arms, parts[0]["budgets"], results, name, meta))
    return 0


def collect(outs: list[str], seeds: list[int], arms: list[str], budgets: list[int], a: argparse.Namespace, command: str,
            settings: str) -> int:
    """Rows of the finished arms (those whose full-budget run has a summary.json, with whichever of
    their smaller budgets finished) of interrupted runs, one --out per seed (in `seeds` order), into
    --results: a table whose arms may hold fewer seeds than others."""
    rows = []
    for out, seed in zip(outs, seeds):
        folder = os.path.join(out, f"seed{seed}")
        done = [x for x in arms if os.path.isfile(os.path.join(folder, x, "summary.json"))]
        if "uniform" not in done:
            raise SystemExit(f"{folder}: the uniform arm has not finished; nothing to compare against")
        rows += seed_rows(folder, seed, done, budgets, budgets[-1], a.amortise)
    meta = {"arms": arms, "command": command + " (collected from interrupted runs)", "machine": machine(),
            "settings": settings, "seconds": None}
    print(write(rows, arms, budgets, a.results, a.name, meta))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", default=",".join(a for a in ARMS if a not in ON_REQUEST),
                   help=f"comma list from {', '.join(ARMS)} (uniform is always run; {', '.join(ON_REQUEST)} only when named)")
    p.add_argument("--smoke", action="store_true", help="tiny settings (seconds), for the tests")
    p.add_argument("--dataset", default="fashion_mnist", choices=list(DATASETS),
                   help="the built-in pairs: Fashion-MNIST garments (the bench) or scikit-learn's digits (the second "
                        "dataset: `DATASETS`); --section.field overrides apply after it")
    p.add_argument("--amortise", type=int, default=10)
    p.add_argument("--budgets", default="0.3,0.5,0.75,1",
                   help="fractions of train.steps each arm also trains at, every run's schedule decayed to zero "
                        "at its end (1 is always run)")
    p.add_argument("--out", default="runs/bench-activeclip")
    p.add_argument("--results", default="bench/results")
    p.add_argument("--name", default="activeclip", help="results file name (without .json / .md)")
    p.add_argument("--merge", default="", help="comma list of results JSON files of disjoint seeds (run in parallel): "
                                               "write their rows' medians into --results; trains nothing")
    p.add_argument("--reuse", action="store_true", help="keep the arms that finished in --out (an interrupted bench); "
                                                        "run the others again from step 1")
    p.add_argument("--collect", default="", help="comma list of --out folders of interrupted runs: the rows of the "
                                                 "arms that finished there (uniform must have), into --results")
    p.add_argument("--no-uniform", action="store_true",
                   help="train the arms alone at every budget (no uniform target, no savings): their end accuracies "
                        "into --results/--name.json for bench/activeclip_longer.py --longer, beside a uniform run of "
                        "the same settings and budget from another file")
    a, extra = p.parse_known_args()
    if a.merge:
        return merge(a.merge.split(","), a.results, a.name)
    arms = ["uniform"] + [x for x in dict.fromkeys(a.arms.split(",")) if x and x != "uniform"]
    unknown = [x for x in arms if x not in ARMS]
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; choose from {', '.join(ARMS)}")
    if a.no_uniform and len(arms) == 1:
        raise SystemExit("--no-uniform trains the arms alone: name one besides uniform in --arms, e.g. --arms=oracle")
    base = C.apply_overrides(C.RunConfig(), BENCH_OVERRIDES + DATASETS[a.dataset] + (SMOKE if a.smoke else []) + extra)
    command = "python bench/activeclip.py " + " ".join(sys.argv[1:])
    budgets = budget_steps(a.budgets, base.train.steps)
    t, pr, d = base.train, base.pairs, base.data
    pool, n_test = d.pool_size or 50000, min(d.test_size or 10000, 10000)  # Fashion-MNIST's 60k - 10k, and 10k test
    if d.source != "fashion_mnist":  # digits: sizes follow from test_fraction and reference_size
        train, test = load_source(d.source, test_fraction=d.test_fraction)
        pool, n_test = d.pool_size or len(train) - d.reference_size, min(d.test_size or len(test), len(test))
    if d.val_size:  # tuning: every figure is on held-out training images; the test split is never evaluated
        pool, n_test = d.pool_size or pool - d.val_size, min(d.test_size or d.val_size, d.val_size)
    renders = (f" {'garments' if d.source == 'fashion_mnist' else 'images'} x {pr.renderings} renderings = "
               f"{pool * pr.renderings} pairs" if pr.renderings > 1 else "")
    settings = ("" if d.source == "fashion_mnist" else f"data {d.source} on a {pr.image_size}-pixel canvas; ") + (
                f"noise {', '.join(f'{k} {getattr(pr, k)}' for k in NOISE)}; learner {pr.learner}, proxy/reference "
                f"{pr.proxy}, {pr.loss} loss, actor loss {pr.actor_loss}, b={t.batch_size}, JEST in {pr.n_chunks} chunks, "
                f"{t.steps} steps, lr {t.lr:g} ({t.schedule} to {t.final_lr_fraction:g}, warm-up {t.warmup}), initial logit "
                f"scale/bias {pr.logit_scale_init:g}/{pr.logit_bias_init:g}, pool {pool}{renders}, "
                f"eval every "
                f"{t.eval_every} on {n_test} {'VALIDATION (data.val_size; not test)' if d.val_size else 'test'} images, reference {base.reference.epochs} epochs on "
                f"{d.reference_size} curated pairs, torch threads {t.threads or 'default'}; budgets "
                f"{', '.join(map(str, budgets))} steps")
    if a.collect:
        return collect(a.collect.split(","), [int(s) for s in a.seeds.split(",")], arms, budgets, a, command, settings)
    rows: list[dict] = []
    t0 = time.time()
    for seed in (int(s) for s in a.seeds.split(",")):
        cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, seed=seed),
                                  train=dataclasses.replace(base.train, seed=seed))
        out = os.path.join(a.out, f"seed{seed}")
        if os.path.exists(out) and not a.reuse:
            raise SystemExit(f"{out} exists; remove it, pass --out=NEW_FOLDER, or --reuse to keep its finished arms")
        cfg = dataclasses.replace(cfg, reference=dataclasses.replace(cfg.reference, dir=os.path.join(out, "reference")))
        data = build_pairs(cfg)

        def train(name: str, steps: int) -> list[dict]:
            run = run_name(name, steps, budgets[-1])
            if a.reuse and os.path.isfile(os.path.join(out, run, "summary.json")):
                print(f"[{time.time() - t0:6.0f}s] seed={seed} {run} kept (--reuse)", flush=True)
            else:
                shutil.rmtree(os.path.join(out, run), ignore_errors=True)  # a run cut short starts again
                c = arm_run_config(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps)), name, out)
                run_clip(dataclasses.replace(c, name=run, out=os.path.join(out, run)),
                         (clean_only(data[0]), data[1]) if name == "oracle" else data)
                print(f"[{time.time() - t0:6.0f}s] seed={seed} {run} done", flush=True)
            return read_jsonl(os.path.join(out, run, "metrics.jsonl"))

        if a.no_uniform:  # the arms' ends alone, for bench/activeclip_longer.py: no target, no savings
            for name in arms[1:]:
                runs = {b: train(name, b) for b in reversed(budgets)}
                ends = {b: analysis.end_accuracy(m) for b, m in runs.items()}
                last = [r for r in read_jsonl(os.path.join(out, name, "metrics.jsonl")) if "r1_i2t" in r][-1:]
                full = runs[budgets[-1]]  # what the full-budget run selected: means over its steps
                rows.append({"arm": name, "seed": seed, "filtering": ARMS[name][1], "end_zeroshot": ends[budgets[-1]],
                             **{f"end_{b}": e for b, e in ends.items()}, **budget_flops(list(runs.values())),
                             **{f"final_{k}": last[0][k] if last else None for k in ("r1_i2t", "r1_t2i")},
                             **{k: analysis.corrupted_selected(full, k) for k in ("corrupted_selected", *BY_KIND)},
                             # the share of the pool trained on by the end, and the batches' class balance (mean)
                             "distinct_trained": full[-1].get("distinct_trained"),
                             "class_balance_selected": analysis.run_mean(full, "class_balance_selected")})
            meta = {"arms": arms[1:], "command": command, "machine": machine(), "settings": settings,
                    "seconds": time.time() - t0, "budgets": budgets, "rows": rows}
            os.makedirs(a.results, exist_ok=True)
            atomic_write_text(os.path.join(a.results, f"{a.name}.json"), json.dumps(meta, indent=2) + "\n")
            print(json.dumps(rows, indent=1), flush=True)
            continue
        # Every arm's full budget first (the target and the mid-schedule table), then each arm's smaller
        # budgets, largest first, while the last one still ended at or above the target: the budget the
        # arm needs lies between the smallest that reached and the largest that did not, so smaller
        # ones add nothing (uniform's own end is the target: it needs no smaller budget).
        target = analysis.end_accuracy(train("uniform", budgets[-1]))
        ends = {name: analysis.end_accuracy(train(name, budgets[-1])) for name in arms[1:]}
        for name, end in ends.items():
            for steps in reversed(budgets[:-1]):
                if end < target:
                    break
                end = analysis.end_accuracy(train(name, steps))
        rows += seed_rows(out, seed, arms, budgets, budgets[-1], a.amortise)
        meta = {"arms": arms, "command": command, "machine": machine(), "settings": settings, "seconds": time.time() - t0}
        md = write(rows, arms, budgets, a.results, a.name, meta)
    if not a.no_uniform:
        print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
