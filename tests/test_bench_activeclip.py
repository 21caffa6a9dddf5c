"""The ActiveCLIP/JEST bench's smoke path: every arm through the real script, rows and table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "bench")
pytestmark = pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                                reason="dataset-fashion-mnist is not installed")


def _bench(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.join(BENCH, "..", "src"),
                                                                   os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.run([sys.executable, os.path.join(BENCH, script), "--smoke", "--seeds=0", f"--out={tmp_path / 'runs'}",
                           f"--results={tmp_path / 'res'}", *args], env=env, capture_output=True, text=True, timeout=900)


def test_every_arm_runs_and_the_table_holds_each(tmp_path: Path) -> None:
    r = _bench("activeclip.py", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "res" / "activeclip.json").read_text())
    from_script = subprocess.run([sys.executable, "-c", "import activeclip as a; print(','.join(x for x in a.ARMS if x not in a.ON_REQUEST))"],
                                 cwd=BENCH, env=dict(os.environ, PYTHONPATH=os.path.join(BENCH, "..", "src")),
                                 capture_output=True, text=True).stdout.strip().split(",")
    assert [row["arm"] for row in res["rows"]] == from_script and len(from_script) == 12
    runs = tmp_path / "runs" / "seed0"
    metrics = {a: [json.loads(x) for x in (runs / a / "metrics.jsonl").read_text().splitlines()] for a in from_script}
    # the oracle trains on clean pairs only; uniform sees the pool's corruption
    assert all(m["corrupted_selected"] == 0 for m in metrics["oracle"])
    assert json.loads((runs / "oracle" / "summary.json").read_text())["pool_size"] < 400
    # the late arm scores nothing before half-way; the early arm stops scoring and training its proxy after it
    assert not any("loss_online_candidates" in m for m in metrics["activeclip_late"][:4])
    assert all("loss_online_candidates" in m for m in metrics["activeclip_late"][4:])
    assert all("loss_online_candidates" in m and "loss_proxy" in m for m in metrics["activeclip_early"][:4])
    assert not any("loss_online_candidates" in m or "loss_proxy" in m for m in metrics["activeclip_early"][4:])
    # the random subset draws B = 2b candidates a step, like activeclip, and scores nothing
    assert metrics["random_subset"][-1]["candidates_drawn"] == metrics["activeclip"][-1]["candidates_drawn"] == 2 * 16 * 8
    assert metrics["random_subset"][-1]["flops_scoring"] == 0
    # the in-loop oracle filter draws 2b too, runs no model to score, and keeps clean pairs first
    assert metrics["oracle_filter"][-1]["candidates_drawn"] == 2 * 16 * 8 and metrics["oracle_filter"][-1]["flops_scoring"] == 0
    mean = {a: sum(m["corrupted_selected"] for m in metrics[a]) / len(metrics[a]) for a in ("oracle_filter", "random_subset")}
    assert mean["oracle_filter"] < mean["random_subset"] - 0.1, mean
    # the noise kinds' shares of each selected batch add up to its corrupted share
    kinds = ("swapped", "uninformative", "wrong_attribute", "duplicate")
    for m in metrics["activeclip"]:
        assert sum(m[f"{k}_selected"] for k in kinds) == pytest.approx(m["corrupted_selected"])
    row = next(r for r in res["rows"] if r["arm"] == "activeclip")
    assert sum(row[f"{k}_selected"] for k in kinds) == pytest.approx(row["corrupted_selected"])
    # jest draws B = 5b (f = 0.8); jest_f05 draws activeclip's B = 2b
    assert metrics["jest"][-1]["candidates_drawn"] == 5 * 16 * 8
    assert metrics["jest_f05"][-1]["candidates_drawn"] == 2 * 16 * 8 and metrics["jest_f05"][-1]["flops_scoring"] > 0
    # attribute accuracies are logged at the last evaluation
    assert {"attr_class", "attr_colour", "attr_size", "attr_position"} <= set(metrics["uniform"][-1])
    # smaller budgets (6, 4 and 2 of 8 steps) ran largest first, and only while the arm still reached uniform's end
    def end(run: str) -> float:
        return [json.loads(x) for x in (runs / run / "metrics.jsonl").read_text().splitlines() if '"test_accuracy"' in x][-1][
            "test_accuracy"]

    target = end("uniform")
    assert not list(runs.glob("uniform@*"))
    for arm in from_script[1:]:
        for larger, smaller in ((arm, f"{arm}@6"), (f"{arm}@6", f"{arm}@4"), (f"{arm}@4", f"{arm}@2")):
            ran_larger = (runs / larger / "summary.json").is_file()
            assert (runs / smaller / "summary.json").is_file() == (ran_larger and end(larger) >= target), (arm, larger)
    md = (tmp_path / "res" / "activeclip.md").read_text()
    assert "| random_subset |" in md and "| oracle |" in md and "spread" in md and "Fully decayed budgets" in md
    assert "share of oracle / oracle_filter's" in md
    ac = row  # the activeclip row: its reference's and online proxy's own zero-shot, in the notes under the table
    assert f"activeclip seed 0 {ac['reference_accuracy']:.3f} / {ac['proxy_accuracy']:.3f}" in md
    assert "uniform " not in md.split("The small models' own zero-shot")[1].split("\n")[0]


def test_the_on_request_arms_score_with_the_learner_and_run_only_when_named() -> None:
    code = ("import activeclip as a, dataclasses; from learnability import config as C\n"
            "cfg = C.apply_overrides(C.RunConfig(), a.BENCH_OVERRIDES)\n"
            "for arm in ('rho', 'jest_learner', 'jest_t5', 'jest'):\n"
            "    c = a.arm_run_config(cfg, arm, '/tmp/x'); C.validate(c)\n"
            "    print(c.selection.score, c.selection.sampler, c.selection.filter_ratio, c.selection.temperature,\n"
            "          arm in a.ON_REQUEST)")
    r = subprocess.run([sys.executable, "-c", code], cwd=BENCH, env=dict(os.environ, PYTHONPATH=os.path.join(BENCH, "..", "src")),
                       capture_output=True, text=True)
    assert r.stdout.split() == ["rho", "softmax", "0.5", "1.0", "True", "rho", "jest", "0.8", "1.0", "True",
                                "learnability", "jest", "0.8", "5.0", "True",
                                "learnability", "jest", "0.8", "1.0", "False"], r.stderr[-2000:]


def test_oracle_script_runs_uniform_and_the_oracles_only_and_passes_renderings_through(tmp_path: Path) -> None:
    r = _bench("activeclip_oracle.py", tmp_path, "--pairs.renderings=2")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "res" / "activeclip-oracle.json").read_text())
    assert [row["arm"] for row in res["rows"]] == ["uniform", "oracle", "oracle_filter"]
    assert "400 garments x 2 renderings = 800 pairs" in res["settings"]
    runs = tmp_path / "runs" / "seed0"
    assert json.loads((runs / "uniform" / "summary.json").read_text())["pool_size"] == 800
    assert json.loads((runs / "oracle" / "summary.json").read_text())["pool_size"] == 160  # the clean 20% of the pairs (80% noise)
    # --collect: the rows of the arms that finished, as after an interrupted bench
    r = _bench("activeclip.py", tmp_path, f"--collect={tmp_path / 'runs'}", "--name=collected", "--pairs.renderings=2")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((tmp_path / "res" / "collected.json").read_text())["rows"]
    assert [row["arm"] for row in rows] == ["uniform", "oracle", "oracle_filter"]
    assert rows == res["rows"]


def test_diagnosis_smoke_checks_the_pools_and_trains_both_vocabularies(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.join(BENCH, "..", "src"),
                                                                   os.environ.get("PYTHONPATH", "")) if p))
    args = [sys.executable, os.path.join(BENCH, "activeclip_diagnose.py"), "--smoke", "--seeds=0",
            f"--out={tmp_path / 'runs'}", f"--results={tmp_path / 'res'}"]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "res" / "activeclip-diagnosis.json").read_text())
    checks = res["checks"]
    assert checks["images_equal"] and checks["ids_equal"] and checks["true_captions_equal"] and checks["test_equal"]
    assert checks["vocab_words_equal_by_count"] and checks["vocab_ids_differing_by_count"] > 0  # the confound
    assert checks["fixed_vocab_covers_every_word"]
    assert len(res["rows"]) == 4 and all(0 <= row["zero_shot"] <= 1 for row in res["rows"])
    # --collect rebuilds the same rows from the run folders
    r = subprocess.run(args + ["--collect"], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "res" / "activeclip-diagnosis.json").read_text())["rows"] == res["rows"]


def test_arms_alone_at_a_longer_budget_join_the_longer_table(tmp_path: Path) -> None:
    """--no-uniform trains the arms without the target (no uniform folder) and writes their ends, which
    bench/activeclip_longer.py joins to the arm's budget ends against uniform trained that long elsewhere."""
    table = _bench("activeclip.py", tmp_path, "--arms=oracle", "--budgets=1", "--train.steps=4", "--name=table")
    assert table.returncode == 0, table.stderr[-3000:]
    u8 = _bench("activeclip.py", tmp_path, "--arms=uniform", "--budgets=1", "--train.steps=8", "--name=u8",
                f"--out={tmp_path / 'u8'}")
    assert u8.returncode == 0, u8.stderr[-3000:]
    alone = _bench("activeclip.py", tmp_path, "--arms=oracle", "--budgets=1", "--train.steps=8", "--no-uniform",
                   "--name=o8", f"--out={tmp_path / 'o8'}")
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert os.listdir(tmp_path / "o8" / "seed0") == ["oracle"]  # no uniform run, and the oracle needs no reference
    res = json.loads((tmp_path / "res" / "o8.json").read_text())
    (row,) = res["rows"]
    assert row["arm"] == "oracle" and res["budgets"] == [8] and row["end_8"] == row["end_zeroshot"]
    assert 0 <= row["end_zeroshot"] <= 1 and row["final_r1_i2t"] is not None
    assert row["corrupted_selected"] == row["swapped_selected"] == 0  # the oracle trains on clean pairs only
    assert row["flops_8"] > 0 and row["flops_reference"] == 0  # its FLOP ledger (the oracle trains no reference)
    # uniform draws on the clean pairs, without replacement within an epoch: every trained pair is new
    pool = json.loads((tmp_path / "o8" / "seed0" / "oracle" / "summary.json").read_text())["pool_size"]
    assert row["distinct_trained"] == pytest.approx(min(1.0, 8 * 16 / pool)) and 0 < row["class_balance_selected"] <= 1
    env = dict(os.environ, PYTHONPATH=os.path.join(BENCH, "..", "src"))
    merged = subprocess.run([sys.executable, os.path.join(BENCH, "activeclip.py"), f"--merge={tmp_path / 'res' / 'o8.json'}",
                             f"--results={tmp_path / 'merged'}", "--name=o8"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert merged.returncode == 0, merged.stderr
    assert json.loads((tmp_path / "merged" / "o8.json").read_text())["rows"] == res["rows"]
    assert f"| oracle | {row['end_zeroshot']:.4f} (R@1" in (tmp_path / "merged" / "o8.md").read_text()
    assert f"| 0.0% / 0.0% | {100 * row['distinct_trained']:.1f}% / {row['class_balance_selected']:.3f} |" in (
        tmp_path / "merged" / "o8.md").read_text()
    mixed = subprocess.run([sys.executable, os.path.join(BENCH, "activeclip.py"),
                            f"--merge={tmp_path / 'res' / 'o8.json'},{tmp_path / 'res' / 'u8.json'}",
                            f"--results={tmp_path / 'merged'}"], env=env, capture_output=True, text=True, timeout=120)
    assert mixed.returncode != 0 and "merge each kind on its own" in mixed.stderr
    r = subprocess.run([sys.executable, os.path.join(BENCH, "activeclip_longer.py"), f"--table={tmp_path / 'res' / 'table.json'}",
                        f"--longer={tmp_path / 'res' / 'u8.json'},{tmp_path / 'res' / 'o8.json'}",
                        f"--results={tmp_path / 'longer'}"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    longer = json.loads((tmp_path / "longer" / "activeclip-longer.json").read_text())
    assert longer["arms_longer"]["oracle@seed0"] == {"8": row["end_zeroshot"]}
    (cell,) = [c for c in longer["savings"] if c["arm"] == "oracle"]
    assert cell["arm_budgets"] == [4, 8] and cell["uniform_steps"] == 8
    # every run recorded its ledger, so the oracle's compute against uniform@8 is set too: the same
    # per-step cost as uniform's (the filter is free), so compute saved = updates saved where it reaches
    if cell["mark"] != "<":
        assert cell["compute_saved"] == pytest.approx(cell["updates_saved"], abs=0.02)
    else:
        assert cell["compute_saved"] is not None
    nothing = _bench("activeclip.py", tmp_path, "--arms=uniform", "--no-uniform", f"--out={tmp_path / 'none'}")
    assert nothing.returncode != 0 and "name one besides uniform" in nothing.stderr


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits bench (uniform, oracle, activeclip) and the reference probe run twice, at 4
    renderings, once for the tests below (each bench subprocess costs seconds of start-up)."""
    tmp = tmp_path_factory.mktemp("digits")
    args = ("--dataset=digits", "--pairs.renderings=4")
    bench = _bench("activeclip.py", tmp / "bench", *args, "--arms=oracle,activeclip", "--budgets=1")
    assert bench.returncode == 0, bench.stderr[-3000:]
    for k in range(2):
        probe = _bench("activeclip_reference.py", tmp / "probe", *args, "--proxies=dual_cnn_tiny,dual_cnn_tiny_fullres")
        assert probe.returncode == 0, probe.stderr[-2000:]
        shutil.copy(tmp / "probe" / "res" / "activeclip-reference-digits.json", tmp / f"probe{k}.json")
    return tmp


def test_the_second_dataset_runs_the_same_bench_on_digits(digits: Path) -> None:
    """--dataset=digits: the same arms and protocol on pairs rendered from scikit-learn's digits."""
    res = json.loads((digits / "bench" / "res" / "activeclip.json").read_text())
    assert [row["arm"] for row in res["rows"]] == ["uniform", "oracle", "activeclip"]
    assert res["settings"].startswith("data digits on a 24-pixel canvas; ") and "x 4 renderings" in res["settings"]
    run = digits / "bench" / "runs" / "seed0" / "uniform"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["source"] == "digits" and cfg["pairs"]["image_size"] == 24 and cfg["pairs"]["renderings"] == 4
    vocab = json.loads((run / "tokenizer.json").read_text())["vocab"]
    assert "seven" in vocab and "sneaker" not in vocab


def test_reference_probe_trains_then_reloads_each_proxy(digits: Path) -> None:
    """bench/activeclip_reference.py: one reference per proxy, evaluated; a second run loads them
    from --out (no training) and reports the very same accuracies and costs."""
    runs = [json.loads((digits / f"probe{k}.json").read_text())["rows"] for k in range(2)]
    assert runs[0] == runs[1]
    rows = {r["proxy"]: r for r in runs[0]}
    assert set(rows) == {"dual_cnn_tiny", "dual_cnn_tiny_fullres"}
    assert all(0 <= r[k] <= 1 for r in rows.values() for k in ("zero_shot", "r1_i2t", "train_zero_shot"))
    # no 2x pooling: about four times the image tower's FLOPs, so a smaller learner/proxy ratio
    assert rows["dual_cnn_tiny"]["learner_over_proxy_flops"] > 3 * rows["dual_cnn_tiny_fullres"]["learner_over_proxy_flops"]
    assert (digits / "probe" / "runs" / "seed0" / "dual_cnn_tiny_fullres" / "reference" / "meta.json").is_file()
    assert "| dual_cnn_tiny_fullres |" in (digits / "probe" / "res" / "activeclip-reference-digits.md").read_text()


def test_reference_probe_trains_the_very_reference_the_bench_trains(digits: Path) -> None:
    """Same seed, same settings: the probe's reference and the bench's have the same weights, so the
    probe's --out can stand in for a bench's reference folder."""
    metas = [json.loads(p.read_text())["weights_fingerprint"] for p in (
        digits / "probe" / "runs" / "seed0" / "dual_cnn_tiny" / "reference" / "meta.json",
        digits / "bench" / "runs" / "seed0" / "reference" / "meta.json")]
    assert metas[0] == metas[1]
    # and the bench's rows carry that reference's own zero-shot, as the probe measures it
    probe = {r["proxy"]: r for r in json.loads((digits / "probe0.json").read_text())["rows"]}
    bench = {r["arm"]: r for r in json.loads((digits / "bench" / "res" / "activeclip.json").read_text())["rows"]}
    assert bench["activeclip"]["reference_accuracy"] == pytest.approx(probe["dual_cnn_tiny"]["zero_shot"], abs=1e-12)
    assert 0 < bench["activeclip"]["proxy_accuracy"] <= 1 and bench["uniform"]["reference_accuracy"] is None


@pytest.mark.parametrize("arg, says", [("--proxies=nope", "pairs.proxy must be one of"),
                                       ("--proxies=", "--proxies names no architecture"),
                                       ("--seeds=a", "--seeds takes a comma list of integers"),
                                       ("--pairs.bogus=1", "bogus")])
def test_reference_probe_refuses_bad_input_before_loading_data(tmp_path: Path, arg: str, says: str) -> None:
    r = _bench("activeclip_reference.py", tmp_path, "--dataset=digits", arg)
    assert r.returncode != 0 and says in r.stderr and "Traceback" not in r.stderr, r.stderr[-1000:]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, says", [(("--data.bogus=1",), "unknown config key 'data.bogus'"),
                                        (("--dataset=digits", "--data.reference_size=5000"), "data.reference_size=5000")])
def test_the_bench_refuses_bad_input_in_one_line_that_says_what_to_fix(tmp_path: Path, args: tuple, says: str) -> None:
    r = _bench("activeclip.py", tmp_path, *args)
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr[-1000:]
    assert r.stderr.startswith("activeclip.py: error: ")
    assert not (tmp_path / "res").exists()


def test_the_paired_table_sets_each_scored_arm_against_activeclip_seed_by_seed() -> None:
    sys.path.insert(0, BENCH)
    try:
        from activeclip import paired_lines
    finally:
        sys.path.remove(BENCH)

    def row(arm: str, seed: int, saved: float | None, end: float) -> dict:
        return {"arm": arm, "seed": seed, "decayed_updates_saved": saved, "end_zeroshot": end}

    rows = [row("uniform", s, 0.0, 0.5) for s in range(3)]
    rows += [row("activeclip", s, v, e) for s, v, e in ((0, 0.534, 0.666), (1, 0.399, 0.638), (2, 0.495, 0.663))]
    rows += [row("jest_t5", s, v, e) for s, v, e in ((0, 0.547, 0.675), (1, 0.441, 0.653), (2, 0.438, 0.671))]
    rows += [row("hard_learner", s, None, 0.3) for s in range(3)]
    md = "\n".join(paired_lines(rows))
    assert "| jest_t5 | +1.3, +4.2, -5.7 | -0.1 ± 5.1 pts | 2 / 1 of 3 | 1.00 | +0.9, +1.5, +0.8 | +1.1 ± 0.4 pts | 3 / 0 of 3 | 0.25 |" in md
    assert "| hard_learner | -, -, - | - | 0 / 3 of 3 | 0.25 |" in md  # never reached: behind on every seed
    assert "| uniform |" not in md and "| activeclip |" not in md
    assert paired_lines([r for r in rows if r["arm"] != "activeclip"]) == []  # nothing to pair against
    # a seed an arm missed is left out of the mean, and says so; a censored saving makes its difference a bound
    rows[-4]["decayed_updates_saved"] = None  # jest_t5 missed on seed 2
    rows[3]["censored"] = True  # activeclip's seed 0: its smallest budget already reached (a lower bound)
    md = "\n".join(paired_lines(rows))
    assert "| jest_t5 | ≤+1.3, +4.2, - | +2.7 ± 2.1 pts (2 of 3 seeds) | 2 / 1 of 3 | 1.00 |" in md
    # an arm that ran on other seeds only (an interrupted bench's collected rows) is named, not a crash
    late = [row("easy_reference", 9, 0.3, 0.6)]
    assert "| easy_reference | no seed in common with activeclip |" in "\n".join(paired_lines(rows + late))
