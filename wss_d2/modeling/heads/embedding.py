"""
Pixel-embedding heads: a feature map of the backbone to a raw D-dimensional embedding,
upsampled x2 bilinearly (SPML: stride 8 -> stride 4, docs/spml.md §5.2, §5.3). No
normalisation inside the head; consumers L2-normalise. Both are in SEM_SEG_HEADS_REGISTRY and
return the embedding tensor itself (no loss: the meta-architecture owns the losses).

- `SPMLASPPv2SumHead` (VOC): DeepLab-v2's summed ASPP (`SummedASPP`: four 3x3 convs at dilations
  6/12/18/24, with bias, no BN/ReLU) to D = 64 channels.
- `SPMLPSPEmbedHead` (DensePose): pyramid pooling (1, 2, 3, 6 bins; conv1x1 to 512 + BN + ReLU
  each, upsampled back), concatenated with the input, conv3x3 to 512 + BN + ReLU, conv1x1 to
  D = 32 (with bias). Its BNs use MODEL.SEM_SEG_HEAD.NORM at PyTorch's momentum 0.1.

D is MODEL.SPML.EMBED_DIM; the input feature MODEL.SEM_SEG_HEAD.IN_FEATURES[0]; heads use
PyTorch's default init.
"""
from typing import Dict, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

from .deeplab_v2 import SummedASPP

__all__ = ["SPMLASPPv2SumHead", "SPMLPSPEmbedHead", "embedding_head_config"]


def embedding_head_config(cfg, input_shape, name):
    head = cfg.MODEL.SEM_SEG_HEAD
    if len(head.IN_FEATURES) != 1:
        raise ValueError(f"{name} reads one feature (MODEL.SEM_SEG_HEAD.IN_FEATURES), got {list(head.IN_FEATURES)}")
    return {
        "input_shape": input_shape,
        "in_feature": head.IN_FEATURES[0],
        "embed_dim": cfg.MODEL.SPML.EMBED_DIM,
        "upsample": cfg.MODEL.SPML.EMBED_UPSAMPLE,
    }


class _EmbeddingHead(nn.Module):
    def _setup(self, input_shape, in_feature, upsample):
        if in_feature not in input_shape:
            raise ValueError(f"{type(self).__name__}: feature {in_feature!r} not among the backbone's {sorted(input_shape)}")
        if upsample < 1:
            raise ValueError(f"MODEL.SPML.EMBED_UPSAMPLE must be >= 1, got {upsample}")
        self.in_feature = in_feature
        self.upsample = int(upsample)
        # stride of the returned embedding relative to the input image
        self.output_stride = input_shape[in_feature].stride // self.upsample
        return input_shape[in_feature].channels

    def _upsample(self, x):
        if self.upsample == 1:
            return x
        return F.interpolate(x, scale_factor=self.upsample, mode="bilinear", align_corners=False)


@SEM_SEG_HEADS_REGISTRY.register()
class SPMLASPPv2SumHead(_EmbeddingHead):
    """Summed ASPP-v2 embedding head (docs/spml.md §5.2): (B, C, h, w) -> (B, D, 2h, 2w)."""

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, in_feature: str, embed_dim: int = 64,
                 dilations: Sequence[int] = (6, 12, 18, 24), upsample: int = 2):
        super().__init__()
        channels = self._setup(input_shape, in_feature, upsample)
        self.embed_dim = embed_dim
        self.aspp = SummedASPP(channels, embed_dim, tuple(dilations))

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {**embedding_head_config(cfg, input_shape, cls.__name__),
                "dilations": tuple(cfg.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS)}

    def forward(self, features):
        return self._upsample(self.aspp(features[self.in_feature]))


@SEM_SEG_HEADS_REGISTRY.register()
class SPMLPSPEmbedHead(_EmbeddingHead):
    """PSP embedding head (docs/spml.md §5.3): (B, C, h, w) -> (B, D, 2h, 2w)."""

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, in_feature: str, embed_dim: int = 32,
                 bins: Sequence[int] = (1, 2, 3, 6), branch_channels: int = 512, norm: str = "BN",
                 upsample: int = 2):
        super().__init__()
        channels = self._setup(input_shape, in_feature, upsample)
        self.embed_dim = embed_dim
        self.bins = tuple(bins)
        self.branches = nn.ModuleList(
            Conv2d(channels, branch_channels, 1, bias=False, norm=get_norm(norm, branch_channels), activation=F.relu)
            for _ in self.bins
        )
        fused = channels + branch_channels * len(self.bins)
        self.fuse = Conv2d(fused, branch_channels, 3, padding=1, bias=False, norm=get_norm(norm, branch_channels),
                           activation=F.relu)
        self.predictor = nn.Conv2d(branch_channels, embed_dim, 1, bias=True)

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {**embedding_head_config(cfg, input_shape, cls.__name__), "norm": cfg.MODEL.SEM_SEG_HEAD.NORM,
                "branch_channels": cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM}

    def forward(self, features):
        x = features[self.in_feature]
        size = x.shape[-2:]
        pooled = [
            F.interpolate(branch(F.adaptive_avg_pool2d(x, b)), size=size, mode="bilinear", align_corners=False)
            for b, branch in zip(self.bins, self.branches)
        ]
        x = self.fuse(torch.cat([x] + pooled, dim=1))
        return self._upsample(self.predictor(x))
