"""Why did uniform on an all-true-caption pool end below uniform on the noisy pool? (issue #11.1)

    python bench/activeclip_diagnose.py --seeds=0,1,2      # 12 runs of 1000 steps, about 35 min on one core
    python bench/activeclip_diagnose.py --seeds=1 --results=R1 ...   # seeds in parallel, then --merge=R0/...,R1/...

First it checks what differs between the clean pool (`pairs.swapped=0`) and the noisy one (30%
swapped) besides the captions: images, ids, labels, true captions, the test split, the zero-shot
prompts and the tokenizer (its word set, and each word's id under both `pairs.vocab` settings).
Then it trains uniform on both pools at the previous bench's settings (`PREVIOUS`: constant lr,
1000 steps, 30k pool) under each vocabulary, and logs the final zero-shot accuracy, retrieval R@1
and the per-attribute accuracies in caption context. Writes bench/results/activeclip-diagnosis.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
from common import machine, run_main

from learnability import analysis
from learnability import config as C
from learnability.clip_loop import run_clip
from learnability.io import atomic_write_text, read_jsonl
from learnability.pairs import class_prompts
from learnability.pairs.build import build_pairs
from learnability.pairs.noise import synthetic_vocabulary
from learnability.pairs.tokenizer import WordTokenizer

PREVIOUS = ["--task=clip", "--selection.score=uniform", "--pairs.logit_bias_init=-5", "--data.pool_size=30000",
            "--data.test_size=2000", "--train.steps=1000", "--train.eval_every=50", "--progress=false", "--train.threads=1"]
SMOKE = ["--data.pool_size=300", "--data.reference_size=200", "--data.test_size=100", "--train.steps=4",
         "--train.batch_size=16", "--train.eval_every=2", "--pairs.retrieval_size=50"]
POOLS = {"noisy (30% swapped)": "--pairs.swapped=0.3", "clean (all true)": "--pairs.swapped=0"}
VOCABS = {"by count (before)": "--pairs.vocab=captions", "fixed by the grammar (now)": "--pairs.vocab=auto"}
EXTRA = ("zero_shot", "r1_i2t", "r1_t2i", "attr_class", "attr_colour", "attr_size", "attr_position", "logit_scale",
         "train_zero_shot", "loss_learner")


def static_checks(base: C.RunConfig) -> dict:
    """What differs between the clean and the noisy pool of `base`'s seed besides the captions."""
    noisy, clean = (build_pairs(C.apply_overrides(base, [flag]))[0] for flag in POOLS.values())
    by_count = [WordTokenizer.build(s.pool.captions + s.reference.captions) for s in (noisy, clean)]
    fixed = WordTokenizer(synthetic_vocabulary())
    return {
        "images_equal": torch.equal(noisy.pool.images, clean.pool.images),
        "ids_equal": torch.equal(noisy.pool.ids, clean.pool.ids),
        "labels_equal": torch.equal(noisy.pool.labels, clean.pool.labels),
        "true_captions_equal": noisy.pool.true_captions == clean.pool.captions,
        "captions_differing": sum(a != b for a, b in zip(noisy.pool.captions, clean.pool.captions)),
        "pool_size": len(noisy.pool),
        "test_equal": torch.equal(noisy.test.images, clean.test.images) and noisy.test.captions == clean.test.captions,
        "reference_equal": noisy.reference.captions == clean.reference.captions,
        "prompts": class_prompts(noisy.test.class_names),
        "vocab_size_by_count": [t.vocab_size for t in by_count],
        "vocab_words_equal_by_count": set(by_count[0].vocab) == set(by_count[1].vocab),
        "vocab_ids_differing_by_count": sum(a != b for a, b in zip(*(t.vocab for t in by_count))),
        "vocab_size_fixed": fixed.vocab_size,
        "fixed_vocab_covers_every_word": all(set(t.vocab) <= set(fixed.vocab) for t in by_count),
    }


def markdown(rows: list[dict], checks: dict, command: str) -> str:
    lines = [f"Command: `{command}`  ", f"Machine: {machine()}  ",
             f"Settings: the previous bench's (`{' '.join(PREVIOUS)}`) and the command's, seeds "
             f"{sorted({r['seed'] for r in rows})}", "",
             "What differs between the clean and the noisy pool (seed 0) besides the captions:", ""]
    lines += [f"- `{k}`: {v}" for k, v in checks.items()]
    lines += ["", "| pool | vocabulary | seeds | zero-shot (per seed) | median zero-shot | R@1 i2t | R@1 t2i | "
                  "class | colour | size | position | learned logit scale | zero-shot on training images | last loss |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for pool in POOLS:
        for vocab in VOCABS:
            own = sorted((r for r in rows if (r["pool"], r["vocab"]) == (pool, vocab)), key=lambda r: r["seed"])
            if not own:
                continue

            def med(k: str) -> str:
                vals = [r[k] for r in own if r.get(k) is not None]
                return f"{statistics.median(vals):.3f}" if vals else "-"

            lines.append(f"| {pool} | {vocab} | {len(own)} | {', '.join(format(r['zero_shot'], '.3f') for r in own)} | "
                         f"{med('zero_shot')} | {med('r1_i2t')} | {med('r1_t2i')} | {med('attr_class')} | "
                         f"{med('attr_colour')} | {med('attr_size')} | {med('attr_position')} | {med('logit_scale')} | "
                         f"{med('train_zero_shot')} | {med('loss_learner')} |")
    lines += ["", "Final values: the mean of the last three evaluations (attributes, logit scale and zero-shot on "
                  "training images: the last evaluation; caption context: the image's caption re-rendered with each "
                  "value of one attribute, 1000 test pairs; loss: the learner's training loss at the last step). "
                  "-: not logged by the version that ran."]
    return "\n".join(lines) + "\n"


def final_row(out: str, seed: int, pool: str, vocab: str) -> dict:
    """The final values of one run (mean of its last three evaluations; attributes: the last)."""
    metrics = read_jsonl(os.path.join(out, "metrics.jsonl"))
    evals = analysis.evaluations(metrics)
    row = {"seed": seed, "pool": pool, "vocab": vocab}
    for k in EXTRA:
        vals = [e[k] for e in evals[-analysis.WINDOW:] if k in e]
        row[k] = sum(vals) / len(vals) if vals else None
    row["loss_learner"] = metrics[-1]["loss_learner"]
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", default="runs/bench-activeclip-diagnosis")
    p.add_argument("--results", default="bench/results")
    p.add_argument("--merge", default="", help="comma list of results JSON files of disjoint seeds")
    p.add_argument("--vocabs", default="captions,auto", help="which pairs.vocab settings to train (comma list)")
    p.add_argument("--name", default="activeclip-diagnosis", help="results file name (without .json / .md)")
    p.add_argument("--collect", action="store_true", help="the rows of the runs that finished in --out (an "
                                                          "interrupted diagnosis); trains nothing")
    a, extra = p.parse_known_args()
    command = "python bench/activeclip_diagnose.py " + " ".join(sys.argv[1:])
    base = C.apply_overrides(C.RunConfig(), PREVIOUS + (SMOKE if a.smoke else []) + extra)
    if a.merge:
        parts = [json.load(open(f)) for f in a.merge.split(",")]
        rows, checks = [r for q in parts for r in q["rows"]], parts[0]["checks"]
    else:
        checks, rows, t0 = static_checks(base), [], time.time()
        for seed in (int(s) for s in a.seeds.split(",")):
            for pool, pool_flag in POOLS.items():
                for vocab, vocab_flag in VOCABS.items():
                    if vocab_flag.split("=")[1] not in a.vocabs.split(","):
                        continue
                    out = os.path.join(a.out, f"seed{seed}", f"{pool_flag[2:]}-{vocab_flag[2:]}".replace("=", "_"))
                    if a.collect:
                        if not os.path.isfile(os.path.join(out, "summary.json")):
                            continue
                    elif os.path.exists(out):
                        raise SystemExit(f"{out} exists; remove it or pass --out=NEW_FOLDER")
                    else:
                        run_clip(C.apply_overrides(base, [pool_flag, vocab_flag, f"--data.seed={seed}",
                                                          f"--train.seed={seed}", f"--out={out}"]))
                    rows.append(final_row(out, seed, pool, vocab))
                    print(f"[{time.time() - t0:6.0f}s] {rows[-1]}", flush=True)
    os.makedirs(a.results, exist_ok=True)
    atomic_write_text(os.path.join(a.results, f"{a.name}.json"),
                      json.dumps({"rows": rows, "checks": checks, "command": command}, indent=2) + "\n")
    md = markdown(rows, checks, command)
    atomic_write_text(os.path.join(a.results, f"{a.name}.md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
