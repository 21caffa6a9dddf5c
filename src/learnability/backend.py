"""Which trainer runs an arm: the single-process loop (`loop.run`), or the actor-learner mode with
scoring on Ray actors (`backend=ray`, `distributed.run_ray`). `uniform` selects nothing, so it
has no actors and always runs in the loop."""

from __future__ import annotations

from learnability import config as C


def run_arm(cfg: C.RunConfig, data: object | None = None, resume: bool = False) -> dict:
    """Train one arm with its backend; returns its summary. `data`: the task's data, shared by arms
    (`tasks.get_task(cfg.task).load(cfg)`), or None to load it."""
    if cfg.backend == "ray" and cfg.selection.score != "uniform":
        from learnability.distributed import run_ray

        return run_ray(cfg, data, resume)
    from learnability.loop import run

    return run(cfg, data, resume)
