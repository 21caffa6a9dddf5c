"""Run several arms side by side: identical seeds, data, models and evaluation schedule."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from learnability import config as C
from learnability.data import build_data
from learnability.io import atomic_write_text
from learnability.loop import run
from learnability.report import build_report
from learnability.scores import list_scores


def compare(cfg: C.RunConfig, arms: Sequence[str], out: str, amortise: int = 10) -> tuple[str, list[dict]]:
    """Train each arm (a score name; `uniform` = no selection) into `out/<arm>` on the same data,
    sharing one reference in `out/reference`; then write the report into `out`."""
    arms = list(dict.fromkeys(arms))
    bad = [a for a in arms if a not in list_scores()]
    if bad or not arms:
        raise C.ConfigError(f"--arms: unknown arm(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(list_scores())}")
    for arm in arms:  # validate every arm's config before any training starts
        C.validate(dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, score=arm)))
    os.makedirs(out, exist_ok=True)
    reference = dataclasses.replace(cfg.reference, dir=cfg.reference.dir or os.path.join(out, "reference"))
    atomic_write_text(os.path.join(out, "compare.json"),
                      json.dumps({"arms": arms, "config": C.to_dict(cfg)}, indent=2) + "\n")
    splits = build_data(cfg.data)
    for arm in arms:
        arm_cfg = dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, score=arm),
                                      reference=reference, out=os.path.join(out, arm))
        run(arm_cfg, splits)
    return build_report([os.path.join(out, a) for a in arms], out, amortise)
