"""The functional layer: pure tensor functions, importable as `learnability.functional`.

Per-example losses, score functions, samplers and FLOP formulas, with no state: every random
choice takes an explicit `torch.Generator`. The `Selector` is built from these.
"""

from learnability.contrastive import (clip_loss, clip_loss_per_example, dot_product_loss, joint_loss_matrix,
                                      pairwise_logits, siglip_loss, siglip_loss_per_example)
from learnability.flops import (ModelCost, cnn_cost, conv_flops, linear_flops, measure_cost, measure_loss_cost,
                                mlp_cost, step_flops, vit_cost)
from learnability.joint import conditional_logits, jest_sample, joint_score
from learnability.losses import check_per_example, classification_loss, cross_entropy, score_losses
from learnability.scores import (compute_scores, easy_reference, get_score, hard_learner, learnability,
                                 list_scores, rho, uniform)
from learnability.selection import get_sampler, gumbel, list_samplers, softmax, topk

__all__ = [
    # per-example losses
    "cross_entropy", "classification_loss", "check_per_example", "score_losses",
    "clip_loss", "clip_loss_per_example", "siglip_loss", "siglip_loss_per_example", "dot_product_loss",
    "pairwise_logits", "joint_loss_matrix",
    # scores
    "compute_scores", "learnability", "hard_learner", "easy_reference", "uniform", "rho", "get_score", "list_scores",
    # samplers
    "softmax", "topk", "gumbel", "get_sampler", "list_samplers", "jest_sample", "conditional_logits", "joint_score",
    # FLOPs
    "ModelCost", "measure_cost", "measure_loss_cost", "cnn_cost", "mlp_cost", "vit_cost", "conv_flops",
    "linear_flops", "step_flops",
]
