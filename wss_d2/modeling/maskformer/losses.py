"""
Mask losses and matching costs of MaskFormer (docs/maskformer.md §3), on mask logits m and binary
targets t flattened to (N, P) pixels; σ is the sigmoid.

    focal(m, t) = mean_x [ α_t (1 − p_t)^γ · BCE(m, t) ],  p_t = σ(m) if t else 1 − σ(m),
                  α_t = α if t else 1 − α  (α = 0.25, γ = 2)
    dice(m, t)  = 1 − (2 Σ_x σ(m) t + 1) / (Σ_x σ(m) + Σ_x t + 1)

The pairwise forms give the (Q, T) cost of every prediction against every target.
"""
import torch
from torch.nn import functional as F

__all__ = ["sigmoid_focal_loss", "dice_loss", "pairwise_sigmoid_focal_cost", "pairwise_dice_cost"]


def sigmoid_focal_loss(inputs, targets, alpha: float = 0.25, gamma: float = 2.0):
    """(N,) mean over the P pixels of the focal loss of each row."""
    prob = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1)


def dice_loss(inputs, targets):
    """(N,) dice loss of each row (inputs are logits)."""
    prob = inputs.sigmoid()
    numerator = 2 * (prob * targets).sum(-1)
    denominator = prob.sum(-1) + targets.sum(-1)
    return 1 - (numerator + 1) / (denominator + 1)


def pairwise_sigmoid_focal_cost(inputs, targets, alpha: float = 0.25, gamma: float = 2.0):
    """(Q, T) focal loss of each of Q mask logits (Q, P) against each of T binary targets (T, P)."""
    hw = inputs.shape[1]
    prob = inputs.sigmoid()
    focal_pos = ((1 - prob) ** gamma) * F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    focal_neg = (prob ** gamma) * F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    if alpha >= 0:
        focal_pos, focal_neg = focal_pos * alpha, focal_neg * (1 - alpha)
    return (focal_pos @ targets.T + focal_neg @ (1 - targets).T) / hw


def pairwise_dice_cost(inputs, targets):
    """(Q, T) dice loss of each of Q mask logits (Q, P) against each of T binary targets (T, P)."""
    prob = inputs.sigmoid()
    numerator = 2 * prob @ targets.T
    denominator = prob.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)
