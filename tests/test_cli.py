"""End-to-end through the real command line on tiny settings (digits: 8x8 images, seconds a run)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from learnability import analysis
from learnability.cli import main
from learnability.flops import mlp_cost
from learnability.io import read_jsonl

TINY = ["--data.source=digits", "--data.reference_size=300", "--data.label_noise=0.4",
        "--model.learner=cnn_tiny", "--model.proxy=mlp_tiny", "--train.steps=40", "--train.batch_size=32",
        "--train.eval_every=5", "--reference.epochs=3", "--progress=false", "--train.threads=1"]


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; `timeout` guards against a hang (not a timing: the machines are shared)."""
    return subprocess.run([sys.executable, "-m", "learnability.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_compare_end_to_end_report_consistent_with_metrics(tmp_path):
    out = tmp_path / "cmp"
    r = cli("compare", f"--out={out}", "--arms=uniform,learnability,rho", *TINY)
    assert r.returncode == 0, r.stderr
    assert "report:" in r.stdout and "| learnability |" in r.stdout
    for f in ("report.md", "report.json", "accuracy_vs_updates.png", "accuracy_vs_flops.png",
              "accuracy_vs_wallclock.png", "compare.json", "reference/model.pt", "reference/losses.json"):
        assert (out / f).is_file(), f
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = {r["arm"]: r for r in json.loads((out / "report.json").read_text())}
    uniform = read_jsonl(str(out / "uniform" / "metrics.jsonl"))
    for arm in ("uniform", "learnability", "rho"):
        rows = read_jsonl(str(out / arm / "metrics.jsonl"))
        assert [r["step"] for r in rows] == list(range(1, 41))
        assert len(analysis.evaluations(rows)) == 8
        cfg = json.loads((out / arm / "config.json").read_text())
        assert cfg["selection"]["score"] == arm
        expect = analysis.savings(uniform, rows)
        for key in ("updates_saved", "compute_saved", "wallclock_saved", "final_accuracy", "corrupted_selected"):
            a, b = table[arm][key], expect[key]
            assert (a is None and b is None) or math.isclose(a, b), (arm, key)
        # the ledger is cumulative and the one-off reference cost is charged from step 1
        flops = [r["flops_total"] for r in rows]
        assert flops == sorted(flops)
    assert table["uniform"]["updates_saved"] == 0.0
    lr = read_jsonl(str(out / "learnability" / "metrics.jsonl"))
    assert lr[0]["flops_reference"] > 0 and lr[0]["flops_scoring"] > 0 and lr[0]["flops_proxy_train"] > 0
    assert uniform[0]["flops_reference"] == 0 and uniform[0]["flops_scoring"] == 0
    # rho scores with the learner: its scoring FLOPs per step exceed the learner's forward on B
    summary = json.loads((out / "rho" / "summary.json").read_text())
    assert summary["closed_form_step_flops"]["scoring"] >= 64 * summary["learner_flops_per_example"]["forward"]
    report = (out / "report.md").read_text()
    assert "![accuracy_vs_flops.png](accuracy_vs_flops.png)" in report
    # coverage against keeping at random
    n, last = summary["pool_size"], rows[-1]
    chance = analysis.random_keep_coverage(last["candidates_drawn"], last["examples_seen"], n)
    assert f"| rho | {last['examples_seen'] / n:.2f} | {100 * last['distinct_trained']:.1f}% | {100 * chance:.1f}% |" in report
    ref = json.loads((out / "learnability" / "summary.json").read_text())
    assert (f"| learnability | test | {100 * ref['reference_accuracy']:.1f}% | {100 * ref['proxy_accuracy']:.1f}% | "
            f"{100 * ref['final_accuracy']:.1f}% |") in report
    assert f"| rho | test | {100 * summary['reference_accuracy']:.1f}% | n/a |" in report  # rho has no online proxy
    u = uniform[-1]  # uniform trains on exactly what it draws
    assert f"| uniform | {u['examples_seen'] / n:.2f} | {100 * u['distinct_trained']:.1f}% | {100 * min(1.0, u['examples_seen'] / n):.1f}% | 1.00 |" in report
    # a copied run reports the same from its files alone
    copy = tmp_path / "copy"
    r2 = cli("report", str(out), f"--out={copy}")
    assert r2.returncode == 0, r2.stderr
    assert json.loads((copy / "report.json").read_text()) == json.loads((out / "report.json").read_text())


def test_run_ledger_matches_closed_form(tmp_path):
    out = tmp_path / "run"
    assert main(["run", f"--out={out}", "--selection.score=learnability", *TINY]) == 0
    rows = read_jsonl(str(out / "metrics.jsonl"))
    summary = json.loads((out / "summary.json").read_text())
    per_step = summary["closed_form_step_flops"]
    last, first = rows[-1], rows[0]
    assert math.isclose(last["flops_learner"], 40 * per_step["learner"])
    assert math.isclose(last["flops_scoring"], 40 * per_step["scoring"])
    assert math.isclose(last["flops_proxy_train"], 40 * per_step["proxy_train"])
    assert last["flops_reference"] == first["flops_reference"] > 0
    assert summary["super_batch"] == 64 and summary["proxy_flops_ratio"] > 1
    # the small models' own test accuracy: the saved reference, evaluated apart, gives the same
    import torch

    from learnability import config as C
    from learnability.tasks import get_task

    cfg = C.apply_overrides(C.RunConfig(), [*TINY, "--selection.score=learnability"])
    task = get_task("classify")(cfg, None, torch.device("cpu"), False)
    ref = task.build_model("proxy")
    ref.load_state_dict(torch.load(out / "reference" / "model.pt", weights_only=True))
    assert summary["reference_accuracy"] == task.evaluate(ref, final=False)["test_accuracy"]
    assert 0.1 < summary["proxy_accuracy"] <= 1 and 0.1 < summary["reference_accuracy"] <= 1


def test_run_refuses_to_overwrite(tmp_path):
    out = tmp_path / "run"
    assert main(["run", f"--out={out}", "--selection.score=uniform", *TINY[:-4], "--train.steps=3",
                 "--train.eval_every=3", "--progress=false"]) == 0
    assert main(["run", f"--out={out}", "--train.steps=3"]) == 2


@pytest.mark.parametrize("args, words", [
    (["--train.stpes=3"], ["train.stpes", "steps"]),
    (["--nope=1"], ["nope"]),
    (["--train.steps=many"], ["train.steps", "int"]),
    (["--selection.filter_ratio=1.0"], ["selection.filter_ratio", "[0, 1)"]),
    (["--selection.filter_ratio=-0.5"], ["selection.filter_ratio"]),
    (["--selection.score=best"], ["selection.score", "learnability"]),
    (["--data.pool_size=20", "--train.batch_size=32"], ["pool holds only", "batch size"]),
    (["--data.source=npz", "--data.path=/nonexistent.npz"], ["npz", "does not exist"]),
    (["--data.path=/nonexistent-dir"], ["dataset-fashion-mnist"]),
    (["--data.source=digits", "--data.reference_size=5000"], ["reference_size"]),
])
def test_bad_input_exits_2_naming_what_to_fix(tmp_path, capsys, args, words):
    base = [a for a in TINY if not a.startswith(("--data.source", "--data.reference_size"))]
    if not any(a.startswith("--data.source") for a in args) and not any("data.path" in a for a in args):
        base = TINY
    assert main(["run", f"--out={tmp_path / 'r'}", *base, *args]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, (w, err)


def test_an_arm_whose_alias_does_not_fit_the_task_is_named(tmp_path, capsys):
    # jest_learner sets sampler=jest, which classification has not: the message names the arm, not
    # only the key the user never typed; nothing is trained
    assert main(["compare", f"--out={tmp_path / 'c'}", "--arms=uniform,jest_learner", *TINY]) == 2
    err = capsys.readouterr().err
    assert "arm 'jest_learner'" in err and "selection.sampler" in err, err
    assert not (tmp_path / "c" / "uniform").exists()


def test_nan_loss_stops_naming_step_and_arm_and_keeps_files(tmp_path, capsys):
    out = tmp_path / "nan"
    code = main(["run", f"--out={out}", "--selection.score=learnability", "--train.lr=1e30", *TINY])
    err = capsys.readouterr().err
    assert code == 1
    assert "arm learnability" in err and "at step" in err and str(out) in err
    assert (out / "config.json").is_file() and (out / "metrics.jsonl").is_file()


def test_reference_from_another_dataset_is_refused(tmp_path, capsys):
    ref = tmp_path / "ref"
    assert main(["run", f"--out={tmp_path / 'a'}", f"--reference.dir={ref}", "--selection.score=easy_reference",
                 *TINY]) == 0
    # the same reference folder with other data: the input shape and the training set differ
    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, x=rng.integers(0, 255, (400, 12, 12), dtype=np.uint8), y=rng.integers(0, 3, 400))
    args = [a for a in TINY if not a.startswith(("--data.source", "--data.reference_size"))]
    code = main(["run", f"--out={tmp_path / 'b'}", f"--reference.dir={ref}", "--selection.score=easy_reference",
                 "--data.source=npz", f"--data.path={npz}", "--data.reference_size=100", *args])
    assert code == 2
    assert "trained differently" in capsys.readouterr().err


def test_vit_patch_mismatch_is_a_clear_error(tmp_path, capsys):
    rng = np.random.default_rng(0)
    npz = tmp_path / "odd.npz"
    np.savez(npz, x=rng.integers(0, 255, (300, 10, 10), dtype=np.uint8), y=rng.integers(0, 3, 300))
    args = [a for a in TINY if not a.startswith(("--data.source", "--data.reference_size", "--model.learner"))]
    code = main(["run", f"--out={tmp_path / 'v'}", "--data.source=npz", f"--data.path={npz}",
                 "--data.reference_size=100", "--model.learner=vit_tiny", *args])
    assert code == 2
    assert "not divisible by the ViT patch size" in capsys.readouterr().err


def test_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert main(["train"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_settings_on_fashion_mnist_short(tmp_path):
    """The demo's compare on real Fashion-MNIST, shortened: learnability selects far fewer noisy labels."""
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("dataset-fashion-mnist is not installed")
    out = tmp_path / "demo"
    # 18 s on an idle 2-core machine, 104 s beside three busy processes, over 300 s beside three bench
    # runs: a generous guard, so a loaded CI machine does not read as a hang
    r = cli("compare", f"--out={out}", "--train.steps=150", "--train.eval_every=50", "--data.test_size=2000",
            "--progress=false", timeout=900)
    assert r.returncode == 0, r.stderr
    table = {x["arm"]: x for x in json.loads((out / "report.json").read_text())}
    assert table["uniform"]["corrupted_selected"] == pytest.approx(0.4, abs=0.03)
    assert table["learnability"]["corrupted_selected"] < 0.3



@pytest.mark.parametrize("variant", ["--reference.train_on=online", "--reference.train_on=pool",
                                     "--reference.cache=false", "--selection.sampler=topk"])
def test_reference_and_sampler_variants_run_and_account(tmp_path, variant):
    out = tmp_path / "v"
    assert main(["run", f"--out={out}", "--selection.score=learnability", *TINY, variant]) == 0
    rows = read_jsonl(str(out / "metrics.jsonl"))
    proxy = mlp_cost((1, 8, 8), (32,), 10)  # mlp_tiny on 8x8 digits; the reference shares it
    online = variant == "--reference.train_on=online"
    cached = variant not in ("--reference.train_on=online", "--reference.cache=false")
    # scoring per step: the proxy on B = 64 candidates, plus the reference unless its losses are cached
    assert math.isclose(rows[0]["flops_scoring"], 64 * proxy.forward * (1 if cached else 2))
    # an online reference trains alongside (b examples a step) and has no one-off cost
    assert math.isclose(rows[0]["flops_proxy_train"], 32 * proxy.train * (2 if online else 1))
    assert (rows[-1]["flops_reference"] == 0) == online
    assert len(analysis.evaluations(rows)) == 8


def test_user_errors_get_one_line_and_their_exit_code_and_a_bug_is_left_to_raise(capsys) -> None:
    from learnability.errors import ConfigError, NonFiniteLossError, report_user_error

    assert report_user_error(ConfigError("set x"), "tool") == 2
    assert report_user_error(NonFiniteLossError("loss is nan at step 3"), "tool") == 1
    assert report_user_error(FileNotFoundError("no data"), "tool") == 2
    assert capsys.readouterr().err.splitlines() == ["tool: error: set x", "tool: stopped: loss is nan at step 3",
                                                    "tool: error: no data"]
    assert report_user_error(RuntimeError("a bug"), "tool") is None and capsys.readouterr().err == ""


def test_compare_over_seeds_reports_medians_and_each_arm_against_uniform_seed_by_seed(tmp_path):
    out = tmp_path / "seeds"
    short = [a for a in TINY if not a.startswith(("--train.steps", "--train.eval_every"))] + [
        "--train.steps=20", "--train.eval_every=5"]
    r = cli("compare", f"--out={out}", "--seeds=3,5,7", "--arms=uniform,learnability", *short)
    assert r.returncode == 0, r.stderr
    assert "report over seeds" in r.stdout and "| learnability | 3 |" in r.stdout
    per_seed = {}
    for s in (3, 5, 7):
        for arm in ("uniform", "learnability"):
            assert json.loads((out / f"seed{s}" / arm / "config.json").read_text())["train"]["seed"] == s
        per_seed[s] = {row["arm"]: row for row in json.loads((out / f"seed{s}" / "report.json").read_text())}
    # the seeds share the data split (data.seed) and differ in what they train
    refs = [json.loads((out / f"seed{s}" / "reference" / "meta.json").read_text()) for s in (3, 5, 7)]
    assert len({m["trained_with"]["train_fingerprint"] for m in refs}) == 1
    assert [m["trained_with"]["seed"] for m in refs] == [5, 7, 9] and len({m["weights_fingerprint"] for m in refs}) == 3
    assert len({per_seed[s]["uniform"]["final_accuracy"] for s in (3, 5, 7)}) > 1
    got = json.loads((out / "report.json").read_text())
    assert got["seeds"] == [3, 5, 7]
    med = {m["arm"]: m for m in got["arms"]}
    for arm in ("uniform", "learnability"):
        for key in ("final_accuracy", "updates_saved", "compute_saved"):
            assert med[arm][key] == analysis.median([per_seed[s][arm][key] for s in (3, 5, 7)]), (arm, key)
    (pair,) = med["learnability"]["paired"]
    assert pair["against"] == "uniform" and pair["measure"] == "final_accuracy"
    diffs = {s: per_seed[s]["learnability"]["final_accuracy"] - per_seed[s]["uniform"]["final_accuracy"] for s in (3, 5, 7)}
    assert pair["diffs"] == {str(s): pytest.approx(d) for s, d in diffs.items()}
    assert pair["ahead"] == sum(d > 0 for d in diffs.values()) and pair["behind"] == sum(d < 0 for d in diffs.values())
    md = (out / "report.md").read_text()
    assert "| learnability | uniform | final accuracy |" in md and "(seed3/report.md)" in md
    assert main(["report", str(out), str(out / "seed3")]) == 2  # a multi-seed folder goes alone
    # `report` on the folder rebuilds the report over seeds; with --out elsewhere it writes only there
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["report", str(out), f"--out={tmp_path / 'elsewhere'}"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    assert (tmp_path / "elsewhere" / "seed5" / "report.md").is_file()
    assert (tmp_path / "elsewhere" / "report.md").read_text() == md
    # an arm cut short is named in the report over seeds
    (out / "seed5" / "learnability" / "summary.json").rename(tmp_path / "summary.json")
    assert main(["report", str(out), f"--out={tmp_path / 'cut'}"]) == 0
    assert "**Not finished**" in (tmp_path / "cut" / "report.md").read_text()
    assert "learnability (seed 5)" in (tmp_path / "cut" / "report.md").read_text()
    # resume: a lost seed and a half-finished one are trained again, finished runs are kept as they are
    kept = (out / "seed3" / "learnability" / "metrics.jsonl").read_text()
    shutil.rmtree(out / "seed7")
    assert main(["report", str(out)]) == 2  # a seed the compare names has not run: said, not skipped
    r = cli("compare", "--resume", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "seed3" / "learnability" / "metrics.jsonl").read_text() == kept
    assert (out / "seed5" / "learnability" / "summary.json").is_file()
    for s in (5, 7):  # deterministic given the seed
        again = json.loads((out / f"seed{s}" / "report.json").read_text())
        assert {row["arm"]: row["final_accuracy"] for row in again} == {
            a: row["final_accuracy"] for a, row in per_seed[s].items()}
    assert "Not finished" not in (out / "report.md").read_text()


@pytest.mark.parametrize("seeds, says", [("0", "two or more"), ("1,1", "two or more distinct"), ("a,b", "integers"),
                                         ("", "integers"), ("-1,2", ">= 0"),
                                         ("0,1 --reference.dir=shared", "drop --reference.dir"),
                                         ("0,1 --train.seed=5", "drop --train.seed=5")])
def test_compare_seeds_refuses_bad_input_before_training(tmp_path, capsys, seeds, says):
    first, *more = seeds.split(" ")
    assert main(["compare", f"--out={tmp_path / 'c'}", f"--seeds={first}", *more, *TINY]) == 2
    err = capsys.readouterr().err
    assert "--seeds" in err and says in err, err
    assert not (tmp_path / "c").exists()  # refused before anything is written
