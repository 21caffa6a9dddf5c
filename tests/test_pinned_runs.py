"""Tiny runs of both tasks through the real command line, compared with values pinned in
`tests/pinned_runs.json`: every logged value but wall-clock seconds (selected ids as a digest,
losses, FLOPs, accuracies), step by step. They guard refactors of the loop against silent changes
of behaviour. What the selection and the FLOP ledger count (ids, examples, FLOPs, corrupted
fractions) must match exactly; what the model computes (losses, accuracies, logit scale) within
`MODEL_RTOL`, because float32 kernels differ between CPUs: the same commit and torch build gave a
12-step loss 1.3e-5 apart (relative) on two x86 machines, while a real change of behaviour (another
selection, learning rate or loss) moves these values by far more than 1e-3. After a change that is meant to alter results, regenerate the pins with
`OMP_NUM_THREADS=1 python tests/test_pinned_runs.py` and say why in the commit.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

PINS = os.path.join(os.path.dirname(__file__), "pinned_runs.json")
CLASSIFY = ["--data.source=digits", "--data.reference_size=300", "--train.batch_size=32", "--train.steps=12",
            "--train.eval_every=4", "--reference.epochs=2", "--progress=false", "--train.threads=1", "--train.ema=0"]
CLIP = ["--task=clip", "--data.pool_size=400", "--data.reference_size=200", "--data.test_size=100",
        "--pairs.retrieval_size=100", "--train.batch_size=16", "--train.steps=8", "--train.eval_every=4",
        "--reference.epochs=1", "--pairs.n_chunks=4", "--progress=false", "--train.threads=1", "--train.ema=0"]
RUNS = {
    "classify_learnability": [*CLASSIFY, "--selection.score=learnability"],
    "classify_window": [*CLASSIFY, "--selection.score=learnability", "--selection.start=4", "--selection.end=8"],
    "classify_online_reference": [*CLASSIFY, "--selection.score=learnability", "--reference.train_on=online"],
    "clip_learnability": [*CLIP, "--selection.score=learnability"],
    "clip_jest": [*CLIP, "--selection.score=learnability", "--selection.sampler=jest"],
    "clip_window": [*CLIP, "--selection.score=learnability", "--selection.start=3", "--selection.end=6"],
    "clip_random": [*CLIP, "--selection.score=random"],
}
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
MODEL_RTOL = 1e-3
COUNTED = ("flops_", "examples_seen", "candidates_drawn")  # and every "*_selected" fraction


def counted(key: str) -> bool:
    """A value the selection and the ledger determine, identical on any machine."""
    return key.startswith(COUNTED) or key.endswith("_selected")


def logged(out: str) -> list[dict]:
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in rows]


def train(name: str, out: str) -> list[dict]:
    from learnability.cli import main

    assert main(["run", f"--out={out}", *RUNS[name]]) == 0
    return logged(out)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_run_matches_its_pinned_values(name: str, tmp_path) -> None:
    if name.startswith("clip") and not os.path.isdir(FASHION_MNIST):
        pytest.skip("dataset-fashion-mnist is not installed")
    with open(PINS) as f:
        want = json.load(f)[name]
    got = train(name, str(tmp_path / name))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert set(g) == set(w), (w["step"], set(g) ^ set(w))
        for k, v in w.items():
            if isinstance(v, float):
                rel = 1e-9 if counted(k) else MODEL_RTOL
                assert g[k] == pytest.approx(v, rel=rel, abs=1e-9), (w["step"], k)
            else:
                assert g[k] == v, (w["step"], k)


if __name__ == "__main__":  # regenerate the pins
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pins = {name: train(name, os.path.join(tmp, name)) for name in sorted(RUNS)}
    with open(PINS, "w") as f:
        json.dump(pins, f, indent=1)
        f.write("\n")
    print(f"wrote {PINS}", file=sys.stderr)
