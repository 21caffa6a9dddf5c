"""Image-text evaluation: zero-shot classification and retrieval Recall@k. Pure functions return
values; `evaluate_clip` embeds a split with a dual encoder and returns them all."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor, batch_size: int, device: torch.device,
          autocast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised image and text embeddings `[N, D]` (CPU, float32), in eval mode (mode restored)."""
    was = model.training
    model.eval()
    img, txt = [], []
    try:
        for i in range(0, images.shape[0], batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(images[i:i + batch_size].to(device), tokens[i:i + batch_size].to(device))
            img.append(out["image"].float().cpu())
            txt.append(out["text"].float().cpu())
    finally:
        model.train(was)
    return torch.cat(img), torch.cat(txt)


def zero_shot_accuracy(image_emb: torch.Tensor, class_text_emb: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of classifying images `[N, D]` by their most similar class prompt `[K, D]`."""
    return float(((image_emb @ class_text_emb.T).argmax(1) == labels).float().mean())


def retrieval_recall(image_emb: torch.Tensor, text_emb: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Recall@k of image-to-text and text-to-image retrieval over N matched pairs `[N, D]` (pair i
    matches i): the fraction of queries whose match ranks among the k most similar."""
    sim = image_emb @ text_emb.T
    n = sim.shape[0]
    target = torch.arange(n)
    # rank of the true match = number of candidates scoring strictly higher
    i2t = (sim > sim[target, target][:, None]).sum(1)
    t2i = (sim.T > sim[target, target][:, None]).sum(1)
    out = {}
    for k in ks:
        out[f"r{k}_i2t"] = float((i2t < k).float().mean())
        out[f"r{k}_t2i"] = float((t2i < k).float().mean())
    return out


@torch.no_grad()
def embed_text(model: nn.Module, tokens: torch.Tensor, batch_size: int, device: torch.device,
               autocast: bool = False) -> torch.Tensor:
    """L2-normalised text embeddings `[N, D]` (CPU, float32) of a `DualEncoder`'s text tower."""
    was = model.training
    model.eval()
    out = []
    try:
        for i in range(0, tokens.shape[0], batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out.append(nn.functional.normalize(model.text_tower(tokens[i:i + batch_size].to(device)).float(), dim=-1).cpu())
    finally:
        model.train(was)
    return torch.cat(out)


def attribute_accuracy(image_emb: torch.Tensor, attributes: torch.Tensor, style: torch.Tensor,
                       encode: Callable[[list[str]], torch.Tensor],
                       class_names: tuple[str, ...] | list[str] = ()) -> dict[str, float]:
    """Zero-shot accuracy on each caption attribute, in caption context: for every image `[N, D]`
    and attribute field (class, colour, size, position of its first object), its true caption is
    re-rendered (same template and synonyms, `pairs.describe`) with each value of that field, and the
    image is classified by the most similar variant. `encode(captions) -> [M, D]` embeds texts;
    `class_names` picks the built-in grammar (default Fashion-MNIST's garments).
    Returns `{"attr_class": ..., "attr_colour": ..., "attr_size": ..., "attr_position": ...}`."""
    from learnability.pairs.captions import CLASS_SYNONYMS, FIELD_SIZES, class_synonyms, describe
    from learnability.pairs.pairset import ATTRIBUTE_FIELDS

    n = image_emb.shape[0]
    synonyms = class_synonyms(class_names) if class_names else CLASS_SYNONYMS
    out = {}
    for field, (name, k) in enumerate(zip(ATTRIBUTE_FIELDS, FIELD_SIZES)):
        variants = attributes[:n].unsqueeze(0).repeat(k, 1, 1, 1)  # [K, N, O, 4]
        variants[:, :, 0, field] = torch.arange(k)[:, None]
        texts = describe(variants.reshape(k * n, *attributes.shape[1:]), style[:n].repeat(k), synonyms)
        sim = (encode(texts).reshape(k, n, -1) * image_emb[None]).sum(-1)  # [K, N]
        out[f"attr_{name}"] = float((sim.argmax(0) == attributes[:n, 0, field]).float().mean())
    return out
