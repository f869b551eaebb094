"""
MaskFormer's set criterion (docs/maskformer.md §3), for mask targets and tag targets.

For every decoder layer (the last, then the auxiliary ones with suffixes _0 .. _{L-2}), the
matcher assigns queries to targets and:

    loss_ce    cross entropy of every query of every image: a matched query's target is its
               target's class (mask or tag target), the others "no object" (index K); PyTorch's
               weighted mean with weight NO_OBJECT_WEIGHT on "no object", 1 on the classes
    loss_mask  focal loss of each query matched to a mask target, its mask logits upsampled
               bilinearly to the padded image size, against the binary target, / N_m
    loss_dice  dice loss of the same pairs, / N_m

N_m = the number of mask targets in the batch, summed over processes and divided by the world
size, at least 1. Queries matched to tag targets get no mask loss. The losses are returned
unweighted; the meta-architecture multiplies them by their named weights.
Subclasses add terms per layer in `layer_losses` (SimFormer's complementary loss).
"""
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.utils import comm

from .losses import dice_loss, sigmoid_focal_loss

__all__ = ["SetCriterion", "count_mask_targets"]


def count_mask_targets(targets, device):
    """N_m: mask targets in the whole batch over all processes / world size, at least 1."""
    count = torch.as_tensor(float(sum(int(t["has_mask"].sum()) for t in targets)), device=device)
    if comm.get_world_size() > 1:
        torch.distributed.all_reduce(count)
    return torch.clamp(count / comm.get_world_size(), min=1).item()


class SetCriterion(nn.Module):
    def __init__(self, num_classes, matcher, no_object_weight=0.1, deep_supervision=True):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.deep_supervision = deep_supervision
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        self.register_buffer("empty_weight", empty_weight)

    def layers(self, outputs):
        """(layer outputs, loss-name suffix): the last layer, then the auxiliary ones."""
        layers = [(outputs, "")]
        if self.deep_supervision:
            layers += [(aux, f"_{i}") for i, aux in enumerate(outputs.get("aux_outputs", []))]
        return layers

    def forward(self, outputs, targets):
        """Unweighted losses of every layer, and the matched indices of the last layer."""
        num_masks = count_mask_targets(targets, outputs["pred_logits"].device)
        losses, last_indices = {}, None
        for layer_outputs, suffix in self.layers(outputs):
            indices = self.matcher(layer_outputs, targets)
            if last_indices is None:
                last_indices = indices
            for name, value in self.layer_losses(layer_outputs, targets, indices, num_masks).items():
                losses[name + suffix] = value
        return losses, last_indices

    def layer_losses(self, outputs, targets, indices, num_masks):
        return {"loss_ce": self.loss_labels(outputs, targets, indices), **self.loss_masks(outputs, targets, indices, num_masks)}

    def loss_labels(self, outputs, targets, indices):
        logits = outputs["pred_logits"].float()
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        for b, (query, target) in enumerate(indices):
            target_classes[b, query.to(logits.device)] = targets[b]["labels"][target].to(logits.device)
        return F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)

    def matched_mask_pairs(self, outputs, targets, indices):
        """(predicted mask logits at the padded image size (N, H, W), binary targets (N, H, W)) of the
        queries matched to mask targets."""
        masks = outputs["pred_masks"]
        src, tgt = [], []
        for b, (query, target) in enumerate(indices):
            keep = targets[b]["has_mask"][target].to(query.device)
            tgt_masks = targets[b]["masks"][target[keep]]
            keep_nonempty = tgt_masks.flatten(1).any(1)  # judged at full resolution
            src.append(masks[b, query[keep][keep_nonempty.to(query.device)]])
            tgt.append(tgt_masks[keep_nonempty])
        size = targets[0]["masks"].shape[-2:]
        src = torch.cat(src) if src else masks.new_zeros((0,) + masks.shape[-2:])
        tgt = torch.cat(tgt).to(masks) if tgt else masks.new_zeros((0,) + tuple(size))
        if len(src):
            src = F.interpolate(src[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        return src, tgt

    def loss_masks(self, outputs, targets, indices, num_masks):
        src, tgt = self.matched_mask_pairs(outputs, targets, indices)
        if len(src) == 0:  # keep the graph: every parameter still gets a (zero) gradient
            zero = outputs["pred_masks"].sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero}
        src, tgt = src.flatten(1).float(), tgt.flatten(1).float()
        return {"loss_mask": sigmoid_focal_loss(src, tgt).sum() / num_masks, "loss_dice": dice_loss(src, tgt).sum() / num_masks}
