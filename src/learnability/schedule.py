"""Learning-rate schedules: pure functions of the step, so a resumed run needs no saved state."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_at(step: int, *, lr: float, steps: int, warmup: int = 0, schedule: str = "constant",
          final_fraction: float = 0.0) -> float:
    """The learning rate of update `step` (1-based) of `steps`: a linear warm-up over the first
    `warmup` updates (from lr / warmup to lr), then `constant` at `lr`, or `cosine` from `lr`
    down to `final_fraction * lr` at the last update."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
    if step < 1 or steps < 1 or warmup < 0:
        raise ValueError(f"need step >= 1, steps >= 1 and warmup >= 0; got step={step}, steps={steps}, warmup={warmup}")
    if step <= warmup:
        return lr * step / warmup
    if schedule == "constant" or steps <= warmup:
        return lr
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress)))
