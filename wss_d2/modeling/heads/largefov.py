"""
The LargeFOV head (DeepLab-LargeFOV as ToCo and MCC use it, docs/mcc.md §1.3): two dilated 3x3 convs with
ReLU and a 1x1 classifier, no bias, no normalisation, no dropout, PyTorch's default initialisation.
`LargeFOV` is the module (MCC's online segmentation head); `LargeFOVHead` wraps it as a detectron2
semantic-segmentation head (SEM_SEG_HEADS_REGISTRY), e.g. for a fully supervised ViT with MCC's head.
"""
from typing import Dict

from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

__all__ = ["LargeFOV", "LargeFOVHead"]


class LargeFOV(nn.Sequential):
    """3x3 conv (dilation d) -> ReLU -> 3x3 conv (dilation d) -> ReLU -> 1x1 conv to the classes."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512, dilation: int = 5):
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_classes, 1, bias=False),
        )


@SEM_SEG_HEADS_REGISTRY.register()
class LargeFOVHead(nn.Module):
    """
    LargeFOV on one backbone feature. Training: the logits upsampled bilinearly (align_corners False)
    to the label size, cross entropy over the non-ignored pixels (MCC's supervised counterpart).
    Inference: the logits upsampled by the feature's stride.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_feature: str,
        num_classes: int,
        channels: int = 512,
        dilation: int = 5,
        ignore_value: int = 255,
        loss_weight: float = 1.0,
    ):
        super().__init__()
        shape = input_shape[in_feature]
        self.in_feature = in_feature
        self.output_stride = shape.stride
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight
        self.predictor = LargeFOV(shape.channels, num_classes, channels, dilation)

    @classmethod
    def from_config(cls, cfg, input_shape):
        head = cfg.MODEL.SEM_SEG_HEAD
        if len(head.IN_FEATURES) != 1:
            raise ValueError(f"LargeFOVHead reads one feature (MODEL.SEM_SEG_HEAD.IN_FEATURES), got {list(head.IN_FEATURES)}")
        return {
            "input_shape": input_shape,
            "in_feature": head.IN_FEATURES[0],
            "num_classes": head.NUM_CLASSES,
            "channels": head.CONVS_DIM,
            "dilation": head.LARGEFOV_DILATION,
            "ignore_value": head.IGNORE_VALUE,
            "loss_weight": head.LOSS_WEIGHT,
        }

    def forward(self, features, targets=None):
        logits = self.predictor(features[self.in_feature])
        if self.training:
            logits = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
            if not (targets != self.ignore_value).any():
                return None, {"loss_sem_seg": logits.sum() * 0.0}
            loss = F.cross_entropy(logits, targets, ignore_index=self.ignore_value)
            return None, {"loss_sem_seg": loss * self.loss_weight}
        size = [s * self.output_stride for s in logits.shape[-2:]]
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False), {}
