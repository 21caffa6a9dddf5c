"""ActiveCLIP and JEST benchmark: image-text training on the built-in compositional pairs.

    python bench/activeclip.py            # 30% mismatched captions, 3 seeds: uniform, activeclip (f=0.5), jest (f=0.8)
    python bench/activeclip.py --quick    # one seed
    python bench/activeclip.py --seeds=1 --results=R1 ...   # seeds in parallel, one process each, then
    python bench/activeclip.py --merge=R0/activeclip.json,R1/activeclip.json,R2/activeclip.json

Every seed is one `compare --task=clip` (arms side by side on the same data, seeds and evaluation
schedule; the arm order rotates with the seed) plus a JEST arm at its own filtering ratio, run in
the same folder against the same uniform arm. Writes bench/results/activeclip[-quick].json (one row
per noise, arm, filtering, seed) and a markdown table of medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

from common import arm_rows, machine, medians, pct, share

from learnability import config as C
from learnability.clip_loop import run_clip
from learnability.compare import arm_config
from learnability.io import atomic_write_text
from learnability.pairs.build import build_pairs

ARMS = ("uniform", "activeclip", "jest")
FILTERING = {"uniform": 0.0, "activeclip": 0.5, "jest": 0.8}
# The actor (online proxy and reference): a CNN image tower on 2x-pooled images and a bag-of-words text
# tower (dual_cnn_tiny, about 1/20 of the learner's forward FLOPs), scoring each candidate by its
# contrastive loss within the super-batch, the reference trained 30 epochs on the curated pairs
# (zero-shot about 0.6 on seed 0, against 0.2 for dual_mlp_tiny after 10 epochs).
# The initial SigLIP bias is tuned for the uniform baseline and applied to every model of every arm:
# SigLIP's -10 suits batches of thousands; at b=128 it stalls uniform near chance for ~400 steps and
# costs it a quarter of its final zero-shot accuracy (0.449 -> 0.571 on seed 0 with -5, about -log b).
BENCH_OVERRIDES = ["--task=clip", "--pairs.logit_bias_init=-5", "--pairs.swapped=0.3", "--data.pool_size=30000", "--data.test_size=2000",
                   "--train.steps=1000", "--train.eval_every=50", "--pairs.n_chunks=16", "--progress=false",
                   "--pairs.proxy=dual_cnn_tiny", "--pairs.actor_loss=contrastive", "--reference.epochs=30"]
KEYS = ("updates_saved", "compute_saved", "compute_saved_amortised", "wallclock_saved", "final_zeroshot",
        "final_r1_i2t", "final_r1_t2i", "corrupted_selected", "proxy_flops_ratio", "selection_time_share")


def reach_steps(rows: list[dict], m: dict) -> str:
    """Per seed: the step the arm reached the target at, over the step uniform did ("-": never)."""
    own = [r for r in rows if (r["noise"], r["arm"], r["filtering"]) == (m["noise"], m["arm"], m["filtering"])]
    return ", ".join(f"{r['reached_at_step'] or '-'}/{r['uniform_reached_at_step']}" for r in sorted(own, key=lambda r: r["seed"]))


def markdown(med: list[dict], rows: list[dict], command: str, settings: str, where: str = "") -> str:
    lines = [f"Command: `{command}`  ", f"Settings: {settings}  ", f"Machine: {where or machine()}", "",
             "| caption noise | arm | filtering | seeds | reached at / uniform at (per seed) | updates saved | compute saved | "
             "compute saved (amortised x10) | wall-clock saved | zero-shot | R@1 i2t | R@1 t2i | mismatched selected |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in med:
        reach = reach_steps(rows, m)
        lines.append(f"| {m['noise']} | {m['arm']} | {m['filtering']} | {m['seeds']} | {reach} | {pct(m['updates_saved'])} | "
                     f"{pct(m['compute_saved'])} | {pct(m['compute_saved_amortised'])} | {pct(m['wallclock_saved'])} | "
                     f"{m['final_zeroshot']:.4f} | {share(m['final_r1_i2t'])} | {share(m['final_r1_t2i'])} | "
                     f"{share(m['corrupted_selected'])} |")
    ratios = sorted({round(r["proxy_flops_ratio"], 1) for r in rows if r.get("proxy_flops_ratio")})
    lines += ["", f"Learner / proxy forward FLOPs per example: {', '.join(map(str, ratios)) or 'n/a'}. Medians over seeds. Targets: uniform's final zero-shot accuracy (mean of its last three evaluations); "
              "an arm reaches it at the first evaluation whose three-evaluation mean is at or above it. Compute counts "
              "the learner, proxy scoring and training, and the reference's training and caching pass in full "
              "(amortised: the reference's one-off costs over 10 runs). Updates and compute are deterministic given the "
              "seed; wall-clock is not (shared 2-core machine)."]
    return "\n".join(lines) + "\n"


def merge(paths: list[str], results: str) -> int:
    """Combine results files of disjoint seeds run as separate processes into one table."""
    parts = []
    for path in paths:
        with open(path) as f:
            parts.append(json.load(f))
    if len({p["settings"] for p in parts}) != 1:
        raise SystemExit("the results files were run with different settings: " + "; ".join(p["settings"] for p in parts))
    rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: (r["seed"], ARMS.index(r["arm"])))
    seeds = [r["seed"] for r in rows if r["arm"] == "uniform"]
    if len(seeds) != len(set(seeds)):
        raise SystemExit(f"seeds overlap between the results files: {sorted(seeds)}")
    command = " & ".join(p["command"] for p in parts) + " (in parallel), then python bench/activeclip.py --merge=..."
    settings = parts[0]["settings"]
    med = medians(rows, ("noise", "arm", "filtering"), KEYS, ARMS)
    os.makedirs(results, exist_ok=True)
    atomic_write_text(os.path.join(results, "activeclip.json"), json.dumps(
        {"rows": rows, "medians": med, "command": command, "machine": parts[0]["machine"], "settings": settings,
         "seconds": max(p["seconds"] for p in parts), "seconds_per_process": [p["seconds"] for p in parts]},
        indent=2) + "\n")
    atomic_write_text(os.path.join(results, "activeclip.md"), markdown(med, rows, command, settings, parts[0]["machine"]))
    print(markdown(med, rows, command, settings, parts[0]["machine"]))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one seed")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--jest-filtering", type=float, default=0.8)
    p.add_argument("--amortise", type=int, default=10)
    p.add_argument("--out", default="runs/bench-activeclip")
    p.add_argument("--results", default="bench/results")
    p.add_argument("--merge", default="", help="comma list of results JSON files of disjoint seeds (run in parallel): "
                                               "write their rows' medians into --results; trains nothing")
    a, extra = p.parse_known_args()
    if a.merge:
        return merge(a.merge.split(","), a.results)
    seeds = [0] if a.quick else [int(s) for s in a.seeds.split(",")]
    base = C.apply_overrides(C.RunConfig(), BENCH_OVERRIDES + extra)
    name = "activeclip-quick" if a.quick else "activeclip"
    command = "python bench/activeclip.py " + " ".join(sys.argv[1:])
    filtering = dict(FILTERING, jest=a.jest_filtering)
    settings = (f"learner {base.pairs.learner}, proxy/reference {base.pairs.proxy}, {base.pairs.loss} loss, actor loss "
                f"{base.pairs.actor_loss}, b={base.train.batch_size}, JEST in {base.pairs.n_chunks} chunks, "
                f"{base.train.steps} steps, learner lr {base.train.lr:g} ({base.train.schedule}, warm-up {base.train.warmup}), "
                f"initial logit scale/bias {base.pairs.logit_scale_init:g}/{base.pairs.logit_bias_init:g}, pool {base.data.pool_size or 50000}, eval every {base.train.eval_every} "
                f"on {base.data.test_size or 10000} test images, reference {base.reference.epochs} epochs on "
                f"{base.data.reference_size} curated pairs, torch threads {base.train.threads or 'default'}")
    rows: list[dict] = []
    t0 = time.time()
    for seed in seeds:
        cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, seed=seed),
                                  train=dataclasses.replace(base.train, seed=seed))
        out = os.path.join(a.out, f"seed{seed}")
        if os.path.exists(out):
            raise SystemExit(f"{out} exists; remove it or pass --out=NEW_FOLDER")
        cfg = dataclasses.replace(cfg, reference=dataclasses.replace(cfg.reference, dir=os.path.join(out, "reference")))
        data = build_pairs(cfg)
        order = list(ARMS[seed % 3:] + ARMS[:seed % 3])  # arm order rotates with the seed (wall-clock drift)
        for arm in order:
            c = arm_config(cfg, arm, out)
            c = dataclasses.replace(c, selection=dataclasses.replace(c.selection, filter_ratio=filtering[arm] or c.selection.filter_ratio))
            run_clip(c, data)
        for r in arm_rows(out, list(ARMS), a.amortise, extra_keys=("r1_i2t", "r1_t2i", "r5_i2t", "r5_t2i")):
            r.update({"noise": base.pairs.swapped, "filtering": filtering[r["arm"]], "seed": seed,
                      "final_zeroshot": r["final_accuracy"]})
            rows.append(r)
        print(f"[{time.time() - t0:6.0f}s] seed={seed} done", flush=True)
        med = medians(rows, ("noise", "arm", "filtering"), KEYS, ARMS)
        os.makedirs(a.results, exist_ok=True)
        atomic_write_text(os.path.join(a.results, f"{name}.json"), json.dumps(
            {"rows": rows, "medians": med, "command": command, "machine": machine(), "settings": settings,
             "seconds": time.time() - t0}, indent=2) + "\n")
        atomic_write_text(os.path.join(a.results, f"{name}.md"), markdown(med, rows, command, settings))
    print(markdown(medians(rows, ("noise", "arm", "filtering"), KEYS, ARMS), rows, command, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
