"""Image-text contrastive losses on embeddings: CLIP (softmax), SigLIP (sigmoid), dot product.

Conventions shared by every function here:
- `img` and `txt` are `[N, D]` embeddings of N matched pairs (row i of each is pair i), already
  L2-normalised by the caller, as open_clip's models do in `encode_image` / `encode_text`. They
  are not normalised or checked here: unnormalised inputs give scaled dot products, not cosines.
- `logit_scale` is the *log* of the temperature multiplier, as in open_clip and SigLIP: logits
  are `exp(logit_scale) * img @ txt.T`. Pass a learnable 0-dim tensor (gradients flow) or a float.
  `logit_bias` (SigLIP only) is added to the logits as is.
- Losses are in nats and computed in at least float32 (bf16 embeddings are promoted).

The per-example forms score examples for selection (ActiveCLIP); `joint_loss_matrix` is the
pairwise loss matrix JEST builds its learnability matrix from (see `learnability.joint`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(img: torch.Tensor, txt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if img.dim() != 2 or txt.dim() != 2:
        raise ValueError(f"image and text embeddings must be 2-D [N, D]; got shapes {tuple(img.shape)} "
                         f"and {tuple(txt.shape)}")
    if img.shape[0] != txt.shape[0]:
        raise ValueError(f"image and text embeddings must hold the same number of pairs N; got "
                         f"{img.shape[0]} images and {txt.shape[0]} texts")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"image and text embeddings must have the same width D; got {img.shape[1]} "
                         f"and {txt.shape[1]} (project both towers to a shared width)")
    if img.shape[0] == 0:
        raise ValueError("need at least one image-text pair; got N = 0")
    dtype = torch.promote_types(torch.promote_types(img.dtype, txt.dtype), torch.float32)
    return img.to(dtype), txt.to(dtype)


def _scalar(value: torch.Tensor | float, name: str, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.dim() != 0:
        raise ValueError(f"{name} must be a scalar (0-dim tensor or float); got shape {tuple(t.shape)}")
    return t


def pairwise_logits(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Logits `[N, N]`: entry `[i, j]` is `exp(logit_scale) * <img_i, txt_j>` (image i vs text j)."""
    img, txt = _check_pair(img, txt)
    return _scalar(logit_scale, "logit_scale", img).exp() * (img @ txt.T)


def clip_loss_per_example(img: torch.Tensor, txt: torch.Tensor,
                          logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Per-example softmax contrastive loss `[N]` within the batch: for pair i, the mean of its
    image-to-text cross-entropy (row i of the logits, target i) and its text-to-image cross-entropy
    (column i, target i). Depends on the whole batch: each row competes with the other N-1 pairs."""
    logits = pairwise_logits(img, txt, logit_scale)
    target = torch.arange(logits.shape[0], device=logits.device)
    i2t = F.cross_entropy(logits, target, reduction="none")
    t2i = F.cross_entropy(logits.T, target, reduction="none")
    return (i2t + t2i) / 2


def clip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric softmax contrastive loss (Radford et al. 2021), a scalar: the mean of the
    image-to-text and text-to-image cross-entropies, each averaged over the N pairs; equal to
    `clip_loss_per_example(...).mean()`."""
    return clip_loss_per_example(img, txt, logit_scale).mean()


def joint_loss_matrix(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float,
                        logit_bias: torch.Tensor | float) -> torch.Tensor:
    """SigLIP's pairwise loss terms `[N, N]`: `l[i, j] = -log sigmoid(z_ij * (exp(logit_scale) *
    <img_i, txt_j> + logit_bias))` with `z_ij = +1` if i == j (a matched pair) and -1 otherwise.

    The sigmoid loss is a sum of these terms, so it decomposes exactly over pairs: the SigLIP loss of
    a sub-batch S is `l[S][:, S].sum() / |S|`, and `l[S][:, S].sum()` is the joint loss JEST scores
    (`learnability.joint.joint_score`). The softmax (CLIP) loss has no such decomposition."""
    logits = pairwise_logits(img, txt, logit_scale)
    logits = logits + _scalar(logit_bias, "logit_bias", logits)
    n = logits.shape[0]
    z = 2 * torch.eye(n, dtype=logits.dtype, device=logits.device) - 1
    return F.softplus(-z * logits)  # -log sigmoid(x) == softplus(-x), stable for large |x|


def siglip_loss_per_example(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float,
                            logit_bias: torch.Tensor | float) -> torch.Tensor:
    """Per-example sigmoid loss `[N]` within the batch: half of pair i's row of the loss matrix (its
    image against every text) plus half of its column (its text against every image). The values
    sum to the whole matrix, so `siglip_loss == siglip_loss_per_example(...).sum() / N`."""
    m = joint_loss_matrix(img, txt, logit_scale, logit_bias)
    return (m.sum(dim=1) + m.sum(dim=0)) / 2


def siglip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float,
                logit_bias: torch.Tensor | float) -> torch.Tensor:
    """SigLIP's sigmoid loss (Zhai et al. 2023), a scalar: `-1/N sum_i sum_j log sigmoid(z_ij *
    (t <img_i, txt_j> + b))`, i.e. the sum of `joint_loss_matrix` divided by N (not N^2), as in
    the paper. SigLIP initialises `logit_scale = log 10` and `logit_bias = -10`."""
    m = joint_loss_matrix(img, txt, logit_scale, logit_bias)
    return m.sum() / m.shape[0]


def dot_product_loss(img: torch.Tensor, txt: torch.Tensor,
                     logit_scale: torch.Tensor | float | None = None) -> torch.Tensor:
    """Per-example loss `[N]`: minus each pair's own image-text dot product, times
    `exp(logit_scale)` when given. Batch-independent (pair i's loss ignores the other pairs), so a
    frozen reference's values can be cached per example id."""
    img, txt = _check_pair(img, txt)
    loss = -(img * txt).sum(dim=1)
    if logit_scale is not None:
        loss = _scalar(logit_scale, "logit_scale", img).exp() * loss
    return loss


def embedding_rows(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor | float,
                   logit_bias: torch.Tensor | float) -> torch.Tensor:
    """Pack a frozen model's outputs per example, `[N, 2D + 2]`: image embedding, text embedding,
    `logit_scale`, `logit_bias` (repeated on every row). Each row depends on its own pair only, so
    rows can be cached per example id and `joint_loss_matrix_from_rows` rebuilds the `[N, N]` loss
    matrix of any super-batch from them with one `[N, D] x [D, N]` product (2 N^2 D FLOPs)."""
    img, txt = _check_pair(img, txt)
    n = img.shape[0]
    scale = _scalar(logit_scale, "logit_scale", img).detach().expand(n, 1)
    bias = _scalar(logit_bias, "logit_bias", img).detach().expand(n, 1)
    return torch.cat([img, txt, scale, bias], dim=1)


def unpack_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image `[N, D]` and text `[N, D]` embeddings, `logit_scale` and `logit_bias` (read from the
    first row) of rows packed by `embedding_rows` (`[N, 2D + 2]`)."""
    if rows.dim() != 2 or rows.shape[0] == 0 or rows.shape[1] < 4 or rows.shape[1] % 2:
        raise ValueError(f"rows must be [N, 2D + 2] as packed by embedding_rows; got shape {tuple(rows.shape)}")
    d = (rows.shape[1] - 2) // 2
    return rows[:, :d], rows[:, d:2 * d], rows[0, 2 * d], rows[0, 2 * d + 1]


def joint_loss_matrix_from_rows(rows: torch.Tensor) -> torch.Tensor:
    """`joint_loss_matrix` `[N, N]` of the pairs packed by `embedding_rows` (`rows` `[N, 2D + 2]`)."""
    img, txt, scale, bias = unpack_rows(rows)
    return joint_loss_matrix(img, txt, scale, bias)


def clip_loss_per_example_from_rows(rows: torch.Tensor) -> torch.Tensor:
    """`clip_loss_per_example` `[N]` within the batch of pairs packed by `embedding_rows`."""
    img, txt, scale, _ = unpack_rows(rows)
    return clip_loss_per_example(img, txt, scale)
