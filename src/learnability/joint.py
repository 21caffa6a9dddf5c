"""Joint example selection (JEST, Evans et al. 2024, "Data curation via joint example selection
further accelerates multimodal learning"): choose a sub-batch by a score *matrix* `[B, B]`.

The score matrix `M` scores pairs of candidates; a sub-batch S scores `joint_score(M, S) =
sum_{i, j in S} M[i, j]`. For JEST's learnability, `M = L_learner - L_reference`, where each `L`
is the pairwise sigmoid-loss matrix of the super-batch under that model
(`learnability.contrastive.joint_loss_matrix`); then `joint_score` is the learner's SigLIP loss on S
minus the reference's, times |S|. Easy-reference is `-L_reference`, hard-learner `L_learner`.

`jest_sample` (registered as "jest") is JEST's Algorithm 1: k = n_chunks * (k / n_chunks) examples drawn in chunks, each
chunk by softmax sampling without replacement (the Gumbel top-k of `selection.softmax`) over the
not-yet-chosen candidates, with logits that condition on the chunks already chosen. Add another
joint sampler with a function and `@register_joint_sampler(name)` (the samplers' one registry, in
`selection`).
"""

from __future__ import annotations

import numbers
from typing import Callable

import torch

from learnability.selection import JointSampler, get_sampler, list_samplers, register_sampler, softmax


def register_joint_sampler(name: str) -> Callable[[Callable], Callable]:
    """`@register_joint_sampler(name)`: `selection.register_sampler(name=name, joint=True)`."""
    return register_sampler(name=name, joint=True)


def list_joint_samplers() -> list[str]:
    return list_samplers("joint")


def get_joint_sampler(name: str) -> JointSampler:
    if name not in list_joint_samplers():
        raise ValueError(f"unknown joint sampler {name!r}; choose one of {', '.join(list_joint_samplers())}")
    return get_sampler(name)


def _check_matrix(score_matrix: torch.Tensor) -> None:
    if score_matrix.dim() != 2 or score_matrix.shape[0] != score_matrix.shape[1]:
        raise ValueError(f"score matrix must be square [B, B] (one row and column per candidate); got shape "
                         f"{tuple(score_matrix.shape)}")
    if not torch.isfinite(score_matrix).all():
        bad = int((~torch.isfinite(score_matrix)).sum())
        raise ValueError(f"score matrix has {bad} NaN or inf entr{'y' if bad == 1 else 'ies'}; cannot rank them")


def _check_index(index: torch.Tensor, b: int) -> None:
    if index.dim() != 1 or index.is_floating_point() or index.dtype == torch.bool:
        raise ValueError(f"index must be a 1-D integer tensor of candidate positions; got shape "
                         f"{tuple(index.shape)} and dtype {index.dtype}")
    if index.numel() and not (0 <= int(index.min()) and int(index.max()) < b):
        raise ValueError(f"index entries must lie in [0, {b}); got min {int(index.min())}, max {int(index.max())}")
    if index.unique().numel() != index.numel():
        raise ValueError("index has repeated entries; a sub-batch holds each candidate at most once")


def joint_score(score_matrix: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Joint score (scalar) of the sub-batch `index` `[k]`: `sum_{i, j in index} M[i, j]`, the
    diagonal included; 0 for an empty index."""
    _check_matrix(score_matrix)
    _check_index(index, score_matrix.shape[0])
    index = index.to(score_matrix.device)
    return score_matrix[index][:, index].sum()


def conditional_logits(score_matrix: torch.Tensor, chosen_mask: torch.Tensor) -> torch.Tensor:
    """Logits `[B]` for adding one candidate to the chosen set S (`chosen_mask` `[B]`, bool):

        logit[c] = M[c, c] + sum_{s in S} (M[c, s] + M[s, c])
                 = joint_score(S + {c}) - joint_score(S)          for c not in S,

    the increase in the sub-batch's joint score when c joins it; `-inf` for c already in S (it
    cannot be drawn again). With S empty these are the diagonal scores `M[c, c]`."""
    _check_matrix(score_matrix)
    b = score_matrix.shape[0]
    if chosen_mask.shape != (b,) or chosen_mask.dtype != torch.bool:
        raise ValueError(f"chosen_mask must be a bool tensor of shape [{b}]; got shape "
                         f"{tuple(chosen_mask.shape)} and dtype {chosen_mask.dtype}")
    return _gain(score_matrix, chosen_mask.to(score_matrix.device))


def _gain(m: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    w = chosen.to(m.dtype)
    return (m.diagonal() + m @ w + m.T @ w).masked_fill(chosen, float("-inf"))


@register_sampler(name="jest", joint=True)
def jest_sample(score_matrix: torch.Tensor, k: int, n_chunks: int, *, temperature: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """`[k]` distinct candidate indices drawn in `n_chunks` chunks of `k / n_chunks` (JEST's
    Algorithm 1), in draw order.

    Chunk 1 is drawn by softmax sampling without replacement over the diagonal `M[c, c] /
    temperature`. Each later chunk is drawn the same way among the candidates not yet chosen, with
    logits `conditional_logits(M, chosen) / temperature`: candidate c's logit is `M[c, c] +
    sum_{s chosen} (M[c, s] + M[s, c])`, the gain in the joint score when c joins the chosen set.
    Within a chunk the logits are fixed (the chunk is drawn independently of itself), so
    `n_chunks = 1` is `selection.softmax` on the diagonal, and `n_chunks = k` at a tiny temperature
    is greedy maximisation of `joint_score`. JEST uses 16 chunks at filtering ratios 50-90%.
    """
    _check_matrix(score_matrix)
    b = score_matrix.shape[0]
    for arg, value in (("k", k), ("n_chunks", n_chunks)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{arg} must be an integer; got {value!r}")
    if not 1 <= k <= b:
        raise ValueError(f"cannot select {k} of {b} candidates; need 1 <= k <= B")
    if n_chunks < 1 or k % n_chunks:
        raise ValueError(f"k = {k} must split into n_chunks = {n_chunks} equal chunks; choose n_chunks "
                         f"among the divisors of k: {[d for d in range(1, k + 1) if k % d == 0]}")
    m = score_matrix.detach().double()
    chosen = torch.zeros(b, dtype=torch.bool, device=m.device)
    order: list[torch.Tensor] = []
    for _ in range(n_chunks):
        candidates = (~chosen).nonzero().squeeze(1)
        logits = _gain(m, chosen)[candidates]  # checked above
        if not torch.isfinite(logits).all():
            raise ValueError("the score matrix's sums overflow float64 (entries near 1e308); rescale it")
        pick = candidates[softmax(logits, k // n_chunks, temperature=temperature, generator=generator)]
        chosen[pick] = True
        order.append(pick)
    return torch.cat(order).to(score_matrix.device)
