"""The ClassAct bench's path through the real script, on digits (seconds): rows, medians, the named results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "bench")


def test_classact_bench_runs_on_a_second_dataset_into_named_results(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.join(BENCH, "..", "src"),
                                                                   os.environ.get("PYTHONPATH", "")) if p))
    r = subprocess.run([sys.executable, os.path.join(BENCH, "classact.py"), "--etas=0.4", "--seeds=0,1",
                        "--arms=uniform,learnability", f"--out={tmp_path / 'runs'}", f"--results={tmp_path / 'res'}",
                        "--name=classact-digits", "--data.source=digits", "--data.reference_size=300",
                        "--data.test_size=0", "--train.steps=30", "--train.eval_every=5", "--reference.epochs=2",
                        "--model.learner=cnn_tiny", "--model.proxy=mlp_tiny", "--train.threads=1"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "res" / "classact-digits.json").read_text())
    assert res["settings"].startswith("data digits (300 curated")
    assert sorted((row["arm"], row["seed"]) for row in res["rows"]) == [
        ("learnability", 0), ("learnability", 1), ("uniform", 0), ("uniform", 1)]
    learn = [row for row in res["rows"] if row["arm"] == "learnability"]
    med = next(m for m in res["medians"] if m["arm"] == "learnability")
    assert med["seeds"] == 2
    assert med["final_accuracy"] == pytest.approx((learn[0]["final_accuracy"] + learn[1]["final_accuracy"]) / 2)
    assert "| 0.4 | learnability | 2 |" in (tmp_path / "res" / "classact-digits.md").read_text()
    assert not (tmp_path / "res" / "classact.json").exists()
