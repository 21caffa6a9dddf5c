"""Named model builders: learners and proxies for image classification.

Every builder takes the input shape `(C, H, W)` and the number of classes and returns a plain
`nn.Module` mapping `[N, C, H, W]` float images to `[N, num_classes]` logits. Sizes live here and
nowhere else; `list_models()` / `build_model(name, ...)` is the registry.

Attention in the ViT is written with explicit matmuls so that `FlopCounterMode` counts it (the
counter reports 0 FLOPs for CPU `scaled_dot_product_attention`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

Shape = tuple[int, int, int]
_MODELS: dict[str, Callable[[Shape, int], nn.Module]] = {}


def register_model(fn: Callable[[Shape, int], nn.Module]) -> Callable[[Shape, int], nn.Module]:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def build_model(name: str, in_shape: Shape, num_classes: int) -> nn.Module:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return _MODELS[name](tuple(in_shape), num_classes)


class CNN(nn.Module):
    """Three 3x3 conv blocks (conv-BN-ReLU), max-pool after the first two, global average pool,
    linear head. Widths `(w, 2w, 4w)`."""

    def __init__(self, in_shape: Shape, num_classes: int, width: int):
        super().__init__()
        c = in_shape[0]
        widths = (width, 2 * width, 4 * width)
        layers: list[nn.Module] = []
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class MLP(nn.Module):
    """Flatten, one hidden ReLU layer per entry of `hidden`, linear head."""

    def __init__(self, in_shape: Shape, num_classes: int, hidden: tuple[int, ...]):
        super().__init__()
        d = in_shape[0] * in_shape[1] * in_shape[2]
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Multi-head self-attention with explicit matmuls (counted by FlopCounterMode)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: `[N, T, D]`; mask: `[N, T]` bool, True for tokens that may be attended to."""
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5
        if mask is not None:
            logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        att = torch.softmax(logits, dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Patch embedding, learned position embedding, pre-norm blocks, mean-pooled head."""

    def __init__(self, in_shape: Shape, num_classes: int, patch: int, dim: int, depth: int, heads: int):
        super().__init__()
        c, h, w = in_shape
        if h % patch or w % patch:
            raise ValueError(f"image size {h}x{w} is not divisible by the ViT patch size {patch}")
        self.embed = nn.Conv2d(c, dim, patch, stride=patch)
        self.pos = nn.Parameter(torch.zeros(1, (h // patch) * (w // patch), dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, 2) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(x)).mean(dim=1))


@register_model
def cnn_tiny(in_shape: Shape, num_classes: int) -> nn.Module:
    return CNN(in_shape, num_classes, width=8)


@register_model
def cnn_small(in_shape: Shape, num_classes: int) -> nn.Module:
    return CNN(in_shape, num_classes, width=16)


@register_model
def cnn_medium(in_shape: Shape, num_classes: int) -> nn.Module:
    return CNN(in_shape, num_classes, width=32)


@register_model
def cnn_large(in_shape: Shape, num_classes: int) -> nn.Module:
    return CNN(in_shape, num_classes, width=64)


@register_model
def mlp_tiny(in_shape: Shape, num_classes: int) -> nn.Module:
    return MLP(in_shape, num_classes, hidden=(32,))


@register_model
def mlp_small(in_shape: Shape, num_classes: int) -> nn.Module:
    return MLP(in_shape, num_classes, hidden=(64,))


@register_model
def mlp_medium(in_shape: Shape, num_classes: int) -> nn.Module:
    return MLP(in_shape, num_classes, hidden=(256,))


@register_model
def vit_tiny(in_shape: Shape, num_classes: int) -> nn.Module:
    return ViT(in_shape, num_classes, patch=4, dim=64, depth=2, heads=4)


@register_model
def vit_small(in_shape: Shape, num_classes: int) -> nn.Module:
    return ViT(in_shape, num_classes, patch=4, dim=128, depth=4, heads=4)
