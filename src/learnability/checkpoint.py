"""Checkpoints: every piece of a run's state, written atomically with a checksum; resume from the
newest good one.

A checkpoint file is `MAGIC | sha256(payload) | payload`, where the payload is `torch.save` of a
dict of state dicts (learner, optimizers, EMA, online proxy, the selector's generator, the data
stream's position, the ledger, torch's global RNG) plus the number of metrics rows written. It is
written to a temporary file, fsynced and renamed, so a partly written file never replaces a good
one; older checkpoints are pruned only after the new one is in place. On resume a file whose
checksum does not match is reported and skipped, and the previous good checkpoint is used.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import sys
from typing import Any, Protocol

import torch

from learnability import faults
from learnability.errors import CheckpointError  # noqa: F401  (re-exported)
from learnability.io import JsonlWriter, atomic_write, atomic_write_text

MAGIC = b"LRNCKPT1"
_NAME = re.compile(r"step-(\d+)\.ckpt$")


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


def _dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def encode(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).digest() + payload


def decode(blob: bytes, path: str = "checkpoint") -> dict:
    """The state in `blob`; CheckpointError if it is not a checkpoint or its checksum does not match."""
    if blob[:len(MAGIC)] != MAGIC:
        raise CheckpointError(f"{path} is not a learnability checkpoint (bad header)")
    digest, payload = blob[len(MAGIC):len(MAGIC) + 32], blob[len(MAGIC) + 32:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"{path} is damaged: its sha256 checksum does not match its contents")
    return torch.load(io.BytesIO(payload), weights_only=True)


def write(run_dir: str, step: int, state: dict, keep: int = 2) -> str:
    """Write `state` as the checkpoint of `step` (atomic), then prune all but the newest `keep`."""
    path = os.path.join(_dir(run_dir), f"step-{step:08d}.ckpt")
    blob = encode(state)

    def put(f) -> None:
        half = len(blob) // 2
        f.write(blob[:half])
        f.flush()
        faults.point("checkpoint_write")  # tests kill the process here: mid-write, before the rename
        f.write(blob[half:])

    atomic_write(path, put)
    for old in list_checkpoints(run_dir)[keep:]:
        os.unlink(old)
    return path


def list_checkpoints(run_dir: str) -> list[str]:
    """Checkpoint files of a run, newest first (temporary files of an interrupted write excluded)."""
    found = [(int(m.group(1)), p) for p in glob.glob(os.path.join(_dir(run_dir), "step-*.ckpt"))
             if (m := _NAME.search(os.path.basename(p)))]
    return [p for _, p in sorted(found, reverse=True)]


def load_latest(run_dir: str) -> dict | None:
    """The newest checkpoint whose checksum matches (None when the run has none yet). A damaged
    one is reported on stderr and skipped; CheckpointError when every one is damaged. Temporary
    files of interrupted writes are removed."""
    for tmp in glob.glob(os.path.join(_dir(run_dir), ".step-*.tmp")):  # a write killed before its rename
        os.unlink(tmp)
    paths = list_checkpoints(run_dir)
    bad = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                state = decode(f.read(), path)
        except (CheckpointError, OSError, EOFError, RuntimeError) as e:
            bad.append(str(e))
            print(f"learnability: warning: {e}; trying the previous checkpoint", file=sys.stderr)
            continue
        return state
    if bad:
        raise CheckpointError(f"no usable checkpoint in {_dir(run_dir)}: {'; '.join(bad)}. Delete that folder "
                              f"to restart the run from step 0")
    return None


def capture(parts: dict[str, Stateful | None], **extra: Any) -> dict:
    """A checkpoint state: each part's state dict, torch's global RNG, and `extra` values."""
    state = {"parts": {k: v.state_dict() for k, v in parts.items() if v is not None},
             "torch_rng": torch.get_rng_state(), **extra}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


# Parts added to the checkpoint after release, and what a checkpoint written before them resumes
# without: such a run continues, the part starting empty (its `started_late()` called, if it has
# one), with a warning saying what that changes.
ADDED_LATER = {"coverage": "its `distinct_trained` counts only the examples trained on after this resume "
                           "(`coverage_partial` in summary.json)"}


def restore(parts: dict[str, Stateful | None], state: dict, warn: bool = True) -> None:
    """Load each part's state dict from `state` (the same parts must be present, but for those in
    `ADDED_LATER`, which start empty, with a warning on stderr if `warn`) and the RNGs."""
    want = {k for k, v in parts.items() if v is not None}
    have = set(state["parts"])
    older = {k for k in want - have if k in ADDED_LATER}  # written by a version before these parts
    if want - older != have:
        extra, missing = sorted(have - want), sorted(want - have - older)
        raise CheckpointError(f"the checkpoint holds {sorted(have)} but this run has {sorted(want)}"
                              f"{f' (it lacks {missing})' if missing else ''}{f' (this run has no {extra})' if extra else ''}"
                              f"; it was written by a run with another config (train.ema, reference.train_on or "
                              f"backend): resume with that config, or start the run again in a new --out")
    for k in sorted(older):
        getattr(parts[k], "started_late", lambda: None)()
        if warn:
            print(f"learnability: warning: the checkpoint was written before runs saved their {k!r}; resuming with "
                  f"it empty: {ADDED_LATER[k]}", file=sys.stderr)
    for k in want - older:
        parts[k].load_state_dict(state["parts"][k])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def reopen_metrics(path: str, rows: int) -> JsonlWriter:
    """Keep the first `rows` lines of a metrics file (those the checkpoint covers; a killed run may
    have written more, or half a line), rewritten atomically, and append from there."""
    kept = []
    if os.path.exists(path):
        with open(path) as f:
            for i, line in enumerate(f):
                if i == rows:
                    break
                kept.append(line)
    if len(kept) < rows or any(not line.endswith("\n") for line in kept):
        raise CheckpointError(f"{path} holds fewer complete rows ({len(kept)}) than the checkpoint recorded ({rows})")
    atomic_write_text(path, "".join(kept))
    return JsonlWriter(path, mode="a")


class _Discard:
    """The metrics writer of a data-parallel rank other than 0: rank 0 alone writes files."""

    def write(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


class Checkpointer:
    """The loop's handle: `resume()` once at start, `maybe_save(step, ...)` after each step.

    `parts` are the same on every data-parallel rank (the learner, optimizers, the stream) and are
    saved from rank 0; `local` parts differ by rank (a rank's selection generator and ledger): each
    rank's are gathered into the one file, with its global RNG, and each rank restores its own. A
    checkpoint resumes only on as many ranks as wrote it. `rep` is the run's `replicas.Replicas`
    (None: one process)."""

    def __init__(self, run_dir: str, every: int, keep: int, resume: bool, rep: object | None = None):
        self.run_dir, self.every, self.keep, self.resuming = run_dir, every, keep, resume
        self.rank, self.world = (rep.rank, rep.world) if rep is not None else (0, 1)
        self.gather = rep.gather_object if rep is not None else (lambda obj: [obj])

    def resume(self, parts: dict[str, Stateful | None], metrics_path: str,
               local: dict[str, Stateful | None] | None = None) -> tuple[int, dict, JsonlWriter | _Discard]:
        """(first step to run, extra values saved with the checkpoint, metrics writer)."""
        state = load_latest(self.run_dir) if self.resuming else None
        if state is None:
            return 1, {}, JsonlWriter(metrics_path) if self.rank == 0 else _Discard()
        restore(parts, state, warn=self.rank == 0)
        if local is not None:
            ranks = state.get("ranks")
            if ranks is None or len(ranks) != self.world:
                raise CheckpointError(f"the checkpoint in {_dir(self.run_dir)} was written by "
                                      f"{len(ranks) if ranks else 'a run without'} rank(s) but this run has {self.world}; "
                                      f"resume it with --train.nproc={len(ranks) if ranks else 1}")
            restore(local, ranks[self.rank], warn=self.rank == 0)  # its parts and its RNGs
        writer = reopen_metrics(metrics_path, state["metrics_rows"]) if self.rank == 0 else _Discard()
        return state["step"] + 1, state.get("extra", {}), writer

    def maybe_save(self, step: int, parts: dict[str, Stateful | None], metrics_rows: int,
                   local: dict[str, Stateful | None] | None = None, **extra: Any) -> None:
        """Every `every` steps: gather every rank's `local` parts and write (rank 0) the checkpoint.
        Every rank must call it at the same steps."""
        if not (self.every and step % self.every == 0):
            return
        ranks = self.gather(capture(local)) if local is not None else None
        if self.rank == 0:
            state = capture(parts, step=step, metrics_rows=metrics_rows, extra=extra)
            if ranks is not None:
                state["ranks"] = ranks
            write(self.run_dir, step, state, self.keep)
