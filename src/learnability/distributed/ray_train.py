"""`backend=ray_train`: the data-parallel learner on `train.nproc` Ray Train workers (TorchTrainer),
for runs that outgrow one machine. Each worker runs the one loop (`loop.run`) as one replica;
Ray Train places the workers on the cluster and sets up their process group (gloo on CPU, nccl on
GPU), which `replicas.join` finds.

The driver validates the config and saves it into the run folder; every worker reads it there, so
`out` must be a folder every node sees (a shared filesystem) on a multi-node cluster, and rank 0
writes metrics, checkpoints and the summary into it. When a worker dies, Ray Train restarts the
group up to `ray.max_restarts` times and the new group resumes from the newest checkpoint (set
`checkpoint.every`); past that, the run ends with a `RankFailedError` saying how to resume it.
"""

from __future__ import annotations

import json
import os
import uuid

from learnability import config as C
from learnability.checkpoint import list_checkpoints
from learnability.distributed import cluster, stopping
from learnability.errors import RankFailedError


def _worker(config: dict) -> None:
    """One Ray Train worker: the loop on the saved config, resuming when the run has a checkpoint
    (a group restarted after a failure) or the driver resumes."""
    from learnability.loop import run

    out = config["out"]
    with open(os.path.join(out, "config.json")) as f:
        cfg = C.from_dict(C.RunConfig, json.load(f))
    run(cfg, resume=config["resume"] or bool(list_checkpoints(out)))


def run_ray_train(cfg: C.RunConfig, resume: bool = False) -> dict:
    """Train `cfg` on `cfg.train.nproc` Ray Train workers (an embedded Ray on this machine, or the
    cluster at `ray.address`); returns rank 0's summary."""
    from learnability.launch import prepare, resume_hint

    prepare(cfg, resume)
    before = frozenset(stopping.descendants(os.getpid()))  # the caller's own processes: never Ray's to kill
    started = cluster.connect(cfg.ray)
    try:
        import ray
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        n, cpus, gpu = cfg.train.nproc, cfg.ray.cpus_per_worker, cfg.train.device.startswith("cuda")
        have = ray.cluster_resources()
        for key, need in (("CPU", n * cpus), ("GPU", n if gpu else 0)):
            if need > have.get(key, 0.0) + 1e-9:
                raise C.ConfigError(f"train.nproc={n} Ray Train workers need {need:g} {key}s (ray.cpus_per_worker={cpus:g}"
                                    f"{', one GPU each' if gpu else ''}) but the Ray cluster has {have.get(key, 0.0):g}")
        trainer = TorchTrainer(
            _worker, train_loop_config={"out": os.path.abspath(cfg.out), "resume": resume},
            scaling_config=ScalingConfig(num_workers=n, use_gpu=gpu, resources_per_worker={"CPU": cpus}),
            run_config=RunConfig(name=f"learnability-{uuid.uuid4().hex[:8]}",
                                 storage_path=os.path.abspath(os.path.join(cfg.out, "ray_train")),
                                 failure_config=FailureConfig(max_failures=cfg.ray.max_restarts)))
        try:
            trainer.fit()
        except ray.train.TrainingFailedError as e:
            lines = [line for line in str(e).splitlines() if line.strip()]
            raise RankFailedError(f"Ray Train's workers failed ({lines[-1] if lines else type(e).__name__}; "
                                  f"{cfg.ray.max_restarts} restarts allowed by ray.max_restarts); {resume_hint(cfg.out)}") from None
    finally:  # bounded in time, Ctrl-C included
        stopping.shutdown([], started, keep=before)
    with open(os.path.join(cfg.out, "summary.json")) as f:
        return json.load(f)
