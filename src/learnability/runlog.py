"""`RunLogger`: write a run directory from your own training loop, so `learnability report` reads it.

    log = RunLogger("runs/mine/learnability", arm="learnability")
    log.write(step, selector.ledger, loss=loss.item(), test_accuracy=acc)   # acc only when evaluated
    log.close()

Rows have the same JSON-lines format as `learnability run`: step, cumulative FLOPs and seconds by
category (`Ledger.row()`), and whatever values you pass.
"""

from __future__ import annotations

import json
import os
from typing import Any

from learnability.flops import Ledger
from learnability.io import JsonlWriter, atomic_write_text


class RunLogger:
    def __init__(self, run_dir: str, arm: str, config: dict[str, Any] | None = None):
        if os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
            raise FileExistsError(f"{run_dir} already holds a run; choose a new folder so nothing is overwritten")
        cfg = {"selection": {"score": arm}}
        for section, values in (config or {}).items():
            cfg.setdefault(section, {}).update(values) if isinstance(values, dict) else cfg.__setitem__(section, values)
        os.makedirs(run_dir, exist_ok=True)
        atomic_write_text(os.path.join(run_dir, "config.json"), json.dumps(cfg, indent=2) + "\n")
        self.writer = JsonlWriter(os.path.join(run_dir, "metrics.jsonl"))
        self.run_dir = run_dir

    def write(self, step: int, ledger: Ledger, **values: Any) -> None:
        """One row: `step`, the ledger's cumulative FLOPs and seconds, and `values` (plain numbers)."""
        row: dict[str, Any] = {"step": int(step)}
        row.update(ledger.row())
        row.update({k: float(v) if hasattr(v, "item") else v for k, v in values.items()})
        self.writer.write(row)

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
