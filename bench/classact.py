"""ClassAct benchmark: uniform vs learnability selection on Fashion-MNIST under label noise.

    python bench/classact.py            # full protocol: eta 0/0.2/0.4, 3 seeds, 5 arms (~1 h, 2 cores)
    python bench/classact.py --quick    # one seed, eta 0.4, uniform + learnability (~5 min)
    python bench/classact.py --name=classact-digits --data.source=digits --data.reference_size=300 --data.test_size=0
                                        # the second dataset: scikit-learn's digits (~10 min)

Every (eta, seed) is one `compare`: the arms share data, seeds, models and evaluation schedule and
run back to back in one process (their order rotates with the seed, so no arm always runs first on
a warm or cold machine). Writes bench/results/classact[-quick].json (one row per eta, arm, seed) and
a markdown table of medians over seeds (bench/results/classact[-quick].md). The target and savings
are defined once in `learnability.analysis`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from common import arm_rows, machine, medians, pct, run_main

from learnability import config as C
from learnability.compare import compare
from learnability.io import atomic_write_text

ALL_ARMS = ("uniform", "learnability", "hard_learner", "easy_reference", "rho")
# Settings of the protocol (shared/DESIGN.md): learner >= 10x the proxy's forward FLOPs, f = 0.5.
BENCH_OVERRIDES = ["--train.steps=2000", "--train.eval_every=100", "--data.test_size=4000", "--progress=false"]


def rows_for(out: str, eta: float, seed: int, arms: list[str], amortise: int) -> list[dict]:
    return [{"eta": eta, "seed": seed, **r} for r in arm_rows(out, arms, amortise)]


KEYS = ("updates_saved", "compute_saved", "compute_saved_amortised", "wallclock_saved", "final_accuracy",
        "corrupted_selected", "selection_time_share")


def markdown(med: list[dict], command: str, settings: str) -> str:
    lines = [f"Command: `{command}`  ", f"Settings: {settings}  ", f"Machine: {machine()}", "",
             "| eta | arm | seeds | updates saved | compute saved | compute saved (amortised x10) | wall-clock saved | final accuracy | corrupted selected | selection machinery share of step time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in med:
        lines.append(f"| {m['eta']} | {m['arm']} | {m['seeds']} | {pct(m['updates_saved'])} | {pct(m['compute_saved'])} | "
                     f"{pct(m['compute_saved_amortised'])} | {pct(m['wallclock_saved'])} | {m['final_accuracy']:.4f} | "
                     f"{100 * m['corrupted_selected']:.1f}% | {100 * m['selection_time_share']:.2f}% |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one seed, eta 0.4, uniform and learnability")
    p.add_argument("--etas", default="0.4,0.2,0")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", default=",".join(ALL_ARMS))
    p.add_argument("--amortise", type=int, default=10)
    p.add_argument("--out", default="runs/bench-classact", help="where the runs go")
    p.add_argument("--results", default="bench/results", help="where the JSON and markdown go")
    p.add_argument("--name", default="", help="results file name (default classact, or classact-quick with --quick)")
    p.add_argument("overrides", nargs="*", help="extra --section.field=value overrides for every run")
    a, extra = p.parse_known_args()
    etas = [0.4] if a.quick else [float(e) for e in a.etas.split(",")]
    seeds = [0] if a.quick else [int(s) for s in a.seeds.split(",")]
    arms = ["uniform", "learnability"] if a.quick else a.arms.split(",")
    overrides = BENCH_OVERRIDES + list(a.overrides) + extra
    base = C.apply_overrides(C.RunConfig(), overrides)
    name = a.name or ("classact-quick" if a.quick else "classact")
    command = "python bench/classact.py " + " ".join(sys.argv[1:])
    rows: list[dict] = []
    t0 = time.time()
    for seed in seeds:
        for eta in etas:
            these = arms if eta > 0 else [x for x in arms if x in ("uniform", "learnability")]
            k = seeds.index(seed) % len(these)
            order = these[k:] + these[:k]  # rotate which arm runs first
            cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, label_noise=eta, seed=seed),
                                      train=dataclasses.replace(base.train, seed=seed))
            out = os.path.join(a.out, f"eta{eta}-seed{seed}")
            if os.path.exists(out):
                raise SystemExit(f"{out} exists; remove it or pass --out=NEW_FOLDER")
            compare(cfg, order, out, a.amortise)
            rows += rows_for(out, eta, seed, these, a.amortise)
            print(f"[{time.time() - t0:6.0f}s] eta={eta} seed={seed} done", flush=True)
            med = medians(rows, ("eta", "arm"), KEYS, ALL_ARMS)
            settings = (f"data {base.data.source} ({base.data.reference_size} curated for the reference), learner {base.model.learner}, proxy/reference {base.model.proxy}, b={base.train.batch_size}, "
                        f"f={base.selection.filter_ratio}, {base.selection.sampler} tau={base.selection.temperature}, "
                        f"{base.train.steps} steps, eval every {base.train.eval_every} on {base.data.test_size or 'all'} test images")
            os.makedirs(a.results, exist_ok=True)
            atomic_write_text(os.path.join(a.results, f"{name}.json"), json.dumps(
                {"rows": rows, "medians": med, "command": command, "machine": machine(), "settings": settings,
                 "seconds": time.time() - t0}, indent=2) + "\n")
            atomic_write_text(os.path.join(a.results, f"{name}.md"), markdown(med, command, settings))
    print(markdown(medians(rows, ("eta", "arm"), KEYS, ALL_ARMS), command, settings))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
