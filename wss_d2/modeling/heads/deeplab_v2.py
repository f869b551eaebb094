"""
DeepLab-v2's ASPP head (Chen et al., TPAMI 2017), the second-stage model of SIPE
(docs/sipe.md §8.1, as in deeplab-pytorch): four parallel 3x3 convs with dilations 6/12/18/24 (with bias)
from the deepest feature straight to class scores, summed. Trained at the logits' stride
against nearest-downsampled labels; upsampled bilinearly at inference.
"""
from typing import Dict

from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

__all__ = ["DeepLabV2Head", "SummedASPP"]


class SummedASPP(nn.ModuleList):
    """
    DeepLab-v2's ASPP: parallel 3x3 convs (with bias, no norm, no activation) at the given
    dilations (padding = dilation), summed. The branches are the list items, so the parameter
    names are `<name>.<i>.weight` / `.bias`. PyTorch's default init; callers re-init as they need.
    Used for class logits (DeepLabV2Head) and for SPML's embedding (SPMLASPPv2SumHead).
    """

    def __init__(self, in_channels, out_channels, dilations=(6, 12, 18, 24)):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=d, dilation=d, bias=True) for d in dilations
        )

    def forward(self, x):
        return sum(branch(x) for branch in self)


@SEM_SEG_HEADS_REGISTRY.register()
class DeepLabV2Head(nn.Module):
    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_feature: str,
        num_classes: int,
        dilations=(6, 12, 18, 24),
        ignore_value: int = 255,
        loss_weight: float = 1.0,
    ):
        super().__init__()
        shape = input_shape[in_feature]
        self.in_feature = in_feature
        self.output_stride = shape.stride
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight
        self.branches = SummedASPP(shape.channels, num_classes, dilations)
        for conv in self.branches:  # deeplab-pytorch's init
            nn.init.normal_(conv.weight, 0, 0.01)
            nn.init.constant_(conv.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        head = cfg.MODEL.SEM_SEG_HEAD
        if len(head.IN_FEATURES) != 1:
            raise ValueError(f"DeepLabV2Head reads one feature (MODEL.SEM_SEG_HEAD.IN_FEATURES), got {list(head.IN_FEATURES)}")
        return {
            "input_shape": input_shape,
            "in_feature": head.IN_FEATURES[0],
            "num_classes": head.NUM_CLASSES,
            "dilations": tuple(head.ASPP_DILATIONS),
            "ignore_value": head.IGNORE_VALUE,
            "loss_weight": head.LOSS_WEIGHT,
        }

    def layers(self, features):
        x = features[self.in_feature]
        return self.branches(x)

    def forward(self, features, targets=None):
        logits = self.layers(features)
        if self.training:
            return None, self.losses(logits, targets)
        size = [s * self.output_stride for s in logits.shape[-2:]]
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False), {}

    def losses(self, logits, targets):
        # labels to the logits' size by nearest neighbour, as deeplab-pytorch (not upsampled logits)
        targets = F.interpolate(targets[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
        if not (targets != self.ignore_value).any():
            return {"loss_sem_seg": logits.sum() * 0.0}
        loss = F.cross_entropy(logits, targets, ignore_index=self.ignore_value)
        return {"loss_sem_seg": loss * self.loss_weight}
