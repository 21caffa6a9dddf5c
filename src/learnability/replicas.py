"""The learner's replicas in a data-parallel run: what the training loop asks of its process group.

A run launched on N processes (`--train.nproc=N` through `torch.distributed.run`, or
`backend=ray_train` through Ray Train's TorchTrainer) has N replicas of the learner and of the
online proxy. Every rank draws its own part of each super-batch, scores and selects locally, and
averages the gradients of its models with the other ranks before each optimizer step, so the
replicas stay identical; rank 0 alone evaluates and writes files. `Solo` is the single process:
every method is the identity, so the one loop serves both.

Why no `DistributedDataParallel`: the tasks' losses call their models' sub-modules (a dual
encoder's two towers), which DDP's forward hook would not see, and scoring runs the proxy outside
autograd. One flat all-reduce of the gradients per update (`Group.sync`) is exact for any module,
keeps the state dicts and the FLOP counts of the unwrapped models, and costs one collective per
model per update (DDP overlaps it with the backward pass: a gain on large models, not here).
"""

from __future__ import annotations

import datetime
import os
from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn

from learnability.flops import Ledger

_OWN = False  # whether `join` initialised the process group


def rank_part(drawn: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank `rank`'s equal share of positions drawn for `world` ranks: `[world * n]` -> `[n]`, the
    ranks' shares in rank order (disjoint, together the draw)."""
    if drawn.shape[0] % world:
        raise ValueError(f"{drawn.shape[0]} positions do not split into {world} equal parts")
    n = drawn.shape[0] // world
    return drawn[rank * n:(rank + 1) * n]


class Replicas(Protocol):
    rank: int    # this process, 0 .. world - 1
    world: int   # processes training the learner
    main: bool   # rank 0: evaluates and writes files

    def part(self, drawn: torch.Tensor) -> torch.Tensor:
        """This rank's share of positions drawn for every rank `[world * n]` -> `[n]`."""

    def sync(self, model: nn.Module) -> None:
        """After backward: average `model`'s gradients over ranks, and give every rank rank 0's
        buffers (BatchNorm statistics), so the replicas stay identical."""

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's `[n, ...]` tensor concatenated in rank order, `[world * n, ...]`."""

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over ranks (the same keys on every rank)."""

    def total(self, ledger: Ledger) -> Ledger:
        """The ledger summed over ranks: every rank's FLOPs and seconds."""

    def gather_object(self, obj: object) -> list | None:
        """Every rank's `obj` in rank order, on rank 0 (None elsewhere)."""

    def barrier(self) -> None: ...


class Solo:
    """One process: the identity."""

    rank, world, main = 0, 1, True

    def part(self, drawn: torch.Tensor) -> torch.Tensor:
        return drawn

    def sync(self, model: nn.Module) -> None:
        pass

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        return values

    def total(self, ledger: Ledger) -> Ledger:
        return ledger

    def gather_object(self, obj: object) -> list | None:
        return [obj]

    def barrier(self) -> None:
        pass


class Group:
    """Ranks of an initialised default process group (gloo on CPU, nccl on CUDA)."""

    def __init__(self, device: torch.device):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.main = self.rank == 0
        self.device = device  # where collectives run: nccl needs CUDA tensors

    def part(self, drawn: torch.Tensor) -> torch.Tensor:
        return rank_part(drawn, self.rank, self.world)

    def sync(self, model: nn.Module) -> None:
        params = [p for p in model.parameters() if p.grad is not None]  # the same on every rank: same model and loss
        grads = [p.grad for p in params]
        if grads:  # one all-reduce of every gradient, flattened in float32
            flat = torch.cat([g.reshape(-1).float() for g in grads]).to(self.device)
            dist.all_reduce(flat)
            flat /= self.world
            for p, part in zip(params, flat.split([g.numel() for g in grads])):
                p.grad = part.view_as(p).to(p.dtype)
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for b in model.buffers():  # one broadcast per buffer dtype (BatchNorm: float statistics, long counters)
            by_dtype.setdefault(b.dtype, []).append(b)
        for buffers in by_dtype.values():
            flat = torch.cat([b.reshape(-1) for b in buffers]).to(self.device)
            dist.broadcast(flat, src=0)
            for b, part in zip(buffers, flat.split([b.numel() for b in buffers])):
                b.copy_(part.view_as(b))

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        local = t.to(self.device)
        out = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(out, local)
        return torch.cat(out).to(t.device)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        keys = sorted(values)
        v = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(v)
        return dict(zip(keys, (v / self.world).tolist()))

    def total(self, ledger: Ledger) -> Ledger:
        fk, sk = sorted(ledger.flops), sorted(ledger.seconds)
        v = torch.tensor([ledger.flops[k] for k in fk] + [ledger.seconds[k] for k in sk], dtype=torch.float64,
                         device=self.device)
        dist.all_reduce(v)
        v = v.tolist()
        return Ledger(flops=dict(zip(fk, v[:len(fk)])), seconds=dict(zip(sk, v[len(fk):])))

    def gather_object(self, obj: object) -> list | None:
        out = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self) -> None:
        dist.barrier()


def launched_ranks() -> int:
    """WORLD_SIZE as set by a launcher (torch.distributed.run, Ray Train), 1 when not launched."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device: str, timeout_s: float = 3600.0) -> tuple[Replicas, torch.device]:
    """This process's replicas and its device. Started by a launcher with WORLD_SIZE > 1, it joins
    (or, under Ray Train, finds) the default process group: gloo on CPU, nccl on CUDA, each rank on
    the GPU `LOCAL_RANK`. A collective waits at most `timeout_s` for a peer: long, because the
    others wait while rank 0 trains the reference or evaluates (a rank that dies ends their waits
    at once: its connections close, and the launcher stops the rest)."""
    dev = torch.device(device)
    if launched_ranks() <= 1 and not dist.is_initialized():
        return Solo(), dev
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    global _OWN
    if not dist.is_initialized():
        _OWN = True
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    group = Group(dev)
    return (group if group.world > 1 else Solo()), dev


def leave() -> None:
    """Destroy the default process group if `join` made it (Ray Train's is Ray Train's)."""
    global _OWN
    if _OWN and dist.is_initialized():
        dist.destroy_process_group()
    _OWN = False
