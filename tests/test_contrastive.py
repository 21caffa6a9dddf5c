"""Contrastive losses on embeddings: hand-computed cases, explicit-loop references, identities
between the batch and per-example forms, symmetry, gradients, and input errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from learnability.contrastive import (
    clip_loss,
    clip_loss_per_example,
    dot_product_loss,
    joint_loss_matrix,
    pairwise_logits,
    siglip_loss,
    siglip_loss_per_example,
)

# N = 2, D = 2, exp(logit_scale) = 2: logits = 2 * IMG @ TXT.T = [[2.0, 1.2], [0.0, 1.6]].
IMG = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
TXT = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
LOG2 = math.log(2.0)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _pairs(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    txt = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return img, txt


def test_pairwise_logits_by_hand() -> None:
    torch.testing.assert_close(pairwise_logits(IMG, TXT, LOG2), torch.tensor([[2.0, 1.2], [0.0, 1.6]],
                                                                             dtype=torch.float64))


def test_clip_loss_by_hand() -> None:
    # pair 0: row [2, 1.2] target 0, column [2, 0] target 0; pair 1: row [0, 1.6], column [1.2, 1.6]
    ex0 = (softplus(1.2 - 2.0) + softplus(0.0 - 2.0)) / 2
    ex1 = (softplus(0.0 - 1.6) + softplus(1.2 - 1.6)) / 2
    per = clip_loss_per_example(IMG, TXT, torch.tensor(LOG2, dtype=torch.float64))
    torch.testing.assert_close(per, torch.tensor([ex0, ex1], dtype=torch.float64))
    assert math.isclose(float(clip_loss(IMG, TXT, LOG2)), (ex0 + ex1) / 2, rel_tol=1e-12)


def test_siglip_loss_by_hand() -> None:
    # bias -1: matched pairs (diagonal) want logit + b > 0, others < 0; l = softplus(-z (logit + b)).
    l00, l01 = softplus(-(2.0 - 1)), softplus(1.2 - 1)
    l10, l11 = softplus(0.0 - 1), softplus(-(1.6 - 1))
    m = joint_loss_matrix(IMG, TXT, LOG2, -1.0)
    torch.testing.assert_close(m, torch.tensor([[l00, l01], [l10, l11]], dtype=torch.float64))
    assert math.isclose(float(siglip_loss(IMG, TXT, LOG2, -1.0)), (l00 + l01 + l10 + l11) / 2, rel_tol=1e-12)
    per = siglip_loss_per_example(IMG, TXT, LOG2, -1.0)
    torch.testing.assert_close(per, torch.tensor([l00 + (l01 + l10) / 2, l11 + (l01 + l10) / 2],
                                                 dtype=torch.float64))


def test_losses_match_explicit_loops() -> None:
    n, t, b = 5, 3.0, -2.0
    img, txt = _pairs(n, 4, seed=0)
    s = [[t * float(img[i] @ txt[j]) for j in range(n)] for i in range(n)]
    i2t = [math.log(sum(math.exp(s[i][j]) for j in range(n))) - s[i][i] for i in range(n)]
    t2i = [math.log(sum(math.exp(s[j][i]) for j in range(n))) - s[i][i] for i in range(n)]
    clip = sum(i2t + t2i) / (2 * n)
    sig = -sum(math.log(1 / (1 + math.exp(-(1 if i == j else -1) * (s[i][j] + b))))
               for i in range(n) for j in range(n)) / n
    assert math.isclose(float(clip_loss(img, txt, math.log(t))), clip, rel_tol=1e-10)
    assert math.isclose(float(siglip_loss(img, txt, math.log(t), b)), sig, rel_tol=1e-10)
    # open_clip's formulation: mean of the two batch-mean cross-entropies
    logits = t * img @ txt.T
    ref = (F.cross_entropy(logits, torch.arange(n)) + F.cross_entropy(logits.T, torch.arange(n))) / 2
    torch.testing.assert_close(clip_loss(img, txt, math.log(t)), ref)


def test_batch_losses_equal_their_per_example_forms() -> None:
    img, txt = _pairs(7, 6, seed=1)
    scale, bias = torch.tensor(2.3, dtype=torch.float64), torch.tensor(-5.0, dtype=torch.float64)
    torch.testing.assert_close(clip_loss(img, txt, scale), clip_loss_per_example(img, txt, scale).mean())
    torch.testing.assert_close(siglip_loss(img, txt, scale, bias),
                               siglip_loss_per_example(img, txt, scale, bias).sum() / 7)
    torch.testing.assert_close(siglip_loss(img, txt, scale, bias), joint_loss_matrix(img, txt, scale, bias).sum() / 7)


def test_joint_loss_of_a_sub_batch_is_its_siglip_loss() -> None:
    img, txt = _pairs(9, 5, seed=2)
    m = joint_loss_matrix(img, txt, 2.0, -4.0)
    sub = torch.tensor([7, 1, 4, 2])
    torch.testing.assert_close(m[sub][:, sub].sum() / 4, siglip_loss(img[sub], txt[sub], 2.0, -4.0))


def test_losses_are_symmetric_in_image_and_text_and_permutation_equivariant() -> None:
    img, txt = _pairs(6, 4, seed=3)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    for per_example in (lambda a, b: clip_loss_per_example(a, b, 1.5),
                        lambda a, b: siglip_loss_per_example(a, b, 1.5, -2.0),
                        lambda a, b: dot_product_loss(a, b, 1.5)):
        base = per_example(img, txt)
        torch.testing.assert_close(per_example(txt, img), base)
        torch.testing.assert_close(per_example(img[perm], txt[perm]), base[perm])
    torch.testing.assert_close(joint_loss_matrix(txt, img, 1.5, -2.0), joint_loss_matrix(img, txt, 1.5, -2.0).T)


def test_dot_product_loss_is_scaled_negative_cosine_and_batch_independent() -> None:
    img, txt = _pairs(5, 3, seed=4)
    cos = (img * txt).sum(1)
    torch.testing.assert_close(dot_product_loss(img, txt), -cos)
    torch.testing.assert_close(dot_product_loss(img, txt, math.log(10.0)), -10.0 * cos)
    torch.testing.assert_close(dot_product_loss(img[:2], txt[:2], 1.0), dot_product_loss(img, txt, 1.0)[:2])
    assert math.isclose(float(dot_product_loss(IMG, TXT)[1]), -0.8)


def test_matched_pairs_have_lower_loss_than_mismatched() -> None:
    img, _ = _pairs(8, 16, seed=5)
    shuffled = img[torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])]
    assert clip_loss(img, img, 2.0) < clip_loss(img, shuffled, 2.0)
    assert siglip_loss(img, img, 2.0, -3.0) < siglip_loss(img, shuffled, 2.0, -3.0)
    assert (dot_product_loss(img, img) < dot_product_loss(img, shuffled)).all()


def test_gradients_are_finite_and_reach_scale_and_bias() -> None:
    img, txt = _pairs(6, 4, seed=6)
    img = img.float().requires_grad_()
    txt = txt.float().requires_grad_()
    scale = torch.tensor(math.log(10.0), requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)
    total = clip_loss(img, txt, scale) + siglip_loss(img, txt, scale, bias) + dot_product_loss(img, txt, scale).sum()
    total.backward()
    for t in (img, txt, scale, bias):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    assert float(scale.grad) != 0.0 and float(bias.grad) != 0.0
    # extreme logits stay finite (softplus form, no log(sigmoid) underflow)
    assert torch.isfinite(siglip_loss(img.detach(), txt.detach(), 20.0, 100.0))


def test_low_precision_inputs_are_promoted() -> None:
    img, txt = _pairs(4, 8, seed=7)
    out = clip_loss_per_example(img.bfloat16(), txt.bfloat16(), 2.0)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, clip_loss_per_example(img.float(), txt.float(), 2.0), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("fn", [
    lambda a, b: pairwise_logits(a, b, 1.0),
    lambda a, b: clip_loss(a, b, 1.0),
    lambda a, b: clip_loss_per_example(a, b, 1.0),
    lambda a, b: siglip_loss(a, b, 1.0, 0.0),
    lambda a, b: siglip_loss_per_example(a, b, 1.0, 0.0),
    lambda a, b: joint_loss_matrix(a, b, 1.0, 0.0),
    lambda a, b: dot_product_loss(a, b),
])
def test_shape_errors(fn) -> None:
    with pytest.raises(ValueError, match="2-D"):
        fn(torch.rand(4), torch.rand(4))
    with pytest.raises(ValueError, match="2-D"):
        fn(torch.rand(2, 3, 4), torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="same number of pairs"):
        fn(torch.rand(4, 3), torch.rand(5, 3))
    with pytest.raises(ValueError, match="same width"):
        fn(torch.rand(4, 3), torch.rand(4, 2))
    with pytest.raises(ValueError, match="at least one"):
        fn(torch.rand(0, 3), torch.rand(0, 3))


def test_scale_and_bias_must_be_scalars() -> None:
    img, txt = _pairs(3, 2, seed=8)
    with pytest.raises(ValueError, match="logit_scale must be a scalar"):
        clip_loss(img, txt, torch.ones(3))
    with pytest.raises(ValueError, match="logit_scale must be a scalar"):
        dot_product_loss(img, txt, torch.ones(1))
    with pytest.raises(ValueError, match="logit_bias must be a scalar"):
        siglip_loss(img, txt, 1.0, torch.zeros(2))


def test_embedding_rows_rebuild_the_joint_loss_matrix() -> None:
    from learnability.contrastive import embedding_rows, joint_loss_matrix_from_rows

    g = torch.Generator().manual_seed(3)
    img = torch.nn.functional.normalize(torch.randn(6, 5, generator=g), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(6, 5, generator=g), dim=1)
    rows = embedding_rows(img, txt, torch.tensor(1.5), -2.0)
    assert rows.shape == (6, 12)
    torch.testing.assert_close(joint_loss_matrix_from_rows(rows), joint_loss_matrix(img, txt, 1.5, -2.0))
    # any sub-batch of cached rows gives that sub-batch's matrix
    idx = torch.tensor([4, 0, 2])
    torch.testing.assert_close(joint_loss_matrix_from_rows(rows[idx]), joint_loss_matrix(img[idx], txt[idx], 1.5, -2.0))
    with pytest.raises(ValueError, match="2D \\+ 2"):
        joint_loss_matrix_from_rows(rows[:, :7])
