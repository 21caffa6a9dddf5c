"""Which trainer runs an arm: the loop (`loop.run`) in this process, or on `train.nproc` processes
(`launch.run_ranks`, torch.distributed on this machine) or Ray Train workers (`backend=ray_train`,
`distributed.ray_train.run_ray_train`); or the actor-learner mode with scoring on Ray actors
(`backend=ray`, `distributed.run_ray`), where `uniform`, selecting nothing, runs in the loop."""

from __future__ import annotations

import dataclasses

from learnability import config as C
from learnability.replicas import launched_ranks


def run_arm(cfg: C.RunConfig, data: object | None = None, resume: bool = False) -> dict:
    """Train one arm with its backend; returns its summary. `data`: the task's data, shared by arms
    (`tasks.get_task(cfg.task).load(cfg)`), or None to load it."""
    ranks = launched_ranks()
    if ranks > 1:  # started as a rank by an outside launcher (`torchrun -m learnability.cli run ...`): train here
        from learnability.loop import run

        return run(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, nproc=ranks)), None, resume)
    if cfg.backend == "ray_train":  # every worker loads the data itself
        from learnability.distributed.ray_train import run_ray_train

        return run_ray_train(cfg, resume)
    if cfg.train.nproc > 1:  # every rank loads the data itself (`data` is not shipped to the processes)
        from learnability.launch import run_ranks

        return run_ranks(cfg, resume)
    if cfg.backend == "ray" and cfg.selection.score != "uniform":
        from learnability.distributed import run_ray

        return run_ray(cfg, data, resume)
    from learnability.loop import run

    return run(cfg, data, resume)
