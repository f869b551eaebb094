"""
Dilated ResNet-18/34/50/101/152 backbone at output stride 8, 16 or 32.

detectron2's `build_resnet_backbone` cannot dilate res4 and refuses dilation for the basic
blocks of ResNet-18/34; its DeepLab project's builder dilates but knows only bottleneck
depths. This builder covers all depths with the DeepLab project's config keys
(RES4_DILATION, RES5_DILATION, RES5_MULTI_GRID, STEM_TYPE) and reuses detectron2's stems,
bottleneck block and ResNet class, so detectron2 / torchvision checkpoints load unchanged.
"""
import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F

from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicStem, BottleneckBlock, ResNet
from detectron2.projects.deeplab.resnet import DeepLabStem

from .frozen_stats_bn import resolve_norm

__all__ = [
    "add_block_dilation_config",
    "build_resnet_block_dilated_backbone",
    "resolve_block_dilations",
    "set_bn_momentum",
    "DilatedBasicBlock",
    "DilatedResNet",
    "build_resnet_dilated_backbone",
    "blocks_per_stage",
    "build_resnet_with_block_dilations",
]

_BLOCKS_PER_STAGE = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}


class DilatedBasicBlock(CNNBlockBase):
    """
    detectron2's BasicBlock (two 3x3 convs) with a dilation; same parameter names
    (conv1, conv2, shortcut), so ResNet-18/34 weights converted for detectron2 load.
    """

    def __init__(self, in_channels, out_channels, *, stride=1, dilation=1, norm="BN"):
        super().__init__(in_channels, out_channels, stride)
        if in_channels != out_channels or stride != 1:
            self.shortcut = Conv2d(
                in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                norm=get_norm(norm, out_channels),
            )
        else:
            self.shortcut = None
        self.conv1 = Conv2d(
            in_channels, out_channels, kernel_size=3, stride=stride, padding=dilation,
            dilation=dilation, bias=False, norm=get_norm(norm, out_channels),
        )
        self.conv2 = Conv2d(
            out_channels, out_channels, kernel_size=3, stride=1, padding=dilation,
            dilation=dilation, bias=False, norm=get_norm(norm, out_channels),
        )
        for layer in (self.conv1, self.conv2, self.shortcut):
            if layer is not None:
                weight_init.c2_msra_fill(layer)

    def forward(self, x):
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out + shortcut)


class DilatedResNet(ResNet):
    """A detectron2 ResNet that asks for inputs padded to its output stride, so that every
    feature map is exactly 1/stride of the padded image."""

    @property
    def size_divisibility(self):
        return max(self._out_feature_strides[f] for f in self._out_features)


def _stage_dilations(res4_dilation, res5_dilation, res5_stride=2):
    if res5_stride not in (1, 2):
        raise ValueError(f"MODEL.RESNETS.RES5_STRIDE must be 1 or 2, got {res5_stride}")
    if res5_stride == 1 and res5_dilation != 1:
        raise ValueError("MODEL.RESNETS.RES5_STRIDE=1 keeps res5 at res4's resolution without dilation; "
                         f"it needs RES5_DILATION=1, got {res5_dilation}")
    if res4_dilation not in (1, 2) or res5_dilation not in (1, 2, 4):
        raise ValueError(
            f"MODEL.RESNETS.RES4_DILATION must be 1 or 2 and RES5_DILATION 1, 2 or 4; got "
            f"{res4_dilation} and {res5_dilation}"
        )
    if res4_dilation == 2 and res5_dilation != 4:
        raise ValueError("MODEL.RESNETS.RES4_DILATION=2 (output stride 8) needs RES5_DILATION=4")
    return {2: 1, 3: 1, 4: res4_dilation, 5: res5_dilation}


@BACKBONE_REGISTRY.register()
def build_resnet_dilated_backbone(cfg, input_shape: ShapeSpec):
    """
    ResNet of cfg.MODEL.RESNETS.DEPTH. Output stride: 32; 16 with RES5_DILATION=2, or with
    RES5_STRIDE=1 (res5 keeps res4's resolution with no dilation: SIPE, IRN); 8 with
    RES4_DILATION=2 and RES5_DILATION=4. res5 block i gets dilation RES5_DILATION *
    RES5_MULTI_GRID[i] (one entry per res5 block). A dilated stage does not downsample.
    NORM may also be "FrozenStatsBN" (frozen statistics, trainable affine).
    """
    r = cfg.MODEL.RESNETS
    stage_blocks = blocks_per_stage(r.DEPTH)
    if len(r.RES5_MULTI_GRID) != stage_blocks[3]:
        raise ValueError(
            f"MODEL.RESNETS.RES5_MULTI_GRID={list(r.RES5_MULTI_GRID)} needs one entry per res5 "
            f"block: ResNet-{r.DEPTH} has {stage_blocks[3]}"
        )
    dilations = _stage_dilations(r.RES4_DILATION, r.RES5_DILATION, r.RES5_STRIDE)
    block_dilations = {stage: [dilations[stage]] * n for stage, n in zip((2, 3, 4), stage_blocks)}
    block_dilations[5] = [dilations[5] * g for g in r.RES5_MULTI_GRID]
    return build_resnet_with_block_dilations(cfg, input_shape, block_dilations)


def blocks_per_stage(depth):
    """Blocks of res2..res5 for a ResNet depth."""
    if depth not in _BLOCKS_PER_STAGE:
        raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {sorted(_BLOCKS_PER_STAGE)}, got {depth}")
    return _BLOCKS_PER_STAGE[depth]


def build_resnet_with_block_dilations(cfg, input_shape: ShapeSpec, block_dilations):
    """
    The ResNet of cfg.MODEL.RESNETS (depth, stem, norm, widths, OUT_FEATURES, FREEZE_AT)
    with explicit dilations: `block_dilations` maps stage 2..5 to one dilation per block. A
    stage with any dilation above 1 does not downsample (so torchvision's
    replace_stride_with_dilation, whose first dilated block keeps the previous dilation, is
    [1, 2, 2, ...]); res5 also keeps its resolution with RES5_STRIDE 1.
    """
    r = cfg.MODEL.RESNETS
    depth = r.DEPTH
    stage_blocks = blocks_per_stage(depth)
    for stage, num_blocks in zip((2, 3, 4, 5), stage_blocks):
        if len(block_dilations[stage]) != num_blocks:
            raise ValueError(
                f"res{stage} of ResNet-{depth} has {num_blocks} blocks, got {len(block_dilations[stage])} "
                f"dilations: {list(block_dilations[stage])}"
            )
    norm = resolve_norm(r.NORM)
    if r.STEM_TYPE == "basic":
        stem = BasicStem(input_shape.channels, r.STEM_OUT_CHANNELS, norm=norm)
    elif r.STEM_TYPE == "deeplab":
        stem = DeepLabStem(input_shape.channels, r.STEM_OUT_CHANNELS, norm=norm)
    else:
        raise ValueError(f"MODEL.RESNETS.STEM_TYPE must be 'basic' or 'deeplab', got {r.STEM_TYPE!r}")

    basic = depth in (18, 34)
    if basic and r.RES2_OUT_CHANNELS != 64:
        raise ValueError(f"ResNet-{depth} needs MODEL.RESNETS.RES2_OUT_CHANNELS=64")

    max_stage = max({"stem": 2, "res2": 2, "res3": 3, "res4": 4, "res5": 5}[f] for f in r.OUT_FEATURES)
    in_channels = r.STEM_OUT_CHANNELS
    out_channels = r.RES2_OUT_CHANNELS
    bottleneck_channels = r.NUM_GROUPS * r.WIDTH_PER_GROUP
    stages = []
    for stage in range(2, max_stage + 1):
        num_blocks = stage_blocks[stage - 2]
        dilated = max(block_dilations[stage]) > 1
        first_stride = 1 if stage == 2 or dilated or (stage == 5 and r.RES5_STRIDE == 1) else 2
        kwargs = {
            "num_blocks": num_blocks,
            "stride_per_block": [first_stride] + [1] * (num_blocks - 1),
            "dilation_per_block": list(block_dilations[stage]),
            "in_channels": in_channels,
            "out_channels": out_channels,
            "norm": norm,
        }
        if basic:
            kwargs["block_class"] = DilatedBasicBlock
        else:
            kwargs.update(
                block_class=BottleneckBlock,
                bottleneck_channels=bottleneck_channels,
                stride_in_1x1=r.STRIDE_IN_1X1,
                num_groups=r.NUM_GROUPS,
            )
        stages.append(ResNet.make_stage(**kwargs))
        in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return DilatedResNet(stem, stages, out_features=r.OUT_FEATURES).freeze(cfg.MODEL.BACKBONE.FREEZE_AT)



def add_block_dilation_config(cfg):
    """
    MODEL.RESNETS keys of `build_resnet_block_dilated_backbone`: one dilation per block of res4
    and res5, and the momentum of every backbone BatchNorm.
    """
    # one dilation per res4 block; [] = [1, 2, ..., 2] (torchvision's replace_stride_with_dilation)
    cfg.MODEL.RESNETS.RES4_BLOCK_DILATIONS = []
    # one dilation per res5 block; [] = [2, 4, ..., 4]
    cfg.MODEL.RESNETS.RES5_BLOCK_DILATIONS = []
    # momentum of every BatchNorm of the backbone (PyTorch convention; SPML: 3e-4, docs/spml.md §5.1)
    cfg.MODEL.RESNETS.BN_MOMENTUM = 0.1


def set_bn_momentum(module, momentum):
    """Set the momentum of every BatchNorm (BN, SyncBN, FrozenStatsBN) inside `module`."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum
    return module


def resolve_block_dilations(depth, res4, res5, keys=("MODEL.RESNETS.RES4_BLOCK_DILATIONS", "MODEL.RESNETS.RES5_BLOCK_DILATIONS")):
    """
    Per-block dilations of res2..res5 of a ResNet of `depth` for `build_resnet_with_block_dilations`;
    an empty res4 / res5 list gives [1, 2, ..., 2] / [2, 4, ..., 4] (output stride 8). `keys` name
    the two config keys in errors.
    """
    blocks = blocks_per_stage(depth)
    res4 = list(res4) or [1] + [2] * (blocks[2] - 1)
    res5 = list(res5) or [2] + [4] * (blocks[3] - 1)
    for key, dilations in zip(keys, (res4, res5)):
        if min(dilations) < 1:
            raise ValueError(f"{key}={dilations}: dilations must be >= 1")
    return {2: [1] * blocks[0], 3: [1] * blocks[1], 4: res4, 5: res5}


@BACKBONE_REGISTRY.register()
def build_resnet_block_dilated_backbone(cfg, input_shape: ShapeSpec):
    """
    The ResNet of cfg.MODEL.RESNETS (depth, stem, norm, widths, OUT_FEATURES, FREEZE_AT) with one
    dilation per block: MODEL.RESNETS.RES4_BLOCK_DILATIONS / RES5_BLOCK_DILATIONS ([] = [1, 2, ..., 2]
    and [2, 4, ..., 4], output stride 8; an undilated res4 [1, ..., 1] gives output stride 16), and
    every BatchNorm at MODEL.RESNETS.BN_MOMENTUM. SPML's backbone (docs/spml.md §5.1): deep stem
    (STEM_TYPE "deeplab", 128 channels), res4 (1, 2, 2, ...), res5 (2, 4, 4), momentum 3e-4.
    detectron2's DeepLab builder dilates the first block of a dilated stage fully and cannot give
    res5 = (2, 4, 4).
    """
    r = cfg.MODEL.RESNETS
    if r.RES5_STRIDE != 2:
        raise ValueError(
            "build_resnet_block_dilated_backbone dilates res5; MODEL.RESNETS.RES5_STRIDE must stay 2, "
            f"got {r.RES5_STRIDE}"
        )
    dilations = resolve_block_dilations(r.DEPTH, r.RES4_BLOCK_DILATIONS, r.RES5_BLOCK_DILATIONS)
    backbone = build_resnet_with_block_dilations(cfg, input_shape, dilations)
    return set_bn_momentum(backbone, r.BN_MOMENTUM)
