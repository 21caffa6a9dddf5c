"""Actor-learner benchmark: learner throughput and idle time with 0 (single-process), 1 and 2 Ray
scoring actors, and a projection of how many actors keep a learner busy.

    python bench/actor_learner.py            # 300 steps per setting, 2 repeats, Fashion-MNIST (~15 min, 2 cores)
    python bench/actor_learner.py --quick    # 60 steps on digits (under a minute; the smoke variant)

Learner `cnn_small`, online proxy and reference `mlp_medium` (9.4x fewer forward FLOPs, so a proxy
about 10x cheaper), reference losses cached, b = 128 of B = 256, learnability scores, softmax
sampling. The learner uses one torch thread and each actor one (`--threads` changes the learner's).
Settings run back to back in one process on the same data and reference. Rates are
measured in steady state (after the first `--warmup` steps) from the learner's ledger: learner
steps/s = steps / the learner's loop seconds (data, learner, proxy training, scoring and selection
when in-process, waiting on the queue when on actors); idle fraction = the share of those seconds
the learner spends not training (waiting on the queue; in-process: scoring, selection and drawing).

Expected on a 2-core CPU machine: actors and the learner compete for the same two cores, so
actors relieve the learner of the scoring work but slow its training; the gain is modest or
negative here, and the projection (per-example costs measured here, scaled by FLOPs) is the
number that carries to a machine with a core or accelerator per actor.

Writes bench/results/actor_learner[-quick].json (`rows`, `projection`) and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

from common import machine, run_main

from learnability import config as C
from learnability.data import build_data
from learnability.distributed import run_ray
from learnability.io import atomic_write_text, read_jsonl
from learnability.loop import run

FULL = ["--data.pool_size=20000", "--data.reference_size=5000", "--data.test_size=1000", "--data.label_noise=0.4",
        "--model.learner=cnn_small", "--model.proxy=mlp_medium", "--train.batch_size=128", "--reference.epochs=2"]
QUICK = ["--data.source=digits", "--data.reference_size=300", "--data.label_noise=0.4", "--model.learner=cnn_small",
         "--model.proxy=mlp_medium", "--train.batch_size=32", "--reference.epochs=2"]
RATIOS = (1 / 10, 1 / 30, 1 / 100)
LOOP = ("data", "learner", "proxy_train", "scoring", "selection", "idle")


def steady(rows: list[dict], warmup: int) -> dict:
    """Per-step seconds by ledger category between step `warmup` and the last step."""
    a, b = rows[warmup - 1], rows[-1]
    n = b["step"] - a["step"]
    per = {c: (b.get(f"seconds_{c}", 0.0) - a.get(f"seconds_{c}", 0.0)) / n for c in LOOP}
    per["steps"] = n
    for key in ("actor0_seconds_scoring", "actor0_seconds_selection", "actor0_seconds_data", "actor0_flops_scoring",
                "flops_learner", "flops_proxy_train", "flops_scoring"):
        if key in b:
            per[key] = (b[key] - a[key]) / n
    return per


def row_for(actors: int, rows: list[dict], warmup: int) -> dict:
    per = steady(rows, warmup)
    loop = sum(per[c] for c in LOOP)
    waiting = per["idle"] if actors else per["scoring"] + per["selection"] + per["data"]
    return {"actors": actors, "learner_steps_per_s": 1.0 / loop, "learner_idle_fraction": waiting / loop,
            "seconds_per_step": {c: per[c] for c in LOOP}, "steady_steps": per["steps"],
            "max_staleness": max((r.get("staleness", 0) for r in rows), default=0), "per_step": per}


def projection(per_step: dict, ratio_measured: float, big_b: int) -> list[dict]:
    """Actors per learner that keep it busy, for proxy/learner FLOP ratios in RATIOS.

    From the measured per-example costs of the in-process run (`per_step`: seconds per step by
    category): the learner's busy seconds per step (its training plus the online proxy's, which
    scales with the proxy's FLOPs) against one actor's seconds per super-batch (scoring scales with
    the proxy's FLOPs; drawing and sampling do not), assuming per-FLOP speed stays what it was for
    these models. `actors_if_learner_faster`: the same when the learner runs 10x or 100x faster per
    FLOP than an actor (a learner on an accelerator, actors on CPU cores): an extrapolation."""
    learner_s, proxy_train_s = per_step["learner"], per_step["proxy_train"]
    scoring_per_example = per_step["scoring"] / big_b
    fixed_per_batch = per_step["selection"] + per_step["data"]
    out = []
    for r in RATIOS:
        scale = r / ratio_measured
        busy = learner_s + proxy_train_s * scale
        actor = scoring_per_example * scale * big_b + fixed_per_batch
        out.append({"proxy_learner_flop_ratio": f"1/{round(1 / r)}", "learner_busy_seconds_per_step": busy,
                    "actor_seconds_per_batch": actor, "actor_share_of_learner_step": actor / busy,
                    "actors_per_learner": math.ceil(actor / busy - 1e-9),
                    "actors_if_learner_faster": {f"{f}x": math.ceil(f * actor / busy - 1e-9) for f in (10, 100)}})
    return out


def combine(reps: list[dict]) -> dict:
    """Median over repeats of the rates and of each per-step seconds category."""
    med = lambda vals: statistics.median(vals)  # noqa: E731
    row = {"actors": reps[0]["actors"], "learner_steps_per_s": med([r["learner_steps_per_s"] for r in reps]),
           "learner_idle_fraction": med([r["learner_idle_fraction"] for r in reps]),
           "repeats_steps_per_s": [r["learner_steps_per_s"] for r in reps],
           "repeats_idle_fraction": [r["learner_idle_fraction"] for r in reps],
           "seconds_per_step": {c: med([r["seconds_per_step"][c] for r in reps]) for c in LOOP},
           "steady_steps": reps[0]["steady_steps"], "max_staleness": max(r["max_staleness"] for r in reps)}
    return row


def markdown(rows: list[dict], proj: list[dict], command: str, settings: str, note: str) -> str:
    lines = [f"Command: `{command}`  ", f"Settings: {settings}  ", f"Machine: {machine()}  ", f"Note: {note}", "",
             "| actors | learner steps/s | learner idle fraction | steps/s per repeat | seconds/step: learner | proxy training | scoring+selection (in learner) | waiting on queue | max staleness |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["seconds_per_step"]
        reps = ", ".join(f"{v:.2f}" for v in r["repeats_steps_per_s"])
        lines.append(f"| {r['actors']} | {r['learner_steps_per_s']:.2f} | {100 * r['learner_idle_fraction']:.1f}% | {reps} | "
                     f"{s['learner']:.4f} | {s['proxy_train']:.4f} | {s['scoring'] + s['selection']:.4f} | {s['idle']:.4f} | "
                     f"{r['max_staleness']} |")
    lines += ["", "Projection from the measured per-example costs (in-process run, scaled by FLOPs):", "",
              "| proxy/learner FLOPs | learner busy s/step | one actor s/super-batch | actor time / learner time | actors per learner to keep it busy | if the learner were 10x faster per FLOP | 100x faster |",
              "|---|---|---|---|---|---|---|"]
    for p in proj:
        f = p["actors_if_learner_faster"]
        lines.append(f"| {p['proxy_learner_flop_ratio']} | {p['learner_busy_seconds_per_step']:.4f} | "
                     f"{p['actor_seconds_per_batch']:.4f} | {p['actor_share_of_learner_step']:.3f} | {p['actors_per_learner']} | "
                     f"{f['10x']} | {f['100x']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="digits, 60 steps: the smoke variant")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=0, help="interleaved repeats of the three settings (default 2; quick 1)")
    ap.add_argument("--threads", type=int, default=1,
                    help="the learner's torch threads (default 1: on a shared 2-core machine 2 threads ran 3-4x slower)")
    ap.add_argument("--out", default="runs/bench-actor-learner")
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = ap.parse_args(argv)
    steps = a.steps or (60 if a.quick else 300)
    warmup = a.warmup or max(1, steps // 10)
    repeats = a.repeats or (1 if a.quick else 2)
    out = os.path.join(a.out, time.strftime("%Y%m%d-%H%M%S"))
    threads = a.threads
    base = C.apply_overrides(C.RunConfig(), [*(QUICK if a.quick else FULL), f"--train.steps={steps}",
                                             f"--train.eval_every={steps}", "--progress=false",
                                             f"--train.threads={threads}", f"--reference.dir={out}/reference"])
    load_before = os.getloadavg()
    splits = build_data(base.data)
    runs: dict[int, list[dict]] = {0: [], 1: [], 2: []}
    summaries = {}
    for rep in range(repeats):
        for actors in ((0, 1, 2) if rep % 2 == 0 else (2, 1, 0)):  # interleaved; the order alternates
            cfg = C.apply_overrides(base, [f"--out={out}/actors{actors}-{rep}"] + ([] if not actors else [
                "--backend=ray", f"--ray.actors={actors}", "--ray.cpus_per_actor=1", f"--ray.queue_size={2 * actors}",
                "--ray.publish_every=1", f"--ray.num_cpus={os.cpu_count()}"]))  # an actor scores with one thread per Ray CPU
            summaries[actors] = (run_ray if actors else run)(cfg, splits)
            runs[actors].append(row_for(actors, read_jsonl(os.path.join(cfg.out, "metrics.jsonl")), warmup))
            print(f"repeat {rep}, actors={actors}: {runs[actors][-1]['learner_steps_per_s']:.2f} learner steps/s, "
                  f"idle {100 * runs[actors][-1]['learner_idle_fraction']:.1f}%", flush=True)
    rows = [combine(runs[n]) for n in (0, 1, 2)]
    load = {"before": list(load_before), "after": list(os.getloadavg())}
    ratio = 1.0 / summaries[0]["proxy_flops_ratio"]
    proj = projection(rows[0]["seconds_per_step"], ratio, summaries[0]["super_batch"])
    gpu = "no CUDA GPU in this session: learner and actors ran on CPU; the GPU run of this bench is not done"
    note = (f"{os.cpu_count()} CPU cores shared by the learner ({threads} torch thread(s)) and the actors (one Ray CPU "
            f"and one thread each): with 2 actors the three compete for the cores; "
            f"other jobs shared the machine (load average "
            f"{load['before'][1]:.1f} before, {load['after'][1]:.1f} after), so rates are noisy. Proxy/learner forward FLOPs measured: 1/{1 / ratio:.1f}. {gpu}.")
    settings = (f"{'digits' if a.quick else 'Fashion-MNIST (pool 20k)'}, learner {base.model.learner}, proxy/reference "
                f"{base.model.proxy}, b={base.train.batch_size}, B={summaries[0]['super_batch']}, {steps} steps "
                f"(rates from step {warmup} on), median of {repeats} interleaved repeats, reference losses cached, queue 2 per actor, publish every step")
    command = "python bench/actor_learner.py" + (" --quick" if a.quick else "") + (f" --threads={threads}" if threads != 1 else "")
    result = {"command": command, "settings": settings, "machine": machine(), "note": note, "gpu": None, "load_average": load,
              "proxy_learner_flop_ratio": ratio, "rows": rows, "projection": proj,
              "ray": {str(k): v["ray"] for k, v in summaries.items() if "ray" in v}}
    name = "actor_learner-quick" if a.quick else "actor_learner"
    os.makedirs(a.results, exist_ok=True)
    atomic_write_text(os.path.join(a.results, f"{name}.json"), json.dumps(result, indent=2) + "\n")
    md = markdown(rows, proj, command, settings, note)
    atomic_write_text(os.path.join(a.results, f"{name}.md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
