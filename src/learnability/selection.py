"""Samplers: pure functions choosing `k` distinct indices of a score vector `[B]`.

`softmax`: sampling proportional to softmax(scores / temperature) without replacement, by the
Gumbel top-k trick (Kool et al. 2019): the top k of `scores + temperature * Gumbel` is
distributed as k sequential softmax draws without replacement. `topk`: the k highest scores, ties
broken by the lower index. Add one with a function and `@register_sampler`.

Rules every sampler keeps (property-tested in tests/test_fuzz_selection.py): the result is `[k]`
distinct int64 indices in `[0, B)`; k = B gives a permutation; k outside `1..B`, a k that is not an
integer, scores that are not 1-D or hold NaN/inf, and a temperature that is not a finite number
> 0 are ValueErrors. Softmax draws uniformly among exactly tied keys (all-equal scores, or a
temperature so small that the noise vanishes against the scores), never by position.
One registry holds every sampler, flat ones (a score vector `[B]`) and joint ones (a score matrix
`[B, B]` drawn in chunks, `learnability.joint`): `list_samplers(kind)`, `get_sampler(name)`,
`is_joint(name)`.
"""

from __future__ import annotations

import numbers
from typing import Callable, Protocol

import torch


class Sampler(Protocol):
    def __call__(self, scores: torch.Tensor, k: int, *, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor: ...


class JointSampler(Protocol):
    def __call__(self, score_matrix: torch.Tensor, k: int, n_chunks: int, *, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor: ...


_SAMPLERS: dict[str, tuple[Sampler | JointSampler, bool]] = {}  # name -> (sampler, joint)
KINDS = ("flat", "joint", "all")


def register_sampler(fn: Callable | None = None, *, name: str | None = None, joint: bool = False) -> Callable:
    """`@register_sampler` registers a flat sampler under its function's name;
    `@register_sampler(name="jest", joint=True)` a joint one (`JointSampler`)."""
    def wrap(f: Callable) -> Callable:
        _SAMPLERS[name or f.__name__] = (f, joint)
        return f

    return wrap(fn) if fn is not None else wrap


def list_samplers(kind: str = "flat") -> list[str]:
    """Registered sampler names: flat (score vectors; the default), joint (score matrices) or all."""
    if kind not in KINDS:
        raise ValueError(f"unknown sampler kind {kind!r}; choose one of {', '.join(KINDS)}")
    return sorted(n for n, (_, joint) in _SAMPLERS.items() if kind == "all" or joint == (kind == "joint"))


def get_sampler(name: str) -> Sampler | JointSampler:
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(list_samplers('all'))}")
    return _SAMPLERS[name][0]


def is_joint(name: str) -> bool:
    """Whether sampler `name` draws from a score matrix `[B, B]` (`JointSampler`)."""
    get_sampler(name)
    return _SAMPLERS[name][1]


def _check(scores: torch.Tensor, k: int, temperature: float) -> None:
    if not isinstance(scores, torch.Tensor):
        raise ValueError(f"scores must be a 1-D tensor [B]; got {type(scores).__name__}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer (how many to select); got {k!r}")
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D [B]; got shape {tuple(scores.shape)}")
    if not 1 <= k <= scores.numel():
        raise ValueError(f"cannot select {k} of {scores.numel()} candidates; need 1 <= k <= B")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not 0 < temperature < float("inf"):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
    if scores.is_complex() or scores.dtype == torch.bool:
        raise ValueError(f"scores must be real numbers; got dtype {scores.dtype}")
    finite = torch.isfinite(scores)
    if not finite.all():
        bad = (~finite).nonzero().squeeze(1)
        raise ValueError(f"scores contain {bad.numel()} NaN or inf value(s), at positions {bad[:5].tolist()}"
                         f"{' ...' if bad.numel() > 5 else ''}; cannot rank them")


def gumbel(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise, float64, finite."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64).clamp_(1e-300, 1.0 - 1e-16)
    return -torch.log(-torch.log(u))


@register_sampler
def softmax(scores: torch.Tensor, k: int, *, temperature: float = 1.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """`[k]` distinct indices drawn with probability proportional to softmax(scores / temperature),
    without replacement. The keys are `scores + temperature * G` for temperature <= 1 and `scores /
    temperature + G` above (the same order), so tiny temperatures approach top-k and huge ones
    approach a uniform draw, neither overflowing. Keys that tie exactly are ordered by their Gumbel
    noise, i.e. uniformly at random."""
    _check(scores, k, temperature)
    g = gumbel(tuple(scores.shape), generator)
    s = scores.detach().double().cpu()
    keys = s + temperature * g if temperature <= 1.0 else s / temperature + g
    by_noise = torch.argsort(g, descending=True, stable=True)
    order = by_noise[torch.argsort(keys[by_noise], descending=True, stable=True)]
    return order[:k].to(scores.device)


@register_sampler
def topk(scores: torch.Tensor, k: int, *, temperature: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """`[k]` indices of the highest scores; ties go to the lower index. Ignores temperature."""
    _check(scores, k, temperature)
    return torch.argsort(scores.detach().cpu(), descending=True, stable=True)[:k].to(scores.device)


from learnability import joint as _joint  # noqa: E402,F401  (registers the joint samplers)
