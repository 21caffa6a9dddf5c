"""The task registry and the one loop: every registered task keeps the `Task` contract, the loop and
the Ray learner share pieces without importing each other, and both tasks take every loop feature
(a reference trained alongside included)."""

from __future__ import annotations

import ast
import inspect
import os

import pytest
import torch

from learnability import config as C
from learnability.io import read_jsonl
from learnability.tasks import Task, get_task, list_tasks

SRC = os.path.join(os.path.dirname(__file__), "..", "src", "learnability")
MEMBERS = [n for n in dir(Task) if not n.startswith("_")] + list(Task.__annotations__)
CLASSIFY = ["--data.source=digits", "--data.reference_size=300", "--train.batch_size=16", "--train.steps=3",
            "--train.eval_every=3", "--reference.epochs=1", "--progress=false", "--train.threads=1"]
CLIP = ["--task=clip", "--data.pool_size=200", "--data.reference_size=100", "--data.test_size=50",
        "--pairs.retrieval_size=50", "--train.batch_size=16", "--train.steps=3", "--train.eval_every=3",
        "--reference.epochs=1", "--pairs.n_chunks=4", "--progress=false", "--train.threads=1"]


def _imports(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read())
    return {n.module if isinstance(n, ast.ImportFrom) else a.name for n in ast.walk(tree)
            if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names if (n.module if isinstance(n, ast.ImportFrom) else a.name)}


def test_registry_lists_both_tasks_and_refuses_unknown_ones() -> None:
    assert list_tasks() == ["classify", "clip"]
    with pytest.raises(ValueError, match="unknown task 'nope'; choose one of classify, clip"):
        get_task("nope")
    with pytest.raises(C.ConfigError, match="task must be one of classify, clip"):
        C.validate(C.RunConfig(task="nope"))


@pytest.mark.parametrize("name", list_tasks())
def test_every_task_has_every_protocol_member(name: str) -> None:
    factory = get_task(name)
    assert callable(factory.load)
    missing = [m for m in MEMBERS if not hasattr(factory, m) and m not in inspect.getsource(factory)]
    assert not missing, missing


def test_the_loop_imports_nothing_distributed_and_the_ray_learner_not_the_loop() -> None:
    loop = _imports(os.path.join(SRC, "loop.py"))
    assert not [m for m in loop if "distributed" in m or m.split(".")[0] == "ray"]
    assert "learnability.loop" not in _imports(os.path.join(SRC, "distributed", "learner.py"))
    for f in os.listdir(os.path.join(SRC, "data")):
        if f.endswith(".py"):
            assert "learnability.config" not in _imports(os.path.join(SRC, "data", f)), f


def test_run_ray_refuses_uniform_which_has_no_actors(tmp_path) -> None:
    from learnability.distributed import run_ray

    cfg = C.apply_overrides(C.RunConfig(), [*CLASSIFY, "--backend=ray", "--selection.score=uniform", f"--out={tmp_path}"])
    with pytest.raises(C.ConfigError, match="backend=local"):
        run_ray(cfg)


@pytest.mark.parametrize("args", [CLASSIFY, CLIP], ids=["classify", "clip"])
def test_a_reference_trained_alongside_works_for_every_task(args: list[str], tmp_path) -> None:
    """reference.train_on=online is a loop feature: the reference trains on curated batches with the
    task's reference loss, is never cached, and its training is charged to proxy_train."""
    if "--task=clip" in args and not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("dataset-fashion-mnist is not installed")
    from learnability.loop import run

    cfg = C.apply_overrides(C.RunConfig(), [*args, "--reference.train_on=online", f"--out={tmp_path}"])
    summary = run(cfg)
    rows = read_jsonl(str(tmp_path / "metrics.jsonl"))
    assert all(torch.isfinite(torch.tensor(r["loss_reference_candidates"])) for r in rows)
    assert rows[0]["flops_reference"] == 0 and rows[-1]["flops_proxy_train"] > 0
    assert not (tmp_path / "reference").exists() and summary["task"] == cfg.task


def test_class_balance_is_one_for_a_balanced_batch_and_zero_for_one_class() -> None:
    from learnability.tasks import class_balance

    assert class_balance(torch.arange(10).repeat(3), 10) == pytest.approx(1.0)
    assert class_balance(torch.full((8,), 3), 10) == 0.0
    assert class_balance(torch.arange(5), 100) == pytest.approx(1.0)  # 5 labels can reach only 5 classes
    assert 0 < class_balance(torch.tensor([0, 0, 0, 1]), 2) < class_balance(torch.tensor([0, 0, 1, 1]), 2) == pytest.approx(1.0)


def test_classification_logs_the_true_class_balance_of_the_trained_batch() -> None:
    """Of the true labels, so a selection that flips no class but drifts to few shows: a batch of
    one true class scores 0 whatever its (noisy) given labels say."""
    cfg = C.apply_overrides(C.RunConfig(), [*CLASSIFY, "--data.label_noise=0.5", "--selection.score=uniform"])
    task = get_task("classify")(cfg, None, torch.device("cpu"), False)
    one = (task.pool.true_y == 4).nonzero().flatten()[:20]
    assert task.pool.y[one].unique().numel() > 1  # noisy given labels
    assert task.selected(one)["class_balance_selected"] == 0.0
    assert task.selected(torch.arange(len(task.pool)))["class_balance_selected"] > 0.99
