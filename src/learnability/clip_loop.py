"""`run_clip`: the image-text task (`tasks.clip`) through the one loop, `loop.run`; kept for the
callers of the former image-text loop, with the task's loss functions re-exported."""

from __future__ import annotations

import dataclasses

from learnability import config as C
from learnability.loop import run
from learnability.pairs.pairset import PairSplits
from learnability.tasks.clip import actor_loss_fn, embedding_rows_fn, pair_loss_fn, train_loss_fn, train_pairs

__all__ = ["actor_loss_fn", "embedding_rows_fn", "pair_loss_fn", "run_clip", "train_loss_fn", "train_pairs"]


def run_clip(cfg: C.RunConfig, data: tuple[PairSplits, int] | None = None, resume: bool = False) -> dict:
    """`loop.run` with `task=clip`."""
    return run(dataclasses.replace(cfg, task="clip"), data, resume)
