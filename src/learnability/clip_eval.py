"""Image-text evaluation: zero-shot classification and retrieval Recall@k. Pure functions return
values; `evaluate_clip` embeds a split with a dual encoder and returns them all."""

from __future__ import annotations

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
