"""
The Hungarian matcher of MaskFormer with weak-shot targets (docs/maskformer.md §2).

A target is a class with a mask ("mask target": a base class, or any class under full supervision) or
a class known only from an image tag ("tag target": a novel class in weak-shot training, whose mask
is empty). The cost of query q for a target of class c, with p_q the softmax over the K + 1 logits:

    mask target: MASK_TARGET_CLASS_COST · (−p_q(c)) + MASK_TARGET_MASK_COST · (w_focal · focal + w_dice · dice)
    tag target:  TAG_TARGET_CLASS_COST  · (−p_q(c)) + TAG_TARGET_MASK_COST  · (w_focal · focal + w_dice · dice)

Masks are compared at the prediction's resolution: target masks are downsampled with PyTorch's
"nearest" (for a stride of 4 it keeps pixels 0, 4, 8, ...: the top-left of each block). A mask target
whose downsampled mask is empty (a region thinner than the stride) is costed as a tag target.
scipy's linear_sum_assignment gives every target one query; the indices returned are the targets'
own, whatever order the cost columns had (the original used the columns' order as target indices,
which is only right while every mask target is listed before every tag target).
"""
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional as F

from .losses import pairwise_dice_cost, pairwise_sigmoid_focal_cost

__all__ = ["HungarianMatcher"]


class HungarianMatcher(nn.Module):
    def __init__(self, mask_target_class_cost=1.0, mask_target_mask_cost=1.0, tag_target_class_cost=1.0,
                 tag_target_mask_cost=0.0, focal_weight=20.0, dice_weight=1.0):
        super().__init__()
        self.mask_target_class_cost = mask_target_class_cost
        self.mask_target_mask_cost = mask_target_mask_cost
        self.tag_target_class_cost = tag_target_class_cost
        self.tag_target_mask_cost = tag_target_mask_cost
        self.focal_weight = focal_weight
        self.dice_weight = dice_weight

    def cost_matrix(self, logits, masks, target):
        """(Q, T) cost of one image: logits (Q, K+1), mask logits (Q, h, w), target dict."""
        labels = target["labels"]
        prob = logits.float().softmax(-1)
        class_cost = -prob[:, labels]
        if len(labels) == 0:
            return class_cost
        tgt = F.interpolate(target["masks"][:, None].float(), size=masks.shape[-2:], mode="nearest")[:, 0]
        tgt = tgt.flatten(1)
        out = masks.float().flatten(1)
        mask_cost = self.focal_weight * pairwise_sigmoid_focal_cost(out, tgt) + self.dice_weight * pairwise_dice_cost(out, tgt)
        has_mask = target["has_mask"] & (tgt.sum(1) > 0)
        class_w = torch.where(has_mask, self.mask_target_class_cost, self.tag_target_class_cost).to(class_cost)
        mask_w = torch.where(has_mask, self.mask_target_mask_cost, self.tag_target_mask_cost).to(class_cost)
        # a zero weight leaves the term out even where it is not finite
        mask_term = torch.where(mask_w != 0, mask_w * mask_cost, torch.zeros_like(mask_cost))
        return class_w * class_cost + mask_term

    @torch.no_grad()
    def forward(self, outputs, targets):
        """[(query indices, target indices)] per image, both int64, sorted by query."""
        logits, masks = outputs["pred_logits"], outputs["pred_masks"]
        num_queries = logits.shape[1]
        indices = []
        for b, target in enumerate(targets):
            n = len(target["labels"])
            if n > num_queries:
                raise ValueError(
                    f"Image {target.get('file_name', b)} has {n} targets but the model has {num_queries} queries "
                    "(MODEL.MASK_FORMER.NUM_OBJECT_QUERIES): every target needs its own query"
                )
            cost = self.cost_matrix(logits[b], masks[b], target).cpu()
            if not torch.isfinite(cost).all():
                raise FloatingPointError(f"Matching cost of image {target.get('file_name', b)} is not finite")
            rows, cols = linear_sum_assignment(cost.numpy())
            order = np.argsort(rows)
            indices.append((torch.as_tensor(rows[order], dtype=torch.int64),
                            torch.as_tensor(cols[order], dtype=torch.int64)))
        return indices
