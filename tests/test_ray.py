"""The actor-learner mode (`backend=ray`): equivalence with the loop, id accounting, faults, resume.

Tests marked `ray` share one embedded Ray (2 CPUs, small object store) and run tiny digits runs;
bare `pytest` skips them (`-m ray` runs them; `make test` does). The others need no Ray.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from learnability import config as C
from learnability import faults
from learnability.cli import main
from learnability.data import IndexStream, build_data
from learnability.distributed.actor import ActorSpec, OutOfOrderError, ScoringActor, shard_positions
from learnability.distributed.cluster import check_reachable
from learnability.io import read_jsonl
from learnability.models import build_model

TINY = ["--data.source=digits", "--data.reference_size=300", "--data.label_noise=0.4",
        "--model.learner=cnn_tiny", "--model.proxy=mlp_tiny", "--train.batch_size=32",
        "--train.eval_every=5", "--reference.epochs=3", "--progress=false", "--train.threads=1",
        "--ray.cpus_per_actor=0.5"]
COMPARED = ("loss_learner", "loss_proxy", "loss_online_candidates", "loss_reference_candidates", "test_accuracy",
            "corrupted_selected", "label_noise_selected", "candidates_drawn", "examples_seen",
            "flops_learner", "flops_scoring", "flops_proxy_train", "flops_reference", "selected_digest")


def tiny(out, *more: str) -> C.RunConfig:
    return C.apply_overrides(C.RunConfig(), [*TINY, f"--out={out}", *more])


def closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- no Ray needed -------------------------------------------------------------------------


def test_shards_are_disjoint_and_cover_the_pool():
    parts = [shard_positions(103, i, 4) for i in range(4)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))
    assert shard_positions(10, 0, 1).tolist() == list(range(10))
    with pytest.raises(ValueError, match="shard"):
        shard_positions(10, 2, 2)


def test_ray_config_is_validated_naming_the_key(tmp_path):
    for args, key in ((["--ray.actors=0"], "ray.actors"), (["--ray.publish_every=0"], "ray.publish_every"),
                      (["--ray.queue_size=0"], "ray.queue_size"), (["--selection.score=rho"], "selection.score"),
                      (["--reference.train_on=online"], "reference.train_on")):
        with pytest.raises(C.ConfigError, match=key):
            C.validate(tiny(tmp_path, "--backend=ray", *args))
    with pytest.raises(C.ConfigError, match="backend"):
        C.validate(tiny(tmp_path, "--backend=spark"))
    # what the Ray backend still does not cover is refused saying what to do instead
    for args, key in ((["--selection.score=rho"], "selection.score"), (["--reference.train_on=online"], "reference.train_on"),
                      (["--selection.start=5"], "selection.start/end")):
        with pytest.raises(C.ConfigError, match=f"^{key} .*backend=local"):
            C.validate(tiny(tmp_path, "--backend=ray", *args))
    C.validate(tiny(tmp_path, "--backend=ray", "--ray.actors=4"))
    C.validate(tiny(tmp_path, "--backend=ray", "--checkpoint.every=5"))  # checkpoints cover backend=ray
    C.validate(tiny(tmp_path, "--backend=ray", "--task=clip"))  # and so do actors: task=clip runs on Ray
    C.validate(tiny(tmp_path, "--ray.actors=0"))  # the local backend ignores the ray section


def test_unreachable_address_fails_within_seconds_with_a_clear_error(tmp_path, capsys):
    port = closed_port()
    t0 = time.perf_counter()
    with pytest.raises(C.ConfigError, match=f"ray.address=127.0.0.1:{port}: no Ray cluster answers"):
        check_reachable(f"127.0.0.1:{port}", 2.0)
    with pytest.raises(C.ConfigError, match="expected host:port"):
        check_reachable("somewhere", 2.0)
    # through the CLI: exit status 2, before any data or reference work
    code = main(["run", f"--out={tmp_path / 'r'}", *TINY, "--backend=ray", f"--ray.address=ray://127.0.0.1:{port}"])
    assert code == 2
    assert "no Ray cluster answers" in capsys.readouterr().err
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "r" / "reference").exists()


def _actor(cfg: C.RunConfig, shard: int = 0, shards: int = 1, pool=None) -> tuple[ScoringActor, dict]:
    import functools

    from learnability.distributed.learner import actor_specs
    from learnability.tasks import ScoringPart

    pool = pool if pool is not None else build_data(cfg.data).pool
    spec = dataclasses.replace(actor_specs(cfg, 64)[0], shard=shard, shards=shards,
                               score="hard_learner")  # online proxy only: no reference needed
    build = functools.partial(build_model, cfg.model.proxy, pool.shape, pool.num_classes)
    part = ScoringPart(pool.ids.numpy(), (pool.x.numpy(), pool.y.numpy()), build, {})
    return ScoringActor(spec, part), {"proxy": build().state_dict(), "pool": pool}


def test_actor_accounts_for_every_drawn_id_and_restores_exactly(tmp_path):
    cfg = tiny(tmp_path)
    actor, extra = _actor(cfg, shard=1, shards=2)
    weights = [0, extra["proxy"]]
    outs = [actor.produce(i, weights) for i in range(4)]
    shard_ids = set(extra["pool"].ids[shard_positions(len(extra["pool"]), 1, 2)].tolist())
    seen: list[int] = []
    for o in outs:
        assert len(o["ids"]) == 32 and len(o["discarded"]) == 32 and o["drawn"] == 64
        assert torch.equal(extra["pool"].ids[o["pos"]], o["ids"]) and torch.equal(extra["pool"].x[o["pos"]], o["batch"][0])
        seen += o["ids"].tolist() + o["discarded"].tolist()
    assert len(seen) == len(set(seen)) == 256 and set(seen) <= shard_ids
    with pytest.raises(OutOfOrderError):
        actor.produce(7, weights)
    # a fresh actor restored to batch 2 redraws and reselects batches 2 and 3 exactly
    fresh, _ = _actor(cfg, shard=1, shards=2, pool=extra["pool"])
    fresh.restore(2, outs[1]["generator"])
    for i in (2, 3):
        again = fresh.produce(i, weights)
        assert torch.equal(again["ids"], outs[i]["ids"]) and torch.equal(again["discarded"], outs[i]["discarded"])


# ---- with Ray --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    from learnability.distributed.cluster import embedded_env

    embedded_env()  # the embedded Ray's settings: actors at normal CPU priority
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
@pytest.mark.parametrize("lazy", [False, True])
def test_one_synchronous_actor_equals_the_single_process_loop(tmp_path, ray_session, monkeypatch, lazy):
    from learnability.distributed import run_ray
    from learnability.loop import run
    from learnability.selector import Selector

    data = []
    if lazy:  # the digits as an npy folder: lazy images and labels, bijection order, all shipped to the actor
        from sklearn.datasets import load_digits

        d = load_digits()
        np.save(tmp_path / "x.npy", (d.images * (255.0 / 16.0)).round().astype(np.uint8))
        np.save(tmp_path / "y.npy", d.target)
        data = ["--data.source=npy", f"--data.path={tmp_path}"]
    base = tiny(tmp_path / "local", "--train.steps=25", *data)
    splits = build_data(base.data)
    picked: list[list[int]] = []
    select = Selector.select_index

    def recording(self, batch, ids=None):
        out = select(self, batch, ids)
        picked.append(ids[out.index.cpu()].tolist())
        return out

    monkeypatch.setattr(Selector, "select_index", recording)
    run(base, splits)
    monkeypatch.setattr(Selector, "select_index", select)
    cfg = dataclasses.replace(tiny(tmp_path / "ray", "--train.steps=25", "--backend=ray", "--ray.actors=1",
                                   "--ray.publish_every=1", "--ray.queue_size=1", *data))
    assert splits.pool.lazy == lazy and C.data_order(cfg.data) == ("bijection" if lazy else "permutation")
    summary = run_ray(cfg, splits)
    batches = read_jsonl(str(tmp_path / "ray" / "batches.jsonl"))
    assert [b["selected"] for b in batches] == picked
    local, remote = read_jsonl(str(tmp_path / "local" / "metrics.jsonl")), read_jsonl(str(tmp_path / "ray" / "metrics.jsonl"))
    assert len(local) == len(remote) == 25
    for a, b in zip(local, remote):
        for key in COMPARED:
            assert a.get(key) == b.get(key), (a["step"], key)
        assert b["staleness"] == 0 and b["proxy_version"] == b["step"] - 1
    assert summary["ray"]["restarts"] == [0] and summary["ray"]["learner_idle_fraction"] > 0
    assert remote[-1]["actor0_flops_scoring"] == remote[-1]["flops_scoring"] > 0
    assert remote[-1]["seconds_idle"] > 0 and remote[-1]["actor0_seconds_scoring"] > 0
    # the report shows the learner's idle time and every actor's scoring costs, from the files alone
    from learnability.report import build_report

    path, _ = build_report([str(tmp_path / "ray")], str(tmp_path / "report"))
    text = Path(path).read_text()
    assert "## Actor-learner (backend=ray)" in text and f"{remote[-1]['actor0_flops_scoring']:.3g}" in text
    assert "## Actor-learner" not in Path(build_report([str(tmp_path / "local")], str(tmp_path / "r2"))[0]).read_text()


def _expected_draws(cfg: C.RunConfig, n_pool: int, ids: torch.Tensor, actor: int, shards: int, batches: int) -> list[set]:
    positions = shard_positions(n_pool, actor, shards)
    stream = IndexStream(len(positions), 64, cfg.train.seed + 5 + 1000 * actor)
    return [set(ids[positions[stream.next().numpy()]].tolist()) for _ in range(batches)]


@pytest.mark.ray
def test_async_actors_killed_mid_run_select_no_id_twice_in_a_pass_and_lose_none(tmp_path, ray_session, monkeypatch):
    """Two asynchronous actors, one killed (SIGKILL) at step 6 of a single pass over the pool."""
    from learnability.distributed import cluster, run_ray

    out = tmp_path / "ray"
    # digits: a pool of ~1137; B = 64 and 2 shards of ~568 -> 8 batches per shard in one pass
    cfg = tiny(out, "--train.steps=16", "--backend=ray", "--ray.actors=2", "--ray.publish_every=2", "--ray.queue_size=4")
    get, killed = cluster.BatchQueue.get, []

    def get_and_kill(self, step):
        if step == 6:
            pid = json.loads((out / "actors.json").read_text())["pids"][0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        return get(self, step)

    monkeypatch.setattr(cluster.BatchQueue, "get", get_and_kill)
    splits = build_data(cfg.data)
    summary = run_ray(cfg, splits)
    r = summary["ray"]
    batches = read_jsonl(str(out / "batches.jsonl"))
    rows = read_jsonl(str(out / "metrics.jsonl"))
    assert [row["step"] for row in rows] == list(range(1, 17))

    # the restart is recorded, in the summary and in the metrics from the step it happened
    assert killed and r["restarts"] == [1, 0] and r["restart_events"][0]["actor"] == 0
    assert r["restart_events"][0]["pid"] != killed[0]
    assert json.loads((out / "actors.json").read_text())["pids"][0] == r["restart_events"][0]["pid"] == r["actor_pids"][0]
    restarts = [row["actor_restarts"] for row in rows]
    assert restarts == sorted(restarts) and restarts[0] == 0 and restarts[-1] == 1
    assert restarts.index(1) + 1 == r["restart_events"][0]["step"] >= 6  # found when the learner next needed actor 0
    assert rows[-1]["requests_reissued"] == r["requests_reissued"] >= 1

    # no id selected twice in the pass; consumed + discarded = drawn, every one distinct
    selected = [i for b in batches for i in b["selected"]]
    discarded = [i for b in batches for i in b["discarded"]]
    assert len(selected) == len(set(selected)) == 16 * 32
    assert len(selected) + len(discarded) == len(set(selected) | set(discarded)) == rows[-1]["candidates_drawn"] == 16 * 64
    assert rows[-1]["candidates_discarded"] == len(discarded) and r["candidates_drawn"] == 16 * 64

    # each actor's batches are its shard's draws in order: none repeated, none skipped
    for a in (0, 1):
        mine = [b for b in batches if b["actor"] == a]
        assert [b["seq"] for b in mine] == list(range(8))
        expect = _expected_draws(cfg, len(splits.pool), splits.pool.ids, a, 2, 8)
        assert [set(b["selected"]) | set(b["discarded"]) for b in mine] == expect
    assert max(row["staleness"] for row in rows) >= 1 and min(row["staleness"] for row in rows) >= 0
    assert rows[-1]["actor1_flops_scoring"] > 0 and rows[-1]["actor0_seconds_scoring"] > 0


@pytest.mark.ray
def test_an_address_that_answers_but_is_not_ray_fails_within_seconds(tmp_path):
    import socket

    pytest.importorskip("ray")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:  # accepts and hangs up: an open port that speaks no Ray
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "learnability.cli", "run", f"--out={tmp_path / 'r'}", *TINY,
                            "--backend=ray", f"--ray.address=127.0.0.1:{port}", "--ray.connect_timeout_s=1"],
                           capture_output=True, text=True, timeout=120, env=_env())
        elapsed = time.perf_counter() - t0
    finally:
        stop.set()
        thread.join()
        server.close()
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"ray.address=127.0.0.1:{port}: something answers there but no Ray cluster joined" in r.stderr
    assert elapsed < 30


def _env() -> dict:
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p))


@pytest.mark.ray
def test_ctrl_c_mid_run_leaves_no_actor_processes(tmp_path, ray_session):
    from learnability.distributed import run_ray

    out = tmp_path / "ray"
    # actors that cannot be placed fail the run within ray.start_timeout_s instead of stalling it
    cfg = tiny(out, "--train.steps=100000", "--backend=ray", "--ray.actors=2", "--ray.start_timeout_s=120")
    pids: list[int] = []

    def interrupt() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            if (out / "metrics.jsonl").is_file() and len(read_jsonl(str(out / "metrics.jsonl"))) >= 3:
                pids.extend(json.loads((out / "actors.json").read_text())["pids"])
                assert all(_alive(p) for p in pids)
                break
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)  # always: a run that never got going fails below instead of running on

    # Ctrl-C raises KeyboardInterrupt, as in a terminal, even when this test process was started
    # with SIGINT ignored (`make test &` from a script: then the run was never interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_ray(cfg)
    finally:
        signal.signal(signal.SIGINT, previous)
    thread.join()
    assert len(pids) == 2, "the run never reached its 3rd step"
    _wait_gone(pids)
    assert ray_session.is_initialized()  # a Ray this run joined (not started) is left running for its owner


@pytest.mark.ray
def test_cli_ctrl_c_ends_a_ray_run_within_10_s_leaving_no_process(tmp_path):
    """`bench/ctrl_c.py` twice: the CLI exits with 130 within 10 s of SIGINT, and none of the
    processes its embedded Ray started (GCS, raylet, workers, actors) is left."""
    pytest.importorskip("ray")
    bench = os.path.join(os.path.dirname(__file__), "..", "bench")
    r = subprocess.run([sys.executable, "ctrl_c.py", "--times=2", f"--results={tmp_path}"], cwd=bench,
                       env=_env(), capture_output=True, text=True, timeout=1500)
    result = json.loads((tmp_path / "ctrl_c.json").read_text())
    assert r.returncode == 0 and result["summary"]["passed"] == 2, json.dumps(result["rows"], indent=1)[-4000:]
    assert all(row["processes"] >= 3 and row["exit_seconds"] < 10 for row in result["rows"])
    assert all(row["actor_niceness"] == [0, 0] for row in result["rows"])  # not Ray's default 15: see cluster.embedded_env


def _wait_gone(pids: list[int]) -> None:
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_actor_learner_bench_smoke_writes_rows_and_projection(tmp_path):
    pytest.importorskip("ray")
    bench = os.path.join(os.path.dirname(__file__), "..", "bench")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.join(bench, "..", "src"),
                                                                 os.environ.get("PYTHONPATH", "")) if p))
    r = subprocess.run([sys.executable, "actor_learner.py", "--quick", "--steps=8", "--repeats=1",
                        f"--out={tmp_path / 'runs'}", f"--results={tmp_path / 'results'}"],
                       cwd=bench, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "results" / "actor_learner-quick.json").read_text())
    assert [row["actors"] for row in result["rows"]] == [0, 1, 2]
    assert all(row["learner_steps_per_s"] > 0 and 0 <= row["learner_idle_fraction"] < 1 for row in result["rows"])
    assert [p["proxy_learner_flop_ratio"] for p in result["projection"]] == ["1/10", "1/30", "1/100"]
    assert all(p["actors_per_learner"] >= 1 for p in result["projection"])
    assert (tmp_path / "results" / "actor_learner-quick.md").read_text().startswith("Command:")


# ---- checkpoints and resume ------------------------------------------------------------------


def same_ray_rows(a: list[dict], b: list[dict]) -> None:
    """Every logged value but wall-clock ones (`seconds_*`, `actorN_seconds_*`, the idle fraction)
    is equal, bit for bit."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for k in x:
            if "seconds" not in k and k != "learner_idle_fraction":
                assert x[k] == y[k], (x["step"], k, x[k], y[k])


class Interrupt(Exception):
    pass


def _interrupt_at(monkeypatch, step: int, exc: type[BaseException] = Interrupt) -> None:
    seen = {"n": 0}

    def point(name: str) -> None:
        if name == "step":
            seen["n"] += 1
            if seen["n"] == step:
                raise exc(name)

    monkeypatch.setattr(faults, "point", point)


@pytest.mark.ray
@pytest.mark.parametrize("setting", [["--ray.actors=1", "--ray.publish_every=1", "--ray.queue_size=1"],
                                     ["--ray.actors=2", "--ray.publish_every=2", "--ray.queue_size=3"]],
                         ids=["one_synchronous_actor", "two_async_actors"])
def test_ray_run_stopped_and_resumed_equals_the_uninterrupted_run(tmp_path, ray_session, monkeypatch, setting):
    """Stopped after step 10 (two steps past the step-8 checkpoint), resumed: the same rows, the same
    batches (from the same actors, batch numbers and proxy versions), the same summary values."""
    from learnability.distributed import run_ray

    cfg = tiny(tmp_path / "full", "--train.steps=14", "--backend=ray", "--checkpoint.every=4", *setting)
    splits = build_data(cfg.data)
    full = run_ray(cfg, splits)
    part = dataclasses.replace(cfg, out=str(tmp_path / "part"))
    _interrupt_at(monkeypatch, 10)
    with pytest.raises(Interrupt):
        run_ray(part, splits)
    assert len(read_jsonl(str(tmp_path / "part" / "batches.jsonl"))) == 10
    assert not (tmp_path / "part" / "summary.json").exists()
    monkeypatch.setattr(faults, "point", lambda name: None)
    resumed = run_ray(part, splits, resume=True)

    same_ray_rows(read_jsonl(str(tmp_path / "full" / "metrics.jsonl")), read_jsonl(str(tmp_path / "part" / "metrics.jsonl")))
    assert (tmp_path / "full" / "batches.jsonl").read_text() == (tmp_path / "part" / "batches.jsonl").read_text()
    assert resumed["final_accuracy"] == full["final_accuracy"]
    assert resumed["ledger"]["flops"] == full["ledger"]["flops"]
    for key in ("candidates_drawn", "candidates_discarded", "restarts", "requests_reissued"):
        assert resumed["ray"][key] == full["ray"][key], key
    strip = lambda stats: [{k: v for k, v in s.items() if "seconds" not in k} for s in stats]  # noqa: E731
    assert strip(resumed["ray"]["per_actor"]) == strip(full["ray"]["per_actor"])


@pytest.mark.ray
def test_cli_resumes_a_stopped_ray_run_and_refuses_a_finished_one(tmp_path, ray_session, monkeypatch, capsys):
    out = tmp_path / "r"
    args = ["run", f"--out={out}", *TINY, "--train.steps=10", "--backend=ray", "--checkpoint.every=3"]
    _interrupt_at(monkeypatch, 7, KeyboardInterrupt)  # Ctrl-C after step 7: one step past the step-6 checkpoint
    assert main(args) == 130
    assert f"learnability run --resume {out}` continues it from its newest checkpoint (step-00000006.ckpt)" in capsys.readouterr().err
    before = read_jsonl(str(out / "metrics.jsonl"))
    monkeypatch.setattr(faults, "point", lambda name: None)
    assert main(["run", "--resume", str(out)]) == 0
    rows, batches = read_jsonl(str(out / "metrics.jsonl")), read_jsonl(str(out / "batches.jsonl"))
    assert [r["step"] for r in rows] == [b["step"] for b in batches] == list(range(1, 11))
    same_ray_rows(before[:6], rows[:6])  # the rows the checkpoint covers are kept; step 7 is written again
    # one actor, one pass over the pool: batches 0..9 of its stream, none repeated or skipped across the resume
    assert [b["seq"] for b in batches] == list(range(10))
    drawn = [i for b in batches for i in b["selected"] + b["discarded"]]
    assert len(drawn) == len(set(drawn)) == rows[-1]["candidates_drawn"] == 10 * 64
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "ray" and summary["steps"] == 10
    finished = (out / "metrics.jsonl").read_bytes()
    assert main(["run", "--resume", str(out)]) == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_bytes() == finished


# ---- task=clip on the actors ---------------------------------------------------------------------


CLIP = ["--task=clip", "--data.pool_size=400", "--data.reference_size=200", "--data.test_size=100",
        "--pairs.retrieval_size=100", "--train.batch_size=16", "--train.steps=8", "--train.eval_every=4",
        "--reference.epochs=1", "--pairs.n_chunks=4", "--progress=false", "--train.threads=1",
        "--selection.score=learnability", "--ray.cpus_per_actor=0.5"]


@pytest.mark.ray
@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist not installed")
@pytest.mark.parametrize("sampler", ["softmax", "jest"])
def test_clip_on_one_synchronous_actor_equals_the_single_process_loop(tmp_path, ray_session, sampler):
    """task=clip scored on a Ray actor (image-text pairs, the dual-encoder proxy, per-pair or joint
    selection): the same selected ids, losses, FLOPs and accuracies as the loop, step by step."""
    from learnability.distributed import run_ray
    from learnability.loop import run
    from learnability.tasks import get_task

    base = C.apply_overrides(C.RunConfig(), [*CLIP, f"--selection.sampler={sampler}", f"--out={tmp_path / 'local'}"])
    data = get_task("clip").load(base)
    run(base, data)
    cfg = dataclasses.replace(base, out=str(tmp_path / "ray"), backend="ray",
                              ray=dataclasses.replace(base.ray, actors=1, publish_every=1, queue_size=1))
    summary = run_ray(cfg, data)
    local, remote = read_jsonl(str(tmp_path / "local" / "metrics.jsonl")), read_jsonl(str(tmp_path / "ray" / "metrics.jsonl"))
    assert len(local) == len(remote) == 8
    for a, b in zip(local, remote):  # every value the loop logs but wall-clock seconds
        assert "loss_online_candidates" in a and "selected_digest" in a
        for key in a:
            if not key.startswith("seconds"):
                assert a[key] == b[key], (a["step"], key)
        assert b["staleness"] == 0
    assert "zero_shot" in local[-1] and "attr_colour" in local[-1]
    assert summary["task"] == "clip" and summary["ray"]["candidates_drawn"] == 8 * 32
    assert remote[-1]["actor0_flops_scoring"] == remote[-1]["flops_scoring"] > 0
