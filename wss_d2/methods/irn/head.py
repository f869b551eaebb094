"""IRN's boundary head (docs/sipe.md §7.2): per-feature 1x1 edge convs fused into one boundary logit."""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["IRNEdgeHead"]


class IRNEdgeHead(nn.Module):
    """
    Per feature: 1x1 conv (no bias) → GroupNorm → ReLU, upsampled (bilinear,
    align_corners=False) to the resolution of the second feature (stride 4) and cropped to
    it; concatenated and fused by a 1x1 conv with bias into one boundary logit.
    """

    def __init__(self, in_channels, strides, channels=32, num_groups=4):
        super().__init__()
        self.strides = list(strides)
        self.target_stride = self.strides[1] if len(self.strides) > 1 else self.strides[0]
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, channels, 1, bias=False), nn.GroupNorm(num_groups, channels))
            for c in in_channels
        )
        self.fuse = nn.Conv2d(channels * len(in_channels), 1, 1, bias=True)

    def forward(self, features):
        outputs, size = [], None
        for branch, stride, x in zip(self.branches, self.strides, features):
            x = branch(x)
            if stride > self.target_stride:
                x = F.interpolate(x, scale_factor=stride // self.target_stride, mode="bilinear", align_corners=False)
            x = F.relu(x)
            if stride == self.target_stride and size is None:
                size = x.shape[-2:]
            outputs.append(x)
        size = size or outputs[-1].shape[-2:]
        outputs = [x[..., : size[0], : size[1]] for x in outputs]
        return self.fuse(torch.cat(outputs, dim=1))[:, 0]
