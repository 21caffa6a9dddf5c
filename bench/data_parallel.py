"""Data-parallel learner benchmark: 1 vs 2 ranks (`--train.nproc`), steps/s and scaling efficiency,
and a projection for 8 GPUs from the measured costs.

    python bench/data_parallel.py            # Fashion-MNIST, 300 steps a setting, 3 interleaved repeats (~10 min, 2 cores)
    python bench/data_parallel.py --quick    # digits, 30 steps, 1 repeat (the smoke variant)

Settings, each a `learnability run` of the learnability score (cnn_small learner, mlp_medium
proxies, reference cached, label noise 0.4, B = 2b), one torch thread a rank, run back to back
and repeated in turn (1, 2, 1x2b; 1, 2, 1x2b; ...) so the ratios are measured side by side:

- `1 rank, b`: one process, b = 128 a step;
- `2 ranks, b each` (weak scaling): each rank selects b of its own B, an update trains on 2b;
  efficiency = its examples/s over twice the 1-rank examples/s;
- `1 rank, 2b` (strong scaling's baseline): the same global batch as 2 ranks in one process;
  efficiency = its seconds per update over twice the 2-rank seconds per update.

Steps/s are rank 0's: the wall-clock of its training steps over their number (evaluation, start-up
and the reference's training excluded; `summary.json`'s `loop`). Medians over repeats.

The projection to 8 GPUs: per rank and update, the measured FLOPs (learner, scoring, proxy
training: the ledger's, divided by ranks and steps) at an assumed share of the GPU's bf16 peak,
plus a ring all-reduce of the learner's and proxy's float32 gradients (the bytes are the models',
measured) at an assumed NVLink bus bandwidth and per-hop latency. Our gradient sync follows the
backward pass (no overlap), so efficiency = compute / (compute + all-reduce). The assumptions are
options and are printed with the table; no GPU was measured unless the `device` section says so.

Writes bench/results/data_parallel[-quick].json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time

from common import machine, run_main

from learnability import config as C
from learnability.backend import run_arm
from learnability.models import build_model

FULL = ["--data.pool_size=20000", "--data.reference_size=5000", "--data.test_size=1000", "--data.label_noise=0.4",
        "--model.learner=cnn_small", "--model.proxy=mlp_medium", "--train.batch_size=128", "--reference.epochs=2",
        "--selection.score=learnability", "--train.threads=1", "--progress=false"]
QUICK = ["--data.source=digits", "--data.reference_size=300", "--data.label_noise=0.4", "--model.learner=cnn_small",
         "--model.proxy=mlp_medium", "--train.batch_size=32", "--reference.epochs=2", "--selection.score=learnability",
         "--train.threads=1", "--progress=false"]
SETTINGS = (("1 rank, b", 1, 1), ("2 ranks, b each", 2, 1), ("1 rank, 2b", 1, 2))  # (name, ranks, batch multiple)


def one_run(base: C.RunConfig, ranks: int, mult: int, out: str) -> dict:
    cfg = dataclasses.replace(base, out=out, train=dataclasses.replace(base.train, nproc=ranks,
                                                                       batch_size=base.train.batch_size * mult))
    shutil.rmtree(out, ignore_errors=True)
    summary = run_arm(cfg)
    loop, ledger = summary["loop"], summary["ledger"]
    steps = summary["steps"]
    per_rank_flops = {k: ledger["flops"][k] / (steps * ranks) for k in ("learner", "scoring", "proxy_train")}
    return {"ranks": ranks, "batch_per_rank": cfg.train.batch_size, "steps": loop["steps"],
            "seconds_per_update": loop["seconds"] / loop["steps"], "updates_per_s": loop["steps"] / loop["seconds"],
            "examples_per_s": loop["steps"] * cfg.train.batch_size * ranks / loop["seconds"],
            "flops_per_rank_update": per_rank_flops, "final_accuracy": summary["final_accuracy"]}


def projection(flops_per_rank: float, grad_bytes: float, a: argparse.Namespace) -> list[dict]:
    """Per-update compute and ring all-reduce time on N GPUs, and the scaling efficiency they give."""
    compute = flops_per_rank / (a.mfu * a.peak_tflops * 1e12)
    out = []
    for n in (1, 2, 4, 8):
        comm = 0.0 if n == 1 else 2 * (n - 1) / n * grad_bytes / (a.bus_gbps * 1e9) + 2 * (n - 1) * a.latency_us * 1e-6
        out.append({"gpus": n, "compute_s": compute, "allreduce_s": comm, "efficiency": compute / (compute + comm)})
    return out


def markdown(rows: list[dict], med: dict, eff: dict, proj: list[dict], meta: dict) -> str:
    lines = [f"Command: `{meta['command']}`  ", f"Settings: {meta['settings']}  ", f"Machine: {meta['machine']}  ",
             f"Device: {meta['device']}", "",
             "| setting | ranks | b per rank | updates/s (median) | examples/s (median) | s per update | updates/s per repeat |",
             "|---|---|---|---|---|---|---|"]
    for name, _, _ in SETTINGS:
        m, reps = med[name], [r["updates_per_s"] for r in rows if r["setting"] == name]
        lines.append(f"| {name} | {m['ranks']} | {m['batch_per_rank']} | {m['updates_per_s']:.2f} | {m['examples_per_s']:.0f} | "
                     f"{m['seconds_per_update']:.4f} | {', '.join(f'{v:.2f}' for v in reps)} |")
    lines += ["", f"Weak scaling (b per rank fixed): 2 ranks give {eff['weak']:.0%} of twice the 1-rank examples/s "
                  f"(per repeat: {', '.join(f'{v:.0%}' for v in eff['weak_repeats'])}).",
              f"Strong scaling (global batch 2b fixed): 2 ranks give {eff['strong']:.0%} of the ideal halving of the "
              f"1-rank seconds per update (per repeat: {', '.join(f'{v:.0%}' for v in eff['strong_repeats'])}).", "",
              f"Projection to GPUs (assumed: {meta['assumptions']}; measured: {meta['measured']}):", "",
              "| GPUs | compute s/update (per rank) | all-reduce s/update | scaling efficiency |", "|---|---|---|---|"]
    for p in proj:
        lines.append(f"| {p['gpus']} | {p['compute_s']:.2e} | {p['allreduce_s']:.2e} | {p['efficiency']:.0%} |")
    lines += ["", meta["note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="digits, 30 steps, 1 repeat: the smoke variant")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=0)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 peak (H100/H200 SXM: 989)")
    ap.add_argument("--mfu", type=float, default=0.3, help="assumed share of the peak the learner step reaches")
    ap.add_argument("--bus-gbps", type=float, default=360.0, help="assumed all-reduce bus bandwidth, GB/s (NVLink, NCCL)")
    ap.add_argument("--latency-us", type=float, default=10.0, help="assumed latency of one ring hop, microseconds")
    ap.add_argument("--out", default="runs/bench-data-parallel")
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = ap.parse_args(argv)
    steps, repeats = a.steps or (30 if a.quick else 300), a.repeats or (1 if a.quick else 3)
    base = C.apply_overrides(C.RunConfig(), (QUICK if a.quick else FULL) +
                             [f"--train.steps={steps}", f"--train.eval_every={steps}",
                              f"--reference.dir={os.path.abspath(os.path.join(a.out, 'reference'))}"])
    t0, rows = time.time(), []
    for rep in range(repeats):
        for name, ranks, mult in SETTINGS:
            row = one_run(base, ranks, mult, os.path.abspath(os.path.join(a.out, f"r{rep}-{ranks}x{mult}")))
            rows.append({"setting": name, "repeat": rep, **row})
            print(f"[{time.time() - t0:5.0f}s] repeat {rep} {name}: {row['updates_per_s']:.2f} updates/s", flush=True)
    med = {}
    for name, _, _ in SETTINGS:
        reps = [r for r in rows if r["setting"] == name]
        med[name] = {**reps[0], **{k: statistics.median(r[k] for r in reps)
                                   for k in ("updates_per_s", "examples_per_s", "seconds_per_update")}}
    by = {(r["setting"], r["repeat"]): r for r in rows}
    weak = [by["2 ranks, b each", i]["examples_per_s"] / (2 * by["1 rank, b", i]["examples_per_s"]) for i in range(repeats)]
    strong = [by["1 rank, 2b", i]["seconds_per_update"] / (2 * by["2 ranks, b each", i]["seconds_per_update"])
              for i in range(repeats)]
    eff = {"weak": statistics.median(weak), "weak_repeats": weak, "strong": statistics.median(strong), "strong_repeats": strong}
    shape = (1, 8, 8) if a.quick else (1, 28, 28)
    params = sum(p.numel() for name in (base.model.learner, base.model.proxy) for p in build_model(name, shape, 10).parameters())
    flops = sum(med["2 ranks, b each"]["flops_per_rank_update"].values())
    proj = projection(flops, 4.0 * params, a)
    meta = {"command": "python bench/data_parallel.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "settings": f"{' '.join(QUICK if a.quick else FULL)}, {steps} steps, {repeats} interleaved repeats",
            "machine": machine(), "seconds": time.time() - t0,
            "device": "no accelerator was lent to this task (`device` status: not drawn), so no GPU step time or FLOP "
                      "utilisation was measured; the CUDA path (nccl, one GPU a rank, bf16 autocast) is untested here",
            "assumptions": f"{a.mfu:.0%} of {a.peak_tflops:g} TFLOP/s bf16, ring all-reduce at {a.bus_gbps:g} GB/s bus "
                           f"bandwidth and {a.latency_us:g} us a hop",
            "measured": f"{flops:.3g} FLOPs per rank and update (learner + scoring + proxy training, b per rank), "
                        f"{params:,} parameters (learner + proxy) = {4 * params / 1e6:.2f} MB of float32 gradients",
            "note": "On this machine 2 ranks share 2 cores with everything else running; a rank's collectives wait for "
                    "the slower rank. For models this small the projection's compute time is too short (at ~1e9 FLOPs a "
                    "step GPU kernels are bound by launch latency, not FLOP/s), so its efficiency is pessimistic; "
                    "it carries to learners whose step is FLOP-bound."}
    result = {"rows": rows, "medians": med, "efficiency": eff, "projection": proj, **meta}
    os.makedirs(a.results, exist_ok=True)
    name = "data_parallel-quick" if a.quick else "data_parallel"
    from learnability.io import atomic_write_text

    atomic_write_text(os.path.join(a.results, f"{name}.json"), json.dumps(result, indent=2) + "\n")
    md = markdown(rows, med, eff, proj, meta)
    atomic_write_text(os.path.join(a.results, f"{name}.md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
