"""The ActiveCLIP bench's noise bound: how many updates would a perfect caption filter save?

    python bench/activeclip_oracle.py --seeds=0,1,2 --bench-out=runs/bench-activeclip   # ~13 min a seed on 2 cores
    python bench/activeclip_oracle.py --seeds=1 --results=R1 ...  # seeds in parallel, then --merge=R0/...,R1/...

For each seed this trains the uniform arm of `bench/activeclip.py` (same settings, same seed, same
images) on a pool whose captions are all true (`--pairs.swapped=0`), and measures it the way the
bench measures its arms: the first evaluation whose three-evaluation mean reaches the noisy uniform
arm's final zero-shot accuracy (read from `--bench-out`, trained here when absent). A filter that
removed every swapped caption would train on the 70% of the pool that is clean; this run trains on
a whole pool of true captions, so its saving bounds what caption filtering alone can save.
Writes bench/results/activeclip-oracle.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

from activeclip import BENCH_OVERRIDES
from common import machine, pct

from learnability import analysis
from learnability import config as C
from learnability.clip_loop import run_clip
from learnability.compare import arm_config
from learnability.io import atomic_write_text, read_jsonl
from learnability.pairs.build import build_pairs


def uniform_rows(base: C.RunConfig, seed: int, out: str) -> list[dict]:
    """The metrics of the bench's uniform arm for `seed` under `base` (trained into `out` when absent)."""
    path = os.path.join(out, "uniform", "metrics.jsonl")
    if not os.path.exists(path):
        cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, seed=seed),
                                  train=dataclasses.replace(base.train, seed=seed))
        run_clip(arm_config(cfg, "uniform", out), build_pairs(cfg))
    return read_jsonl(path)


def markdown(rows: list[dict], command: str, note: str = "") -> str:
    lines = [f"Command: `{command}`  ", f"Machine: {machine()}  ", *([f"Settings: {note}"] if note else []), "",
             "| seed | noisy uniform's final zero-shot (the target) | clean-pool uniform's final | reached at / noisy uniform at | updates saved |",
             "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["seed"]):
        lines.append(f"| {r['seed']} | {r['target']:.4f} | {r['final_zeroshot']:.4f} | {r['reached_at_step'] or '-'}/"
                     f"{r['uniform_reached_at_step']} | {pct(r['updates_saved']) if r['updates_saved'] is not None else 'not reached'} |")
    saved = [r["updates_saved"] for r in rows if r["updates_saved"] is not None]
    lines += ["", f"Median updates saved by a perfect caption filter: "
                  f"{pct(statistics.median(saved)) if len(saved) == len(rows) else 'not reached on every seed'} "
                  f"(the bench's target for ActiveCLIP is 50%). The settings of `bench/activeclip.py` (and any "
                  f"overrides in the command or settings line); the clean pool has the same images, ids and seeds, every "
                  f"caption the noisy pool's true one."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--bench-out", default="runs/bench-activeclip", help="bench/activeclip.py's --out (its uniform arms)")
    p.add_argument("--out", default="runs/bench-activeclip-oracle")
    p.add_argument("--results", default="bench/results")
    p.add_argument("--merge", default="", help="comma list of results JSON files of disjoint seeds")
    p.add_argument("--name", default="activeclip-oracle", help="results file name (without .json / .md)")
    p.add_argument("--note", default="", help="a settings line for the table (e.g. the overrides the seeds ran with)")
    a, extra = p.parse_known_args()
    command = "python bench/activeclip_oracle.py " + " ".join(sys.argv[1:])
    if a.merge:
        rows = sorted((r for f in a.merge.split(",") for r in json.load(open(f))["rows"]), key=lambda r: r["seed"])
    else:
        base = C.apply_overrides(C.RunConfig(), BENCH_OVERRIDES + extra)
        clean = C.apply_overrides(base, ["--pairs.swapped=0"])
        rows, t0 = [], time.time()
        for seed in (int(s) for s in a.seeds.split(",")):
            noisy = uniform_rows(base, seed, os.path.join(a.bench_out, f"seed{seed}"))
            out = os.path.join(a.out, f"seed{seed}")
            if os.path.exists(out):
                raise SystemExit(f"{out} exists; remove it or pass --out=NEW_FOLDER")
            cfg = dataclasses.replace(clean, data=dataclasses.replace(clean.data, seed=seed),
                                      train=dataclasses.replace(clean.train, seed=seed))
            run_clip(arm_config(cfg, "uniform", out), build_pairs(cfg))
            s = analysis.savings(noisy, read_jsonl(os.path.join(out, "uniform", "metrics.jsonl")))
            rows.append({"seed": seed, "noise": base.pairs.swapped, "arm": "uniform_clean_pool", "target": s["target"],
                         "final_zeroshot": s["final_accuracy"], "reached_at_step": s["reached_at_step"],
                         "uniform_reached_at_step": s["uniform_reached_at_step"], "updates_saved": s["updates_saved"]})
            print(f"[{time.time() - t0:6.0f}s] seed={seed}: {rows[-1]}", flush=True)
    os.makedirs(a.results, exist_ok=True)
    atomic_write_text(os.path.join(a.results, f"{a.name}.json"),
                      json.dumps({"rows": rows, "command": command, "settings": a.note or " ".join(extra)}, indent=2) + "\n")
    md = markdown(rows, command, a.note or " ".join(extra))
    atomic_write_text(os.path.join(a.results, f"{a.name}.md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
