"""Score functions: pure maps from per-example losses to per-example scores `[B]`.

A score names the losses it needs (`online`: the online proxy's, `reference`: the frozen
reference's, `learner`: the learner's own; `corrupted`, not a loss: the data's ground truth,
1 where the built-in synthetic noise corrupted the example, or its kind's grade in [0, 1], for the
benchmark's oracles), so callers
compute only those. Higher scores are
selected first. Add one with a function and `@register_score(...)`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping

import torch

from learnability.errors import NonFiniteLossError  # noqa: F401  (re-exported)

LOSS_KINDS = ("online", "reference", "learner", "corrupted")
ORACLE_MARGIN = 1e4  # the oracle's gap between clean and corrupted scores


@dataclasses.dataclass(frozen=True)
class Score:
    name: str
    fn: Callable[..., torch.Tensor]
    needs: tuple[str, ...]


_SCORES: dict[str, Score] = {}


def register_score(*needs: str) -> Callable:
    bad = set(needs) - set(LOSS_KINDS)
    if bad:
        raise ValueError(f"unknown loss kinds {sorted(bad)}; choose from {LOSS_KINDS}")

    def wrap(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        _SCORES[fn.__name__] = Score(fn.__name__, fn, tuple(needs))
        return fn

    return wrap


def list_scores() -> list[str]:
    return sorted(_SCORES)


def get_score(name: str) -> Score:
    if name not in _SCORES:
        raise ValueError(f"unknown score {name!r}; choose one of {', '.join(list_scores())}")
    return _SCORES[name]


def compute_scores(name: str, losses: Mapping[str, torch.Tensor], n: int) -> torch.Tensor:
    """Scores `[n]` (float32) of score `name` from per-example `losses` (each `[n]`), or a `[n, n]`
    score matrix from pairwise losses (scores are elementwise; all losses then share that shape).
    Raises ValueError when a needed loss is missing, not a real tensor, mis-shaped, or not finite
    (a NaN loss cannot be ranked: the message says how many and at which positions), or when
    finite losses give a non-finite score (values beyond float32's range)."""
    score = get_score(name)
    args = {}
    for kind in score.needs:
        if kind not in losses:
            raise ValueError(f"score {name!r} needs the {kind} loss")
        t = losses[kind]
        if not isinstance(t, torch.Tensor) or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{kind} loss must be a real-valued tensor; got "
                             f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}")
        if t.shape not in ((n,), (n, n)):
            raise ValueError(f"{kind} loss must have one value per example, shape [{n}] (or per pair, [{n}, {n}], "
                             f"for joint selection); got {tuple(t.shape)}")
        finite = torch.isfinite(t)
        if not finite.all():
            bad = (~finite).nonzero().tolist()
            where = [tuple(p) if len(p) > 1 else p[0] for p in bad[:5]]
            raise NonFiniteLossError(f"{kind} loss has {len(bad)} non-finite value(s) (NaN or inf) at position(s) "
                             f"{where}{' ...' if len(bad) > 5 else ''}; cannot score them")
        args[kind] = t.float()
    shapes = {tuple(t.shape) for t in args.values()}
    if len(shapes) > 1:
        raise ValueError(f"score {name!r}: the losses mix per-example [{n}] and pairwise [{n}, {n}] shapes "
                         f"({', '.join(f'{k} {tuple(t.shape)}' for k, t in args.items())}); give all of one kind")
    out = score.fn(n=n, **args)
    if not torch.isfinite(out).all():
        raise ValueError(f"score {name!r} overflows float32 on these losses (values beyond +-3.4e38); "
                         f"the losses are not plausible per-example losses")
    return out


@register_score("online", "reference")
def learnability(*, n: int, online: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Learnable now: high loss under the online proxy, low loss under the clean reference."""
    return online - reference


@register_score("online")
def hard_learner(*, n: int, online: torch.Tensor) -> torch.Tensor:
    """Hard for the online proxy (prefers noisy labels too)."""
    return online


@register_score("reference")
def easy_reference(*, n: int, reference: torch.Tensor) -> torch.Tensor:
    """Easy for the clean reference."""
    return -reference


@register_score()
def uniform(*, n: int) -> torch.Tensor:
    """All equal: softmax sampling then draws a uniform random subset."""
    return torch.zeros(n)


@register_score()
def random(*, n: int) -> torch.Tensor:
    """The random-subset control: a super-batch of B drawn like every selection arm's, b of it kept
    uniformly at random (unlike `uniform`, which draws only b). It separates what selection gains
    from what drawing more candidates per update does."""
    return torch.zeros(n)


@register_score("corrupted")
def oracle(*, n: int, corrupted: torch.Tensor) -> torch.Tensor:
    """The perfect noise filter, a benchmark bound and not a method: every clean candidate ahead of
    every corrupted one (a gap of `ORACLE_MARGIN`: softmax sampling at temperature <= 1, or up to
    100, draws a corrupted one only when the clean ones run out), uniformly at random within each.
    It reads the data's ground truth, which only built-in synthetic noise has."""
    return -ORACLE_MARGIN * corrupted


@register_score("corrupted")
def oracle_graded(*, n: int, corrupted: torch.Tensor) -> torch.Tensor:
    """`oracle` on graded ground truth: `corrupted` holds each noise kind's grade in [0, 1] (the
    task's `NOISE_GRADES`: a duplicate, whose caption is true, before a wrong attribute, before junk,
    before a false caption), so the filter keeps the least damaged pairs first, not all alike."""
    return -ORACLE_MARGIN * corrupted


@register_score("learner", "reference")
def rho(*, n: int, learner: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """RHO-LOSS: the learner's own loss minus the reference's (scores with the big model)."""
    return learner - reference
