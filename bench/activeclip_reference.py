"""How good is the ActiveCLIP bench's reference model, per proxy architecture? (docs/image-text-benchmark.md point 8)

    python bench/activeclip_reference.py --dataset=digits --proxies=dual_cnn_tiny,dual_cnn_tiny_fullres --seeds=0,1,2

Trains only the bench's reference (the frozen half of learnability: `pairs.proxy`, on the curated
pairs, with the settings of `bench/activeclip.py --dataset=...`, seed as the bench's) for each
proxy architecture, and reports its zero-shot accuracy and Recall@1 on the test pairs, its
zero-shot on pool images (by their true labels: how much it memorised of its curated set shows as
a gap), its forward FLOPs against the learner's, and its training time. Cheap (a minute or two a
reference here): run it before a bench whose proxies might be too weak to score with. Writes
`--results/--name.{json,md}`; `--section.field` overrides apply after the dataset's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys

import torch

from activeclip import BENCH_OVERRIDES, DATASETS, SMOKE
from common import machine, run_main
from learnability import config as C
from learnability.errors import ConfigError
from learnability.flops import Ledger, measure_loss_cost
from learnability.io import atomic_write_text
from learnability.pairs.build import build_pairs
from learnability.runtime import seeded
from learnability.tasks.clip import ClipTask

KEYS = ("zero_shot", "r1_i2t", "r1_t2i", "train_zero_shot")


def probe(cfg: C.RunConfig, data) -> dict:
    """Train (or load) `cfg`'s reference and evaluate it as the bench evaluates its learner."""
    task = ClipTask(cfg, data, torch.device("cpu"), autocast=False)
    # initialised exactly as the bench's reference (`runtime.build_selection`), so --out can serve as its --reference.dir
    model, ledger = seeded(lambda: task.build_model("proxy"), cfg.train.seed + 2, torch.device("cpu")), Ledger()
    task.prepare_reference(model, ledger)  # trains it, or loads it (and its cost) from --out
    row = task.evaluate(model, final=True)
    batch = (task.pool.images[:8], task.tokens[:8])
    proxy, learner = (measure_loss_cost(m, task.train_fn, batch).forward for m in (model, task.build_model("learner")))
    return {**{k: row[k] for k in KEYS}, "learner_over_proxy_flops": learner / proxy,
            "seconds": ledger.seconds["reference"]}


def markdown(rows: list[dict], proxies: list[str], command: str, settings: str) -> str:
    lines = [f"Command: `{command}`  ", f"Settings: {settings}  ", f"Machine: {machine()}", "",
             "| proxy (= reference) | learner / proxy forward FLOPs | seeds | test zero-shot (per seed) | test zero-shot "
             "| R@1 i2t | R@1 t2i | pool zero-shot | train + cache seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for p in proxies:
        rs = [r for r in rows if r["proxy"] == p]
        med = {k: statistics.median(r[k] for r in rs) for k in (*KEYS, "learner_over_proxy_flops", "seconds")}
        lines.append(f"| {p} | {med['learner_over_proxy_flops']:.1f} | {len(rs)} | "
                     f"{', '.join(format(r['zero_shot'], '.3f') for r in rs)} | {med['zero_shot']:.3f} | {med['r1_i2t']:.1%} | "
                     f"{med['r1_t2i']:.1%} | {med['train_zero_shot']:.3f} | {med['seconds']:.0f} |")
    lines += ["", "Medians over seeds. Zero-shot: class prompts against the test images (chance 0.1); pool "
                  "zero-shot: the first retrieval_size pool images by their true labels (the reference never "
                  "trained on them). Seconds: a shared 2-core machine, one torch thread."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fashion_mnist", choices=list(DATASETS))
    p.add_argument("--proxies", default="dual_cnn_tiny", help="comma list of pairs.proxy architectures")
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", default="runs/bench-activeclip-reference")
    p.add_argument("--results", default="bench/results")
    p.add_argument("--name", default="", help="results file name (default activeclip-reference-<dataset>)")
    p.add_argument("--smoke", action="store_true", help="tiny settings (seconds), for the tests")
    a, extra = p.parse_known_args()
    proxies = [x for x in a.proxies.split(",") if x]
    if not proxies:
        raise SystemExit("error: --proxies names no architecture, e.g. --proxies=dual_cnn_tiny,dual_cnn_tiny_fullres")
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"error: --seeds takes a comma list of integers, e.g. 0,1,2; got {a.seeds!r}")
    try:  # every proxy's config checked before any data loads
        base = C.apply_overrides(C.RunConfig(), BENCH_OVERRIDES + DATASETS[a.dataset] + (SMOKE if a.smoke else []) + extra)
        for proxy in proxies:
            C.validate(dataclasses.replace(base, pairs=dataclasses.replace(base.pairs, proxy=proxy)))
    except ConfigError as e:
        raise SystemExit(f"error: {e}")
    torch.set_num_threads(base.train.threads or torch.get_num_threads())
    rows = []
    for seed in seeds:
        cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, seed=seed),
                                  train=dataclasses.replace(base.train, seed=seed))
        data = build_pairs(cfg)
        for proxy in proxies:
            out = os.path.join(a.out, f"seed{seed}", proxy)
            c = dataclasses.replace(cfg, out=out, pairs=dataclasses.replace(cfg.pairs, proxy=proxy),
                                    reference=dataclasses.replace(cfg.reference, dir=os.path.join(out, "reference")))
            os.makedirs(out, exist_ok=True)
            rows.append({"proxy": proxy, "seed": seed, **probe(c, data)})
            print(json.dumps(rows[-1]), flush=True)
    r, d = base.reference, base.data
    settings = (f"data {d.source}, reference {r.epochs} epochs of batch {r.batch_size} on {d.reference_size} curated "
                f"pairs, lr {r.lr:g}, learner {base.pairs.learner}")
    command = "python bench/activeclip_reference.py " + " ".join(sys.argv[1:])
    name = a.name or f"activeclip-reference-{a.dataset}"
    os.makedirs(a.results, exist_ok=True)
    atomic_write_text(os.path.join(a.results, f"{name}.json"),
                      json.dumps({"command": command, "settings": settings, "rows": rows}, indent=2) + "\n")
    md = markdown(rows, proxies, command, settings)
    atomic_write_text(os.path.join(a.results, f"{name}.md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
