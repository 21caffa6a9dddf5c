"""Checkpoints: atomic, checksummed, fall back to the previous good one; resume is bit-identical.

The SIGKILL test runs the real command line in a subprocess and kills it at random points
(during reference training, mid-way through a checkpoint write, between checkpoints, and at a
random time after a random number of new rows, checked to have landed before the run finished),
drawn from a fixed seed (`LEARNABILITY_KILL_SEED`, default 0) so a failure reproduces; the resumed
run's selected ids, losses, FLOPs and accuracies equal the uninterrupted run's.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from learnability import checkpoint as ck
from learnability import config as C
from learnability import faults
from learnability.cli import main
from learnability.data import Coverage
from learnability.io import read_jsonl
from learnability.loop import run

TINY = ["--data.source=digits", "--data.reference_size=300", "--data.label_noise=0.4",
        "--model.learner=cnn_tiny", "--model.proxy=mlp_tiny", "--train.steps=30", "--train.batch_size=32",
        "--train.eval_every=5", "--reference.epochs=3", "--progress=false", "--train.threads=1"]


def same_rows(a: list[dict], b: list[dict]) -> None:
    """Every logged value but wall-clock seconds is equal, bit for bit."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for k in x:
            if not k.startswith("seconds"):
                assert x[k] == y[k], (x["step"], k, x[k], y[k])


def test_encode_decode_roundtrip_and_checksum():
    state = {"w": torch.arange(5.0), "step": 3}
    blob = ck.encode(state)
    out = ck.decode(blob)
    assert out["step"] == 3 and torch.equal(out["w"], state["w"])
    damaged = bytearray(blob)
    damaged[-3] ^= 0xFF
    with pytest.raises(ck.CheckpointError, match="checksum"):
        ck.decode(bytes(damaged), "x.ckpt")
    with pytest.raises(ck.CheckpointError, match="not a learnability checkpoint"):
        ck.decode(b"PK\x03\x04" + blob[4:], "x.ckpt")


def test_write_prunes_to_keep_and_lists_newest_first(tmp_path):
    for step in (5, 10, 15, 20):
        ck.write(str(tmp_path), step, {"step": step}, keep=2)
    names = [os.path.basename(p) for p in ck.list_checkpoints(str(tmp_path))]
    assert names == ["step-00000020.ckpt", "step-00000015.ckpt"]
    assert ck.load_latest(str(tmp_path))["step"] == 20


def test_damaged_newest_falls_back_to_previous_with_a_warning(tmp_path, capsys):
    for step in (5, 10):
        ck.write(str(tmp_path), step, {"step": step}, keep=2)
    newest = ck.list_checkpoints(str(tmp_path))[0]
    data = bytearray(Path(newest).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(newest).write_bytes(bytes(data))
    assert ck.load_latest(str(tmp_path))["step"] == 5
    assert "step-00000010.ckpt is damaged" in capsys.readouterr().err


def test_every_checkpoint_damaged_is_a_clear_error(tmp_path):
    ck.write(str(tmp_path), 5, {"step": 5})
    path = Path(ck.list_checkpoints(str(tmp_path))[0])
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(ck.CheckpointError, match="no usable checkpoint.*Delete"):
        ck.load_latest(str(tmp_path))


def test_a_failed_write_never_replaces_the_good_checkpoint(tmp_path, monkeypatch):
    ck.write(str(tmp_path), 5, {"step": 5})
    good = Path(ck.list_checkpoints(str(tmp_path))[0]).read_bytes()

    def boom(name):
        if name == "checkpoint_write":
            raise OSError("disk full")

    monkeypatch.setattr(faults, "point", boom)
    with pytest.raises(OSError):
        ck.write(str(tmp_path), 10, {"step": 10})
    assert os.listdir(tmp_path / "checkpoints") == ["step-00000005.ckpt"]  # no temporary left, no new file
    assert Path(ck.list_checkpoints(str(tmp_path))[0]).read_bytes() == good


def test_reopen_metrics_drops_rows_after_the_checkpoint_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"ste')
    w = ck.reopen_metrics(str(path), 2)
    w.write({"step": 3})
    w.close()
    assert [r["step"] for r in read_jsonl(str(path))] == [1, 2, 3]
    with pytest.raises(ck.CheckpointError, match="fewer complete rows"):
        ck.reopen_metrics(str(path), 7)


def test_restore_refuses_a_checkpoint_of_another_config():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    state = ck.capture({"learner": a, "proxy": None})
    with pytest.raises(ck.CheckpointError, match="another config"):
        ck.restore({"learner": b, "selector": b}, state)
    ck.restore({"learner": b}, state)
    assert torch.equal(a.weight, b.weight)


def test_restore_starts_a_part_added_later_empty_with_a_warning(capsys):
    """A checkpoint written before `coverage` was checkpointed resumes; the part starts empty."""
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    state = ck.capture({"learner": a})
    cov = Coverage(10)
    ck.restore({"learner": b, "coverage": cov}, state)
    assert torch.equal(a.weight, b.weight) and cov.count == 0 and cov.partial
    assert "before runs saved their 'coverage'" in capsys.readouterr().err
    ck.restore({"learner": b, "coverage": Coverage(10)}, state, warn=False)  # a data-parallel rank but 0
    assert capsys.readouterr().err == ""
    assert not Coverage(10).partial and ck.capture({"c": cov})["parts"]["c"]["partial"]  # kept in the next checkpoint
    with pytest.raises(ck.CheckpointError, match=r"lacks \['selector'\]"):  # not one added later: refused
        ck.restore({"learner": b, "coverage": cov, "selector": b}, state)


def test_resume_of_a_checkpoint_without_coverage_continues(tmp_path, monkeypatch, capsys):
    """End to end: strip the coverage part from a run's checkpoint (as an older version wrote it);
    the resumed run finishes with the uninterrupted run's losses, and its `distinct_trained` counts
    from the resume on (below the full run's, never above)."""
    cfg = C.apply_overrides(C.RunConfig(), TINY + ["--selection.score=uniform", "--checkpoint.every=4"])
    full = run(C.dataclasses.replace(cfg, out=str(tmp_path / "full")))
    part = C.dataclasses.replace(cfg, out=str(tmp_path / "part"))
    _interrupt_at(monkeypatch, "step", 10)
    with pytest.raises(Interrupt):
        run(part)
    monkeypatch.setattr(faults, "point", lambda name: None)
    path = ck.list_checkpoints(part.out)[0]
    with open(path, "rb") as f:
        state = ck.decode(f.read(), path)
    del state["parts"]["coverage"]
    with open(path, "wb") as f:
        f.write(ck.encode(state))
    capsys.readouterr()
    resumed = run(part, resume=True)
    assert "resuming with it empty" in capsys.readouterr().err
    assert resumed["final_accuracy"] == full["final_accuracy"]
    a, b = (read_jsonl(str(tmp_path / d / "metrics.jsonl")) for d in ("full", "part"))
    train = [(x, y) for x, y in zip(a, b) if "distinct_trained" in x]
    assert all(x["loss_learner"] == y["loss_learner"] and x["selected_digest"] == y["selected_digest"] for x, y in train)
    assert all(y["distinct_trained"] <= x["distinct_trained"] for x, y in train)
    assert train[-1][1]["distinct_trained"] < train[-1][0]["distinct_trained"]
    assert resumed["coverage_partial"] and not full["coverage_partial"]
    from learnability.report import build_report

    build_report([part.out], str(tmp_path / "rep"))
    assert "(counted from a resume on)" in (tmp_path / "rep" / "report.md").read_text()


class Interrupt(Exception):
    pass


def _interrupt_at(monkeypatch, name: str, n: int) -> None:
    seen = {"n": 0}

    def point(p):
        if p == name:
            seen["n"] += 1
            if seen["n"] == n:
                raise Interrupt(p)

    monkeypatch.setattr(faults, "point", point)


@pytest.mark.parametrize("extra", [["--selection.score=learnability"], ["--selection.score=uniform"],
                                   ["--selection.score=learnability", "--reference.train_on=online", "--train.ema=0"],
                                   ["--selection.score=learnability", "--data.order=bijection"]])
def test_resume_in_process_is_bit_identical(tmp_path, monkeypatch, extra):
    cfg = C.apply_overrides(C.RunConfig(), TINY + extra + ["--checkpoint.every=4"])
    # interrupted after step 10's row, two steps past the step-8 checkpoint
    full, resumed = _full_and_resumed(run, cfg, tmp_path, monkeypatch, at=10)
    assert resumed["ledger"]["flops"] == full["ledger"]["flops"]


def _full_and_resumed(run_fn, cfg, tmp_path, monkeypatch, at: int) -> tuple[dict, dict]:
    """Summaries of an uninterrupted run and of one interrupted after step `at` and resumed;
    checks that their logged rows agree bit for bit."""
    full = run_fn(C.dataclasses.replace(cfg, out=str(tmp_path / "full")))
    part = C.dataclasses.replace(cfg, out=str(tmp_path / "part"))
    _interrupt_at(monkeypatch, "step", at)
    with pytest.raises(Interrupt):
        run_fn(part)
    monkeypatch.setattr(faults, "point", lambda name: None)
    resumed = run_fn(part, resume=True)
    same_rows(read_jsonl(str(tmp_path / "full" / "metrics.jsonl")), read_jsonl(str(tmp_path / "part" / "metrics.jsonl")))
    assert resumed["final_accuracy"] == full["final_accuracy"]
    return full, resumed


def test_resume_cli_errors(tmp_path, capsys):
    assert main(["run", "--resume"]) == 2
    assert "--resume needs the run folder" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no config.json there" in capsys.readouterr().err
    out = tmp_path / "r"
    assert main(["run", f"--out={out}", *TINY, "--train.steps=2", "--selection.score=uniform"]) == 0
    assert main(["run", "--resume", str(out), "--train.lr=0.1"]) == 2
    assert "drop --train.lr=0.1" in capsys.readouterr().err
    assert main(["run", f"--out={tmp_path / 'x'}", *TINY, "--checkpoint.every=-1"]) == 2
    assert "checkpoint.every" in capsys.readouterr().err


def _cli(args: list[str], kill_at: str = "") -> int:
    env = dict(os.environ, LEARNABILITY_KILL_AT=kill_at)
    p = subprocess.Popen([sys.executable, "-m", "learnability.cli", *args], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=300)
    assert p.returncode in (0, -signal.SIGKILL), err
    return p.returncode


def _rows(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _cli_killed_mid_run(args: list[str], metrics: str, rows: int, delay: float) -> int:
    """Run the CLI and SIGKILL it `delay` seconds after its `metrics` file first holds `rows` rows
    (the file holds fewer when it starts), wherever in a step that lands; the return code."""
    p = subprocess.Popen([sys.executable, "-m", "learnability.cli", *args], env=dict(os.environ, LEARNABILITY_KILL_AT=""),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while p.poll() is None and time.monotonic() < deadline:
        if _rows(metrics) >= rows:
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    _, err = p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL, f"the run was not killed (exit {p.returncode}): {err}"
    return p.returncode


KILL_SEED = int(os.environ.get("LEARNABILITY_KILL_SEED", "0"))  # the kill schedule; any seed must pass


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    args = TINY + ["--selection.score=learnability", "--train.steps=40", "--checkpoint.every=3"]
    assert _cli(["run", f"--out={tmp_path / 'full'}", *args]) == 0
    rng = random.Random(KILL_SEED)  # 3 epochs x 3 batches of reference training: 9 points
    run_dir = str(tmp_path / "killed")
    kills = [("reference_train", rng.randint(1, 9)), ("checkpoint_write", rng.randint(1, 3)),
             ("step", rng.randint(1, 8)), ("step", rng.randint(1, 8)), ("checkpoint_write", 1)]
    first = True
    for point, n in kills:
        cmd = ["run", f"--out={run_dir}", *args] if first else ["run", "--resume", run_dir]
        assert _cli(cmd, kill_at=f"{point}:{n}") == -signal.SIGKILL, (KILL_SEED, kills, point, n)
        first = False
        assert not os.path.exists(os.path.join(run_dir, "summary.json"))
    # a kill at a random time: 1-8 rows past what the file holds now (at most 21 of 40 after the
    # kills above), then up to one step's time later, wherever in the step that lands
    metrics = os.path.join(run_dir, "metrics.jsonl")
    _cli_killed_mid_run(["run", "--resume", run_dir], metrics, _rows(metrics) + rng.randint(1, 8), rng.uniform(0, 0.02))
    assert not os.path.exists(os.path.join(run_dir, "summary.json")), (KILL_SEED, kills)
    assert _cli(["run", "--resume", run_dir]) == 0
    same_rows(read_jsonl(str(tmp_path / "full" / "metrics.jsonl")), read_jsonl(metrics))
    assert not [f for f in os.listdir(os.path.join(run_dir, "checkpoints")) if f.endswith(".tmp")]


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist not installed")
@pytest.mark.parametrize("sampler,schedule", [("softmax", []), ("jest", []),
                                             ("softmax", ["--train.warmup=5", "--train.schedule=cosine"])])
def test_clip_resume_in_process_is_bit_identical(tmp_path, monkeypatch, sampler, schedule):
    from learnability.clip_loop import run_clip

    args = ["--task=clip", "--data.pool_size=400", "--data.reference_size=200", "--data.test_size=100",
            "--pairs.retrieval_size=100", "--train.batch_size=16", "--train.steps=12", "--train.eval_every=4",
            "--reference.epochs=1", "--pairs.n_chunks=4", "--progress=false", "--train.threads=1",
            "--selection.score=learnability", f"--selection.sampler={sampler}", "--checkpoint.every=3", *schedule]
    _full_and_resumed(run_clip, C.apply_overrides(C.RunConfig(), args), tmp_path, monkeypatch, at=8)


def test_compare_resume_keeps_finished_arms_and_continues_the_rest(tmp_path, monkeypatch, capsys):
    args = ["--arms=uniform,learnability", *TINY, "--checkpoint.every=4"]
    assert main(["compare", f"--out={tmp_path / 'full'}", *args]) == 0
    _interrupt_at(monkeypatch, "step", 30 + 9)  # the uniform arm's 30 steps, then 9 of learnability's
    with pytest.raises(Interrupt):
        main(["compare", f"--out={tmp_path / 'part'}", *args])
    uniform_summary = (tmp_path / "part" / "uniform" / "summary.json").read_bytes()
    monkeypatch.setattr(faults, "point", lambda name: None)
    assert main(["compare", "--resume", str(tmp_path / "part")]) == 0
    assert (tmp_path / "part" / "uniform" / "summary.json").read_bytes() == uniform_summary  # not rerun
    for arm in ("uniform", "learnability"):
        same_rows(read_jsonl(str(tmp_path / "full" / arm / "metrics.jsonl")),
                  read_jsonl(str(tmp_path / "part" / arm / "metrics.jsonl")))
    assert main(["compare", "--resume", str(tmp_path / "part"), "--arms=rho"]) == 2
    assert "drop --arms=rho" in capsys.readouterr().err


def test_a_diverged_proxy_stops_with_exit_1_and_keeps_files(tmp_path, monkeypatch, capsys):
    from learnability.selector import Selector

    real = Selector._model_losses

    def nan_online(self, which, batch):
        out = real(self, which, batch)
        return out * float("nan") if which == "proxy" else out

    monkeypatch.setattr(Selector, "_model_losses", nan_online)
    out = tmp_path / "nan"
    assert main(["run", f"--out={out}", *TINY, "--selection.score=learnability"]) == 1
    assert "non-finite" in capsys.readouterr().err
    assert (out / "config.json").is_file()
