"""The ActiveCLIP noise-bound bench's smoke path: tiny runs through the real script, rows and table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "bench")
TINY = ["--data.pool_size=300", "--data.reference_size=200", "--data.test_size=100", "--train.steps=6",
        "--train.batch_size=16", "--train.eval_every=2", "--pairs.retrieval_size=50", "--train.threads=1"]


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist is not installed")
def test_oracle_bench_smoke_trains_both_uniform_arms_and_writes_the_bound(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.join(BENCH, "..", "src"),
                                                                   os.environ.get("PYTHONPATH", "")) if p))
    r = subprocess.run([sys.executable, os.path.join(BENCH, "activeclip_oracle.py"), "--seeds=0",
                        f"--bench-out={tmp_path / 'bench'}", f"--out={tmp_path / 'oracle'}", f"--results={tmp_path / 'res'}",
                        *TINY], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((tmp_path / "res" / "activeclip-oracle.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["arm"] == "uniform_clean_pool" and rows[0]["noise"] == 0.3
    assert (tmp_path / "bench" / "seed0" / "uniform" / "metrics.jsonl").is_file()  # the noisy arm, trained as absent
    clean = [json.loads(x) for x in (tmp_path / "oracle" / "seed0" / "uniform" / "metrics.jsonl").read_text().splitlines()]
    assert [c["step"] for c in clean] == list(range(1, 7)) and all(c["corrupted_selected"] == 0 for c in clean)
    assert "| 0 |" in (tmp_path / "res" / "activeclip-oracle.md").read_text()
