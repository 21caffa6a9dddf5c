"""Samplers: pure functions choosing `k` distinct indices of a score vector `[B]`.

`softmax`: sampling proportional to softmax(scores / temperature) without replacement, by the
Gumbel top-k trick (Kool et al. 2019): the top k of `scores + temperature * Gumbel` is
distributed as k sequential softmax draws without replacement. `topk`: the k highest scores, ties
broken by the lower index. Add one with a function and `@register_sampler`.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch


class Sampler(Protocol):
    def __call__(self, scores: torch.Tensor, k: int, *, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor: ...


_SAMPLERS: dict[str, Sampler] = {}


def register_sampler(fn: Callable) -> Callable:
    _SAMPLERS[fn.__name__] = fn
    return fn


def list_samplers() -> list[str]:
    return sorted(_SAMPLERS)


def get_sampler(name: str) -> Sampler:
    if name not in _SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(list_samplers())}")
    return _SAMPLERS[name]


def _check(scores: torch.Tensor, k: int, temperature: float) -> None:
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D [B]; got shape {tuple(scores.shape)}")
    if not 1 <= k <= scores.numel():
        raise ValueError(f"cannot select {k} of {scores.numel()} candidates; need 1 <= k <= B")
    if not temperature > 0 or temperature != temperature or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf; cannot rank them")


def gumbel(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise, float64, finite."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64).clamp_(1e-300, 1.0 - 1e-16)
    return -torch.log(-torch.log(u))


@register_sampler
def softmax(scores: torch.Tensor, k: int, *, temperature: float = 1.0,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """`[k]` distinct indices drawn with probability proportional to softmax(scores / temperature),
    without replacement. Written as `scores + temperature * G` (same order as `scores / t + G`), so
    tiny temperatures approach top-k instead of overflowing."""
    _check(scores, k, temperature)
    keys = scores.detach().double().cpu() + temperature * gumbel(tuple(scores.shape), generator)
    return torch.argsort(keys, descending=True, stable=True)[:k].to(scores.device)


@register_sampler
def topk(scores: torch.Tensor, k: int, *, temperature: float = 1.0,
         generator: torch.Generator | None = None) -> torch.Tensor:
    """`[k]` indices of the highest scores; ties go to the lower index. Ignores temperature."""
    _check(scores, k, temperature)
    return torch.argsort(scores.detach().cpu(), descending=True, stable=True)[:k].to(scores.device)
