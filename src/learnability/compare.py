"""Run several arms side by side: identical seeds, data, models and evaluation schedule."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from learnability import config as C
from learnability.backend import run_arm
from learnability.io import atomic_write_text
from learnability.report import build_report, seeds_report
from learnability.runtime import absolute_paths
from learnability.scores import list_scores
from learnability.tasks import get_task

# Arm names beyond the score names: image-text selection, independent (ActiveCLIP) or joint (JEST).
# jest scores with the online proxy (ActiveCLIP's actor); jest_learner is JEST as published, the
# learner scoring its own super-batch (learner's pairwise loss minus the reference's; no online proxy).
ALIASES = {"activeclip": {"score": "learnability"}, "jest": {"score": "learnability", "sampler": "jest"},
           "jest_learner": {"score": "rho", "sampler": "jest"}}


def arm_config(cfg: C.RunConfig, arm: str, out: str) -> C.RunConfig:
    """The run config of one arm: a score name (`uniform` = no selection) or an alias."""
    if arm not in list_scores() and arm not in ALIASES:
        raise C.ConfigError(f"--arms: unknown arm {arm!r}; choose from {', '.join(list_scores() + list(ALIASES))}")
    selection = dataclasses.replace(cfg.selection, **ALIASES.get(arm, {"score": arm}))
    return dataclasses.replace(cfg, selection=selection, name=arm, out=os.path.join(out, arm))


def compare(cfg: C.RunConfig, arms: Sequence[str], out: str, amortise: int = 10,
            resume: bool = False) -> tuple[str, list[dict]]:
    """Train each arm into `out/<arm>` on the same data, sharing one reference in `out/reference`;
    then write the report into `out`. With `resume`, finished arms are kept and the others
    continue from their newest checkpoint."""
    arms = list(dict.fromkeys(arms))
    cfg = dataclasses.replace(cfg, reference=dataclasses.replace(cfg.reference, dir=cfg.reference.dir or os.path.join(out, "reference")))
    configs = _validated(cfg, arms, out)
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, "compare.json"),
                      json.dumps({"arms": arms, "config": C.to_dict(absolute_paths(cfg))}, indent=2) + "\n")
    data = get_task(cfg.task).load(cfg)  # built once, shared by the arms
    for c in _todo(configs, resume):
        run_arm(c, data, resume=resume)
    return build_report([c.out for c in configs], out, amortise)


def compare_seeds(cfg: C.RunConfig, arms: Sequence[str], out: str, seeds: Sequence[int], amortise: int = 10,
                  resume: bool = False) -> tuple[str, list[dict]]:
    """`compare` once per training seed (`train.seed`; the data split stays the one `data.seed` draws),
    into `out/seed<N>`, each with its own report and its own reference (seeded with train.seed + 2);
    then `out/report.md`: medians over the seeds and each arm against uniform seed by seed
    (`report.seeds_report`)."""
    seeds = list(seeds)
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise C.ConfigError(f"--seeds: give two or more distinct seeds >= 0 (e.g. --seeds=0,1,2); got {seeds}")
    if cfg.reference.dir:  # a reference is trained with its seed (train.seed + 2) and refused by another seed
        raise C.ConfigError("--seeds: each seed trains its own reference into <out>/seed<N>/reference (seeded with "
                            "train.seed + 2, so one folder cannot serve them all); drop --reference.dir")
    _validated(cfg, list(dict.fromkeys(arms)), out)  # every arm is checked before any seed trains
    os.makedirs(out, exist_ok=True)
    if not resume:
        atomic_write_text(os.path.join(out, "compare.json"), json.dumps(
            {"arms": list(arms), "seeds": seeds, "config": C.to_dict(absolute_paths(cfg))}, indent=2) + "\n")
    for seed in seeds:
        folder = os.path.join(out, f"seed{seed}")
        seeded = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
        compare(seeded, arms, folder, amortise, resume=resume and os.path.isfile(os.path.join(folder, "compare.json")))
    return seeds_report({s: os.path.join(out, f"seed{s}") for s in seeds}, out, amortise, order=arms)


def _validated(cfg: C.RunConfig, arms: list[str], out: str) -> list[C.RunConfig]:
    """Each arm's run config, every one validated before any training starts."""
    if not arms:
        raise C.ConfigError("--arms: no arm given")
    configs = [arm_config(cfg, a, out) for a in arms]
    for arm, c in zip(arms, configs):
        try:
            C.validate(c)
        except C.ConfigError as e:  # an alias sets keys the user did not type: say which arm did
            raise C.ConfigError(f"arm {arm!r}: {e}") from e
    return configs


def _todo(configs: list[C.RunConfig], resume: bool) -> list[C.RunConfig]:
    return [c for c in configs if not (resume and os.path.exists(os.path.join(c.out, "summary.json")))]


def resumed_compare(out: str, overrides: list[str]) -> tuple[C.RunConfig, list[str], list[int]]:
    """The config, arms and seeds ([] for a one-seed compare) saved in `out/compare.json`; only
    `--progress` may change on resume."""
    saved = C.load_for_resume(out, "compare.json", overrides, "learnability compare")
    return (C.apply_overrides(C.from_dict(C.RunConfig, saved["config"]), overrides), list(saved["arms"]),
            [int(s) for s in saved.get("seeds", [])])
