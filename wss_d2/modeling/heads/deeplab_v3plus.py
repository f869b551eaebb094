"""
DeepLabV3+ (Chen et al., ECCV 2018): ASPP on the deepest feature, a decoder that fuses it
with a projected low-level feature, a 1x1 classifier.

The supervised baseline of wss_d2 and the segmentation head that the weak methods' second
stages reuse. It differs from detectron2's DeepLab project head where those methods need it
to: the image-pooling branch pools globally (any input size, at train and test time) and
can have BatchNorm as in the paper, resize alignment is configurable, and `layers()`
returns the decoder feature along with the logits (pixel-embedding methods read it).
"""
from typing import Dict, List

import fvcore.nn.weight_init as weight_init
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

__all__ = ["ASPP", "AGMMDeepLabV3PlusHead", "DeepLabV3PlusFeatureHead", "WSSDeepLabV3PlusHead"]


class ASPP(nn.Module):
    """
    Atrous spatial pyramid pooling: a 1x1 conv, three dilated 3x3 convs and a global image
    pooling branch, concatenated and projected to `out_channels`, then dropout (of elements,
    or of whole channels with `channel_dropout`, AGMM's Dropout2d).
    """

    def __init__(
        self, in_channels, out_channels, dilations, *, norm, dropout=0.0, pool_norm=True,
        align_corners=False, channel_dropout=False, init="c2",
    ):
        super().__init__()
        if len(dilations) != 3:
            raise ValueError(f"ASPP needs 3 dilations, got {dilations}")
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            [Conv2d(in_channels, out_channels, 1, bias=False, norm=get_norm(norm, out_channels))]
            + [
                Conv2d(
                    in_channels, out_channels, 3, padding=d, dilation=d, bias=False,
                    norm=get_norm(norm, out_channels),
                )
                for d in dilations
            ]
        )
        self.pool_conv = Conv2d(
            in_channels, out_channels, 1, bias=not pool_norm,
            norm=get_norm(norm, out_channels) if pool_norm else None,
        )
        self.project = Conv2d(
            5 * out_channels, out_channels, 1, bias=False, norm=get_norm(norm, out_channels)
        )
        self.dropout = nn.Dropout2d(dropout) if channel_dropout else nn.Dropout(dropout)
        if init == "c2":
            for layer in [*self.branches, self.pool_conv, self.project]:
                weight_init.c2_xavier_fill(layer)

    def forward(self, x):
        outputs = [F.relu(branch(x)) for branch in self.branches]
        pooled = F.relu(self.pool_conv(F.adaptive_avg_pool2d(x, 1)))
        outputs.append(
            F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        )
        return self.dropout(F.relu(self.project(torch.cat(outputs, dim=1))))


@SEM_SEG_HEADS_REGISTRY.register()
class WSSDeepLabV3PlusHead(nn.Module):
    """
    Registered under its own name: detectron2's DeepLab project owns "DeepLabV3PlusHead".
    In training `forward` returns (None, {"loss_sem_seg": ...}); in inference (logits at
    input resolution, {}), as detectron2's SemanticSegmentor expects.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_features: List[str],
        num_classes: int,
        ignore_value: int,
        project_channels: int,
        aspp_channels: int,
        aspp_dilations: List[int],
        aspp_dropout: float,
        aspp_pool_norm: bool,
        decoder_channels: int,
        norm: str,
        align_corners: bool = False,
        loss_weight: float = 1.0,
        channel_dropout: bool = False,
        init: str = "c2",
    ):
        """
        channel_dropout: ASPP dropout of whole channels (Dropout2d, AGMM) instead of elements.
        init: "c2" (detectron2: Xavier convs, classifier N(0, 0.001)) or "pytorch" (every
            layer keeps PyTorch's default init, as AGMM's head).
        """
        super().__init__()
        if init not in ("c2", "pytorch"):
            raise ValueError(f"MODEL.SEM_SEG_HEAD.INIT must be 'c2' or 'pytorch', got {init!r}")
        if len(in_features) != 2:
            raise ValueError(
                f"DeepLabV3+ takes [low-level, deepest] features (MODEL.SEM_SEG_HEAD.IN_FEATURES), got {in_features}"
            )
        self.low_level_feature, self.aspp_feature = in_features
        low, deep = input_shape[self.low_level_feature], input_shape[self.aspp_feature]
        self.ignore_value = ignore_value
        self.num_classes = num_classes
        self.loss_weight = loss_weight
        self.align_corners = align_corners
        self.output_stride = low.stride  # logits come at the low-level feature's stride

        self.aspp = ASPP(
            deep.channels, aspp_channels, aspp_dilations, norm=norm, dropout=aspp_dropout,
            pool_norm=aspp_pool_norm, align_corners=align_corners, channel_dropout=channel_dropout,
            init=init,
        )
        self.project = Conv2d(
            low.channels, project_channels, 1, bias=False, norm=get_norm(norm, project_channels)
        )
        self.fuse = nn.Sequential(
            Conv2d(
                aspp_channels + project_channels, decoder_channels, 3, padding=1, bias=False,
                norm=get_norm(norm, decoder_channels), activation=F.relu,
            ),
            Conv2d(
                decoder_channels, decoder_channels, 3, padding=1, bias=False,
                norm=get_norm(norm, decoder_channels), activation=F.relu,
            ),
        )
        self.predictor = Conv2d(decoder_channels, num_classes, 1)
        if init == "c2":
            weight_init.c2_xavier_fill(self.project)
            for layer in self.fuse:
                weight_init.c2_xavier_fill(layer)
            nn.init.normal_(self.predictor.weight, 0, 0.001)
            nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        head = cfg.MODEL.SEM_SEG_HEAD
        if head.LOSS_TYPE != "cross_entropy":
            raise ValueError(
                f"MODEL.SEM_SEG_HEAD.LOSS_TYPE={head.LOSS_TYPE!r}: {cls.__name__} supports 'cross_entropy'"
            )
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "in_features": list(head.IN_FEATURES),
            "num_classes": head.NUM_CLASSES,
            "ignore_value": head.IGNORE_VALUE,
            "project_channels": head.PROJECT_CHANNELS[0],
            "aspp_channels": head.ASPP_CHANNELS,
            "aspp_dilations": list(head.ASPP_DILATIONS),
            "aspp_dropout": head.ASPP_DROPOUT,
            "aspp_pool_norm": head.ASPP_POOL_NORM,
            "decoder_channels": head.CONVS_DIM,
            "norm": head.NORM,
            "align_corners": head.ALIGN_CORNERS,
            "loss_weight": head.LOSS_WEIGHT,
            "channel_dropout": head.ASPP_CHANNEL_DROPOUT,
            "init": head.INIT,
        }

    def layers(self, features):
        """(decoder feature, logits), both at the low-level feature's stride."""
        low = F.relu(self.project(features[self.low_level_feature]))
        deep = F.interpolate(
            self.aspp(features[self.aspp_feature]), size=low.shape[-2:], mode="bilinear",
            align_corners=self.align_corners,
        )
        feature = self.fuse(torch.cat([deep, low], dim=1))
        return feature, self.predictor(feature)

    def upsample(self, logits, size):
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(self, features, targets=None):
        _, logits = self.layers(features)
        if self.training:
            return None, self.losses(logits, targets)
        # inputs are padded to the backbone's size divisibility, a multiple of this stride
        size = [s * self.output_stride for s in logits.shape[-2:]]
        return self.upsample(logits, size), {}

    def losses(self, logits, targets):
        logits = self.upsample(logits, targets.shape[-2:])
        if not (targets != self.ignore_value).any():
            # a batch with no labelled pixel: zero loss, not the NaN of an empty mean
            return {"loss_sem_seg": logits.sum() * 0.0}
        loss = F.cross_entropy(logits, targets, ignore_index=self.ignore_value)
        return {"loss_sem_seg": loss * self.loss_weight}


@SEM_SEG_HEADS_REGISTRY.register()
class DeepLabV3PlusFeatureHead(WSSDeepLabV3PlusHead):
    """
    The DeepLabV3+ head for methods that read the decoder feature as well as the logits (AGMM's
    Gaussian mixtures, pixel-embedding methods): the layers and settings of
    WSSDeepLabV3PlusHead, but in training and inference alike `forward(features, size)`
    returns (decoder feature at stride 4, logits resized to `size`); the losses live in the
    meta-architecture.
    """

    def forward(self, features, size=None):
        feature, logits = self.layers(features)
        if size is None:
            size = [s * self.output_stride for s in logits.shape[-2:]]
        return feature, self.upsample(logits, size)


@SEM_SEG_HEADS_REGISTRY.register()
class AGMMDeepLabV3PlusHead(DeepLabV3PlusFeatureHead):
    """
    The head's earlier name, kept so that configs naming MODEL.SEM_SEG_HEAD.NAME
    "AGMMDeepLabV3PlusHead" build the same module (same parameters and state-dict keys).
    """
