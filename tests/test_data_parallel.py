"""The data-parallel learner (`--train.nproc=N`, `learnability.replicas`, `learnability.launch`) on
CPU with gloo: the rank-local draw, and end to end through the CLI on 2 ranks (slow: each run
starts 2 processes)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from learnability import config as C
from learnability.data import IndexStream
from learnability.flops import Ledger
from learnability.io import ids_digest, read_jsonl
from learnability.models import build_model
from learnability.replicas import Solo, rank_part
from learnability.runtime import build_learner, build_selection, super_batch_size
from learnability.tasks import get_task

TINY = ["--data.source=digits", "--data.reference_size=300", "--data.label_noise=0.4", "--model.learner=mlp_small",
        "--model.proxy=mlp_tiny", "--train.batch_size=16", "--train.eval_every=4", "--reference.epochs=2",
        "--progress=false", "--train.threads=1"]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "learnability.cli", *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


class Rank:
    """Rank `rank` of `world` without a process group (a `replicas.Replicas` for checking): its part
    of a draw; the collectives only this rank's."""

    def __init__(self, rank: int, world: int, peers: int = 1):
        self.rank, self.world, self.main, self.peers = rank, world, rank == 0, peers

    def part(self, drawn: torch.Tensor) -> torch.Tensor:
        return rank_part(drawn, self.rank, self.world)

    def sync(self, model: torch.nn.Module) -> None:
        pass

    def barrier(self) -> None:
        pass

    def gather_object(self, obj: object) -> list:
        return [obj] * self.peers  # as if every rank held this one's state


def test_ranks_take_disjoint_parts_and_a_pass_covers_the_pool_once():
    n, big_b, world = 96, 8, 3
    stream = IndexStream(n, big_b * world, seed=5)
    seen = []
    for _ in range(n // (big_b * world)):  # one pass
        drawn = stream.next()
        parts = [Rank(r, world).part(drawn) for r in range(world)]
        assert all(p.shape == (big_b,) for p in parts)
        assert torch.equal(torch.cat(parts), drawn)  # the draw, partitioned in rank order
        seen += [i for p in parts for i in p.tolist()]
    assert sorted(seen) == list(range(n))  # no id twice in a pass across ranks
    with pytest.raises(ValueError, match="equal parts"):
        Rank(0, 3).part(torch.arange(10))


def test_solo_is_the_identity():
    solo, ledger = Solo(), Ledger()
    ledger.add("learner", flops=3.0, seconds=1.0)
    x = torch.arange(6)
    assert solo.part(x) is x and solo.gather(x) is x and solo.total(ledger) is ledger
    assert solo.mean({"a": 1.5}) == {"a": 1.5} and solo.gather_object(7) == [7]


def test_nproc_is_validated():
    with pytest.raises(C.ConfigError, match="train.nproc must be >= 1"):
        C.validate(C.apply_overrides(C.RunConfig(), ["--train.nproc=0"]))
    with pytest.raises(C.ConfigError, match="not supported with backend=ray"):
        C.validate(C.apply_overrides(C.RunConfig(), ["--train.nproc=2", "--backend=ray"]))
    with pytest.raises(C.ConfigError, match="backend must be local, ray or ray_train"):
        C.validate(C.apply_overrides(C.RunConfig(), ["--backend=slurm"]))


def test_super_batch_check_counts_every_rank():
    cfg = C.apply_overrides(C.RunConfig(), ["--train.batch_size=40", "--selection.filter_ratio=0.5"])
    assert super_batch_size(cfg, 160, True, ranks=2) == 80
    with pytest.raises(C.ConfigError, match="on each of 3 ranks"):
        super_batch_size(cfg, 160, True, ranks=3)


def _rows(run: str) -> list[dict]:
    return read_jsonl(os.path.join(run, "metrics.jsonl"))


def _same_but_seconds(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if not k.startswith("seconds")} == \
               {k: v for k, v in y.items() if not k.startswith("seconds")}, x["step"]


@pytest.mark.slow
def test_two_ranks_end_to_end_through_the_cli(tmp_path):
    """2 gloo ranks: rank 0 alone writes; ids accounted over ranks; each rank selected b from its own
    part of the draw, with its own generator (replayed here rank by rank in one process)."""
    out = tmp_path / "dp"
    steps, b = 6, 16
    r = cli("run", f"--out={out}", "--train.nproc=2", "--selection.score=learnability", f"--train.steps={steps}", *TINY)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["config.json", "metrics.jsonl", "reference", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["batch_size"] == b and summary["super_batch"] == 2 * b
    rows = _rows(str(out))
    assert [row["step"] for row in rows] == list(range(1, steps + 1))
    for row in rows:  # consumed + discarded = drawn, summed over ranks
        consumed, drawn = row["examples_seen"], row["candidates_drawn"]
        assert consumed == row["step"] * b * 2 and drawn == row["step"] * 2 * b * 2
        assert drawn - consumed == row["step"] * (2 * b - b) * 2  # discarded
    # the ledger sums the ranks: both trained the learner every step, the reference is charged once
    cfg = C.from_dict(C.RunConfig, json.loads((out / "config.json").read_text()))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, nproc=1))
    task = get_task(cfg.task)(cfg, None, torch.device("cpu"), False)
    learner, _, cost, _, ema_flops = build_learner(cfg, task, torch.device("cpu"))
    assert rows[-1]["flops_learner"] == pytest.approx(steps * 2 * (cost.train * b + ema_flops))
    # step 1 replayed rank by rank: same proxy and reference, rank r's part of the draw, rank r's generator
    drawn = IndexStream(task.pool_size, 2 * 2 * b, cfg.train.seed + 5).next()
    chosen, ledgers = [], []
    for rank in range(2):
        ledger = Ledger()
        selector, _ = build_selection(cfg, task, learner, ledger, torch.device("cpu"), False, Rank(rank, 2))
        pos = Rank(rank, 2).part(drawn)
        sel = selector.select_index(task.draw(pos), task.pool_ids[pos])
        chosen.append(pos[sel.index])
        ledgers.append(ledger)
    assert ledgers[0].flops["reference"] > 0 and ledgers[1].flops["reference"] == 0  # charged once
    assert rows[0]["selected_digest"] == ids_digest(task.pool_ids[torch.cat(chosen)])
    assert rows[0]["flops_reference"] == pytest.approx(ledgers[0].flops["reference"])


@pytest.mark.slow
def test_two_ranks_of_b_train_like_one_process_of_2b(tmp_path):
    """Uniform, no BatchNorm: 2 ranks of b see the same examples per update as 1 process of 2b, and
    averaging their gradients is the 2b batch's gradient, so the runs agree to float rounding."""
    common = ["--selection.score=uniform", "--train.steps=8", *TINY]
    r = cli("run", f"--out={tmp_path / 'two'}", "--train.nproc=2", *common)
    assert r.returncode == 0, r.stderr
    r = cli("run", f"--out={tmp_path / 'one'}", *common, "--train.batch_size=32")
    assert r.returncode == 0, r.stderr
    two, one = _rows(str(tmp_path / "two")), _rows(str(tmp_path / "one"))
    params = sum(p.numel() for p in build_model("mlp_small", (1, 8, 8), 10).parameters())
    for x, y in zip(two, one):
        assert x["selected_digest"] == y["selected_digest"]  # the ranks' parts, in rank order, are the 2b draw
        assert x["examples_seen"] == y["examples_seen"] and x["candidates_drawn"] == y["candidates_drawn"]
        assert x["loss_learner"] == pytest.approx(y["loss_learner"], rel=1e-4)
        # the same learner FLOPs, but for the EMA each rank keeps of its replica (3 FLOPs a parameter an update)
        assert x["flops_learner"] - y["flops_learner"] == pytest.approx(x["step"] * 3 * params)
    assert two[-1]["test_accuracy"] == pytest.approx(one[-1]["test_accuracy"], abs=2e-3)


@pytest.mark.slow
def test_torchrun_started_ranks_train_like_train_nproc(tmp_path):
    """`torchrun -m learnability.cli run ...` (how several machines start): each rank trains in place,
    train.nproc recorded as the launcher's world size, the same run as --train.nproc=2."""
    common = ["--selection.score=learnability", "--train.steps=4", *TINY]
    assert cli("run", f"--out={tmp_path / 'ours'}", "--train.nproc=2", *common).returncode == 0
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
                        "learnability.cli", "run", f"--out={tmp_path / 'torchrun'}", *common],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("final test accuracy") == 1  # rank 0 reports
    assert json.loads((tmp_path / "torchrun" / "config.json").read_text())["train"]["nproc"] == 2
    _same_but_seconds(_rows(str(tmp_path / "torchrun")), _rows(str(tmp_path / "ours")))


@pytest.mark.slow
def test_killing_a_rank_ends_the_run_with_a_clear_error_and_it_resumes(tmp_path):
    common = ["--selection.score=learnability", "--train.steps=6", "--checkpoint.every=2", *TINY]
    whole = tmp_path / "whole"
    assert cli("run", f"--out={whole}", "--train.nproc=2", *common).returncode == 0
    cut = tmp_path / "cut"
    r = cli("run", f"--out={cut}", "--train.nproc=2", *common, env={"LEARNABILITY_KILL_AT": "step:3@1"})
    assert r.returncode == 1, r.stderr
    assert "rank 1 of 2 was killed by SIGKILL" in r.stderr
    assert f"learnability run --resume {cut}" in r.stderr and "step-00000002.ckpt" in r.stderr
    assert not (cut / "summary.json").exists()
    r = cli("run", "--resume", str(cut))
    assert r.returncode == 0, r.stderr
    _same_but_seconds(_rows(str(cut)), _rows(str(whole)))  # resumed on 2 ranks = never stopped


@pytest.mark.slow
def test_a_rank_error_is_reported_by_rank(tmp_path):
    r = cli("run", f"--out={tmp_path / 'nan'}", "--train.nproc=2", "--selection.score=uniform", "--train.steps=3",
            "--train.lr=1e30", *TINY)
    assert r.returncode == 1
    assert "learnability run (rank" in r.stderr and "the learner's loss is" in r.stderr
    assert "of 2 exited with status 1" in r.stderr


@pytest.mark.ray
def test_ray_train_workers_equal_local_ranks_and_a_killed_worker_group_resumes(tmp_path):
    """backend=ray_train: 2 Ray Train workers train exactly what 2 local ranks do; a worker killed
    mid-run makes Ray Train restart the group, which resumes from the newest checkpoint."""
    pytest.importorskip("ray.train")
    common = ["--selection.score=learnability", "--train.steps=6", "--checkpoint.every=2", "--train.nproc=2",
              "--ray.num_cpus=2", *TINY]
    local = tmp_path / "local"
    assert cli("run", f"--out={local}", *common).returncode == 0
    mark = tmp_path / "killed-once"
    r = cli("run", f"--out={tmp_path / 'ray'}", "--backend=ray_train", *common,
            env={"LEARNABILITY_KILL_AT": "step:3@1", "LEARNABILITY_KILL_ONCE": str(mark)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert mark.exists()  # rank 1 was killed at step 3, and the restarted group went on from step 2
    _same_but_seconds(_rows(str(tmp_path / "ray")), _rows(str(local)))
    assert json.loads((tmp_path / "ray" / "summary.json").read_text())["ranks"] == 2


def test_the_failure_reported_is_the_rank_that_failed_not_one_the_launcher_stopped():
    import signal
    from types import SimpleNamespace as F

    from learnability.launch import root_failure

    # rank 1 hit a NaN loss (status 1); the launcher then stopped rank 0 with SIGTERM, in the same second
    assert root_failure({0: F(exitcode=-signal.SIGTERM, timestamp=7), 1: F(exitcode=1, timestamp=7)})[0] == 1
    assert root_failure({0: F(exitcode=-signal.SIGTERM, timestamp=6), 1: F(exitcode=-signal.SIGKILL, timestamp=7)})[0] == 1
    assert root_failure({0: F(exitcode=1, timestamp=8), 1: F(exitcode=2, timestamp=7)})[0] == 1  # then the earliest
    assert root_failure({0: F(exitcode=1, timestamp=7), 1: F(exitcode=1, timestamp=7)})[0] == 0  # then the lowest rank
    assert root_failure({0: F(exitcode=-signal.SIGTERM, timestamp=7), 1: F(exitcode=-signal.SIGTERM, timestamp=7)})[0] == 0


def test_more_cuda_ranks_than_gpus_is_refused_before_any_rank_starts(tmp_path, monkeypatch):
    from learnability import launch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = dataclasses.replace(C.apply_overrides(C.RunConfig(), ["--train.nproc=2", "--train.device=cuda"]),
                              out=str(tmp_path / "run"))
    with pytest.raises(C.ConfigError, match="needs 2 GPUs .* but this machine has 1"):
        launch.prepare(cfg, resume=False)
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_resumes_only_on_as_many_ranks_as_wrote_it(tmp_path):
    from learnability.checkpoint import CheckpointError, Checkpointer

    ledger, model = Ledger(), torch.nn.Linear(2, 2)
    Checkpointer(str(tmp_path), 1, 2, False, Rank(0, 2, peers=2)).maybe_save(1, {"model": model}, 0, local={"ledger": ledger})
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(CheckpointError, match="written by 2 rank.* this run has 1; resume it with --train.nproc=2"):
        Checkpointer(str(tmp_path), 1, 2, True, Solo()).resume({"model": model}, str(tmp_path / "metrics.jsonl"),
                                                               local={"ledger": ledger})
    first, _, _ = Checkpointer(str(tmp_path), 1, 2, True, Rank(1, 2)).resume(
        {"model": model}, str(tmp_path / "metrics.jsonl"), local={"ledger": ledger})
    assert first == 2


@pytest.mark.ray
def test_ray_train_asking_more_cpus_than_the_cluster_has_is_refused(tmp_path):
    pytest.importorskip("ray.train")
    r = cli("run", f"--out={tmp_path / 'big'}", "--backend=ray_train", "--train.nproc=3", "--ray.num_cpus=2",
            "--selection.score=uniform", "--train.steps=2", *TINY)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "train.nproc=3 Ray Train workers need 3 CPUs" in r.stderr and "the Ray cluster has 2" in r.stderr


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_within_10_s_and_says_how_to_resume(tmp_path):
    import signal
    import time

    from learnability.distributed.stopping import descendants, sigint_as_a_terminal_gives

    out = tmp_path / "cc"
    p = subprocess.Popen([sys.executable, "-m", "learnability.cli", "run", f"--out={out}", "--train.nproc=2",
                          "--selection.score=learnability", "--train.steps=100000", "--checkpoint.every=20", *TINY],
                         preexec_fn=lambda: (os.setpgrp(), sigint_as_a_terminal_gives()), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoints").is_dir() or not os.listdir(out / "checkpoints"):
            assert p.poll() is None and time.time() < deadline, "the run ended or wrote no checkpoint in 120 s"
            time.sleep(0.2)
        ranks = descendants(p.pid)
        assert len(ranks) >= 2
        t0 = time.time()
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        assert p.wait(timeout=30) == 130
        assert time.time() - t0 < 10
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    time.sleep(0.5)
    assert not [pid for pid in ranks if _running(pid)]
    with p.stderr:
        err = p.stderr.read()
    assert f"learnability run --resume {out}` continues it from its newest checkpoint" in err


@pytest.mark.slow
def test_image_text_with_jest_on_two_ranks(tmp_path):
    out = tmp_path / "clip"
    r = cli("run", f"--out={out}", "--task=clip", "--train.nproc=2", "--selection.score=learnability",
            "--selection.sampler=jest", "--pairs.n_chunks=4", "--data.pool_size=800", "--data.reference_size=200",
            "--data.test_size=100", "--train.steps=4", "--train.batch_size=16", "--train.eval_every=2",
            "--pairs.retrieval_size=50", "--reference.epochs=1", "--progress=false", "--train.threads=1")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _rows(str(out))
    assert [(x["examples_seen"], x["candidates_drawn"]) for x in rows] == [(s * 32, s * 64) for s in range(1, 5)]
    assert {"test_accuracy", "zero_shot", "r1_i2t", "r1_t2i"} <= set(rows[-1])  # rank 0 evaluated at the end
    assert json.loads((out / "summary.json").read_text())["ranks"] == 2


@pytest.mark.slow
def test_data_parallel_bench_smoke_writes_rows_and_projection(tmp_path):
    bench = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "data_parallel.py")
    r = subprocess.run([sys.executable, bench, "--quick", f"--out={tmp_path / 'runs'}", f"--results={tmp_path}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "data_parallel-quick.json").read_text())
    assert [row["ranks"] for row in result["rows"]] == [1, 2, 1]
    assert all(row["updates_per_s"] > 0 for row in result["rows"])
    assert [p["gpus"] for p in result["projection"]] == [1, 2, 4, 8] and result["projection"][0]["efficiency"] == 1.0
    assert 0 < result["efficiency"]["weak"] and "no accelerator was lent" in result["device"]
