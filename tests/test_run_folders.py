"""Run folders through the command line: resume from anywhere, never over a finished run, a damaged
config.json or metrics.jsonl named with its line, Ctrl-C saying how to continue, `--help`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from learnability import config as C
from learnability import faults
from learnability.cli import main
from learnability.io import read_jsonl
from learnability.runtime import PATH_KEYS, absolute_paths

TINY = ["--data.reference_size=100", "--data.label_noise=0.4", "--model.learner=cnn_tiny", "--model.proxy=mlp_tiny",
        "--train.steps=8", "--train.batch_size=16", "--train.eval_every=4", "--reference.epochs=1",
        "--progress=false", "--train.threads=1", "--selection.score=learnability"]


def _ctrl_c_at_step(monkeypatch, n: int) -> None:
    seen = {"n": 0}

    def point(name: str) -> None:
        if name == "step":
            seen["n"] += 1
            if seen["n"] == n:
                raise KeyboardInterrupt

    monkeypatch.setattr(faults, "point", point)


def _npz(path) -> None:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 255, (400, 8, 8), dtype=np.uint8), y=np.arange(400) % 3)


def _files(run_dir) -> dict[str, tuple[bytes, int]]:
    return {f: ((run_dir / f).read_bytes(), (run_dir / f).stat().st_mtime_ns) for f in sorted(os.listdir(run_dir))
            if (run_dir / f).is_file()}


def test_ctrl_c_names_the_resume_command_and_a_relative_data_path_resumes_from_another_folder(
        tmp_path, monkeypatch, capsys):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    _npz(work / "d.npz")
    monkeypatch.chdir(work)
    _ctrl_c_at_step(monkeypatch, 6)
    code = main(["run", "--out=r", "--data.source=npz", "--data.path=d.npz", "--checkpoint.every=4", *TINY])
    assert code == 130
    err = capsys.readouterr().err
    assert "`learnability run --resume r` continues it from its newest checkpoint (step-00000004.ckpt)" in err, err
    saved = json.loads((work / "r" / "config.json").read_text())
    assert saved["data"]["path"] == str(work / "d.npz")  # stored absolute
    monkeypatch.setattr(faults, "point", lambda name: None)
    monkeypatch.chdir(elsewhere)  # d.npz is not here: only the stored absolute path finds it
    assert main(["run", "--resume", str(work / "r")]) == 0
    assert [r["step"] for r in read_jsonl(str(work / "r" / "metrics.jsonl"))] == list(range(1, 9))


def test_ctrl_c_without_checkpoints_and_in_compare_say_what_resume_does(tmp_path, monkeypatch, capsys):
    _ctrl_c_at_step(monkeypatch, 3)
    assert main(["run", f"--out={tmp_path / 'r'}", "--data.source=digits", *TINY]) == 130
    assert "wrote no checkpoint yet" in capsys.readouterr().err
    _ctrl_c_at_step(monkeypatch, 3)
    assert main(["compare", f"--out={tmp_path / 'c'}", "--arms=uniform", "--data.source=digits", *TINY]) == 130
    assert f"`learnability compare --resume {tmp_path / 'c'}` keeps the finished arms" in capsys.readouterr().err


@pytest.mark.parametrize("every", [0, 4])
def test_resume_of_a_finished_run_is_refused_and_rewrites_nothing(tmp_path, capsys, every):
    out = tmp_path / "done"
    assert main(["run", f"--out={out}", "--data.source=digits", f"--checkpoint.every={every}", *TINY]) == 0
    before = _files(out)
    assert main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run" in err and "--out=NEW_DIR" in err
    assert _files(out) == before  # not one byte nor one mtime changed


def test_resume_with_a_malformed_config_json_names_the_file(tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_text('{"data": ')
    assert main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'config.json'} is not valid JSON" in err and "line 1" in err
    (out / "config.json").write_bytes(b'{"data": {"path": "\xff"}}')
    assert main(["run", "--resume", str(out)]) == 2
    assert f"{out / 'config.json'} is not valid JSON" in capsys.readouterr().err


def test_absolute_paths_resolves_the_path_keys_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = C.apply_overrides(C.RunConfig(), [f"--{s}.{k}=rel/{s}-{k}" for s, k in PATH_KEYS] + ["--out=o"])
    got = C.to_dict(absolute_paths(cfg))
    want = C.to_dict(cfg)
    for s, k in PATH_KEYS:
        assert got[s][k] == str(tmp_path / "rel" / f"{s}-{k}")
        got[s][k] = want[s][k]
    assert got == want  # every other value as given (out too)
    assert absolute_paths(C.RunConfig()) == C.RunConfig()  # "" stays "" (the defaults)
    shards = C.apply_overrides(C.RunConfig(), ["--pairs.path=sh/{000..009}.tar"])
    assert absolute_paths(shards).pairs.path == str(tmp_path / "sh" / "{000..009}.tar")


def _finished_run(tmp_path) -> str:
    out = tmp_path / "r"
    assert main(["run", f"--out={out}", "--data.source=digits", "--selection.score=uniform", *TINY[:-1]]) == 0
    return str(out)


def test_report_names_the_file_and_line_of_a_damaged_metrics_jsonl(tmp_path, capsys):
    out = _finished_run(tmp_path)
    path = os.path.join(out, "metrics.jsonl")
    good = Path(path).read_bytes()
    lines = good.splitlines(keepends=True)
    capsys.readouterr()
    Path(path).write_bytes(b"".join(lines[:2]) + b'{"step": 3, "loss": "\xff"}\n' + b"".join(lines[3:]))
    assert main(["report", out]) == 2
    assert f"{path} line 3 is not UTF-8 JSON" in capsys.readouterr().err
    Path(path).write_bytes(b"".join(lines[:2]) + lines[2][:20] + b"\n" + b"".join(lines[3:]))  # cut mid-file
    assert main(["report", out]) == 2
    assert f"{path} line 3 is not UTF-8 JSON" in capsys.readouterr().err
    Path(path).write_bytes(good[:len(lines[0]) // 2])  # truncated inside its first row
    assert main(["report", out]) == 2
    err = capsys.readouterr().err
    assert f"{path} line 1 is cut short" in err and "holds no rows" in err
    Path(path).write_bytes(good[:-10])  # a run killed while writing its last row: reported without it
    assert main(["report", out]) == 0
    assert f"{path} line 8 is cut short" in capsys.readouterr().err
    # a damaged summary.json: the report stands, says so, and leaves the run out of the tables that read it
    Path(path).write_bytes(good)
    Path(out, "summary.json").write_text("{bad")
    assert main(["report", out]) == 0
    assert f"{out}/summary.json is not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "compare", "demo"])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_command_help_exits_0_listing_every_config_key(capsys, command, flag):
    assert main([command, flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: learnability {command}")
    assert "--train.steps=1500" in out and "--pairs.shard_cache=" in out and "--progress=true" in out


def test_report_help_exits_0(capsys):
    assert main(["report", "--help"]) == 0
    assert "usage: learnability report" in capsys.readouterr().out
