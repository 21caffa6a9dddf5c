"""Data-parallel runs on one machine: `learnability run --train.nproc=N` starts N processes with
torch's elastic launcher (what `torchrun` runs), each training one replica in `loop.run`.

The launching process validates the config and saves it into the run folder; every rank reads it
from there (`python -m learnability.launch RUN_DIR fresh|resume`), so all ranks train exactly one
config. When a rank fails (an error, or killed), the launcher stops the others and
`run_ranks` raises a `RankFailedError` naming the rank and how it ended, with the command that
resumes the run from its newest checkpoint. Ctrl-C stops every rank and is a KeyboardInterrupt.

Several machines: run `torchrun --nnodes=M --nproc-per-node=N --rdzv-endpoint=HOST:PORT -m
learnability.cli run --out=RUN_DIR ...` on each (RUN_DIR a folder every machine sees; started as
a rank, the CLI trains in place, with `train.nproc` set to the launcher's world size), or use
`backend=ray_train` on a Ray cluster.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import sys
import uuid

import torch

from learnability import config as C
from learnability.checkpoint import list_checkpoints
from learnability.errors import NonFiniteLossError, RankFailedError
from learnability.runtime import absolute_paths, check_unfinished


def resume_hint(out: str) -> str:
    found = list_checkpoints(out)
    at = f"from its newest checkpoint ({os.path.basename(found[0])})" if found else \
        "from step 1 (it wrote no checkpoint yet; --checkpoint.every=N writes them)"
    return f"files are kept in {out}; `learnability run --resume {shlex.quote(out)}` continues it {at}"


def how_it_ended(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode} (its error is printed above)"


def root_failure(failures: dict) -> tuple[int, object]:
    """The rank whose failure stopped the run, from torch's `ChildFailedError.failures` (rank ->
    `ProcessFailure`). The launcher stops the other ranks with SIGTERM, and failures are stamped in
    whole seconds, so torch's `get_first_failure` often names a rank it stopped itself (rank 0 wins
    the tie); a rank that ended any other way comes first, then the earliest, then the lowest rank."""
    return min(failures.items(), key=lambda kv: (kv[1].exitcode == -signal.SIGTERM, kv[1].timestamp, kv[0]))


def prepare(cfg: C.RunConfig, resume: bool) -> None:
    """Checks in the launching process, before any rank starts: the config, the devices, a
    finished run refused on resume; then the config saved for the ranks to read."""
    if resume:
        check_unfinished(cfg.out)
    C.validate(cfg)
    if cfg.train.device.startswith("cuda"):
        have = torch.cuda.device_count()
        if have < cfg.train.nproc:
            raise C.ConfigError(f"train.nproc={cfg.train.nproc} with train.device=cuda needs {cfg.train.nproc} GPUs "
                                f"(one per rank) but this machine has {have}; lower train.nproc")
    os.makedirs(cfg.out, exist_ok=True)
    C.save(absolute_paths(cfg), os.path.join(cfg.out, "config.json"))


def run_ranks(cfg: C.RunConfig, resume: bool = False) -> dict:
    """Train `cfg` on `cfg.train.nproc` processes on this machine; returns rank 0's summary."""
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    prepare(cfg, resume)
    launch = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=cfg.train.nproc, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.1,
                          start_method="spawn", logs_specs=DefaultLogsSpecs())
    try:
        elastic_launch(launch, sys.executable)("-m", "learnability.launch", cfg.out, "resume" if resume else "fresh")
    except ChildFailedError as e:
        rank, failure = root_failure(e.failures)
        raise RankFailedError(f"rank {rank} of {cfg.train.nproc} {how_it_ended(failure.exitcode)}, so the run was "
                              f"stopped; {resume_hint(cfg.out)}") from None
    except SignalException as e:
        raise KeyboardInterrupt(str(e)) from None
    with open(os.path.join(cfg.out, "summary.json")) as f:
        return json.load(f)


def rank_main(argv: list[str]) -> int:
    """One rank: `RUN_DIR fresh|resume`, the config read from RUN_DIR/config.json."""
    from learnability.loop import run
    from learnability.replicas import leave

    out, mode = argv
    with open(os.path.join(out, "config.json")) as f:
        cfg = dataclasses.replace(C.from_dict(C.RunConfig, json.load(f)), out=out)
    if not cfg.train.threads:  # the cores shared by the ranks on this machine, not every core each
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    where = f"learnability run (rank {os.environ.get('RANK', '0')})"
    try:
        run(cfg, resume=mode == "resume")
    except KeyboardInterrupt:
        return 130
    except NonFiniteLossError as e:
        print(f"{where}: stopped: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # bad input: the config, data, a checkpoint (every error of ours is one)
        print(f"{where}: error: {e}", file=sys.stderr)
        return 2
    finally:
        leave()
    return 0


if __name__ == "__main__":
    sys.exit(rank_main(sys.argv[1:]))
