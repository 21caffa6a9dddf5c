"""Dual encoders for image-text contrastive training (CLIP / SigLIP), as named builders.

A `DualEncoder` maps images `[N, C, H, W]` and token ids `[N, L]` (0 = padding) to a dict:
`image` `[N, D]` and `text` `[N, D]` (both L2-normalised), and the learnable `logit_scale` and
`logit_bias` (scalars; the scale is a log, used as `exp(logit_scale)`). Loss functions take that
dict, so the same per-example loss serves any tower. `list_dual_models()` / `build_dual(...)` is
the registry; sizes live here.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from learnability.models import CNN, MLP, Block

PAD = 0
_DUALS: dict[str, Callable[..., nn.Module]] = {}


def register_dual(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _DUALS[fn.__name__] = fn
    return fn


def list_dual_models() -> list[str]:
    return sorted(_DUALS)


def build_dual(name: str, image_shape: tuple[int, int, int], vocab_size: int, max_len: int, *,
               init_scale: float | None = None, init_bias: float | None = None, learn_scale: bool = True) -> nn.Module:
    """The named dual encoder; `init_scale` (the temperature itself, > 0; its log is learnt unless
    `learn_scale` is False) and `init_bias` override the initial `logit_scale` / `logit_bias`
    (default: 10 and -10, SigLIP's)."""
    if name not in _DUALS:
        raise ValueError(f"unknown dual encoder {name!r}; choose one of {', '.join(list_dual_models())}")
    if init_scale is not None and not 0 < init_scale < math.inf:
        raise ValueError(f"init_scale is the initial logit scale (temperature), a finite number > 0; got {init_scale}")
    model = _DUALS[name](tuple(image_shape), vocab_size, max_len)
    with torch.no_grad():
        if init_scale is not None:
            model.logit_scale.fill_(math.log(init_scale))
        if init_bias is not None:
            model.logit_bias.fill_(init_bias)
    model.logit_scale.requires_grad_(learn_scale)  # frozen: no gradient, so no optimizer moves it
    return model


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class TextTransformer(nn.Module):
    """Token + position embeddings, pre-norm blocks with a padding mask, masked mean pool, linear."""

    def __init__(self, vocab_size: int, max_len: int, width: int, depth: int, heads: int, out_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width, padding_idx=PAD)
        self.pos = nn.Parameter(torch.zeros(1, max_len, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(width, heads, 2) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != PAD
        mask[:, 0] = True  # an all-padding caption still attends to something
        x = self.embed(tokens) + self.pos[:, :tokens.shape[1]]
        for block in self.blocks:
            x = block(x, mask)
        return self.proj(_masked_mean(self.norm(x), mask))


class BagOfWords(nn.Module):
    """Mean of token embeddings over non-padding tokens, then linear: the cheap proxy's text tower."""

    def __init__(self, vocab_size: int, width: int, out_dim: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width, padding_idx=PAD)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(_masked_mean(self.embed(tokens), tokens != PAD))


class DualEncoder(nn.Module):
    def __init__(self, image_tower: nn.Module, text_tower: nn.Module, image_pool: int = 1,
                 init_scale: float = math.log(10.0), init_bias: float = -10.0):
        super().__init__()
        self.image_tower, self.text_tower = image_tower, text_tower
        self.pool = nn.AvgPool2d(image_pool) if image_pool > 1 else nn.Identity()
        self.logit_scale = nn.Parameter(torch.tensor(init_scale))
        self.logit_bias = nn.Parameter(torch.tensor(init_bias))

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        img = nn.functional.normalize(self.image_tower(self.pool(images)).float(), dim=-1)
        txt = nn.functional.normalize(self.text_tower(tokens).float(), dim=-1)
        return {"image": img, "text": txt, "logit_scale": self.logit_scale, "logit_bias": self.logit_bias}


EMBED = 64


@register_dual
def dual_cnn_small(image_shape: tuple[int, int, int], vocab_size: int, max_len: int) -> nn.Module:
    """Learner: CNN (widths 16/32/64) image tower, 2-block transformer text tower (width 64)."""
    return DualEncoder(CNN(image_shape, EMBED, width=16), TextTransformer(vocab_size, max_len, 64, 2, 4, EMBED))


@register_dual
def dual_cnn_medium(image_shape: tuple[int, int, int], vocab_size: int, max_len: int) -> nn.Module:
    return DualEncoder(CNN(image_shape, EMBED, width=32), TextTransformer(vocab_size, max_len, 128, 3, 4, EMBED))


@register_dual
def dual_vit_tiny(image_shape: tuple[int, int, int], vocab_size: int, max_len: int) -> nn.Module:
    from learnability.models import ViT

    return DualEncoder(ViT(image_shape, EMBED, patch=4, dim=64, depth=2, heads=4),
                       TextTransformer(vocab_size, max_len, 64, 2, 4, EMBED))


@register_dual
def dual_mlp_tiny(image_shape: tuple[int, int, int], vocab_size: int, max_len: int) -> nn.Module:
    """Proxy: images average-pooled 2x, one-hidden-layer MLP; bag-of-words text tower."""
    c, h, w = image_shape
    return DualEncoder(MLP((c, h // 2, w // 2), EMBED, hidden=(64,)), BagOfWords(vocab_size, 64, EMBED), image_pool=2)


@register_dual
def dual_cnn_tiny(image_shape: tuple[int, int, int], vocab_size: int, max_len: int) -> nn.Module:
    """Proxy: images average-pooled 2x, CNN (widths 8/16/32) image tower; bag-of-words text tower.
    About a tenth of `dual_cnn_small`'s forward FLOPs on 40x40 pairs, and it sees garment shapes."""
    c, h, w = image_shape
    return DualEncoder(CNN((c, h // 2, w // 2), EMBED, width=8), BagOfWords(vocab_size, 64, EMBED), image_pool=2)


@register_dual
def dual_cnn_tiny_fullres(image_shape: tuple[int, int, int], vocab_size: int, max_len: int) -> nn.Module:
    """`dual_cnn_tiny` without its 2x pooling: about four times its image-tower FLOPs, for objects a
    few pixels across (scikit-learn's 8x8 digits on a 24-pixel canvas)."""
    return DualEncoder(CNN(image_shape, EMBED, width=8), BagOfWords(vocab_size, 64, EMBED))
