"""AGMM's backbone (docs/agmm.md §2.1): deep-stem ResNet at output stride 8 with per-block dilations."""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from ...modeling.backbone import build_resnet_with_block_dilations, resolve_block_dilations

__all__ = ["build_agmm_resnet_backbone"]


@BACKBONE_REGISTRY.register()
def build_agmm_resnet_backbone(cfg, input_shape: ShapeSpec):
    """
    wss_d2's ResNet (detectron2 blocks, DeepLab stem with MODEL.RESNETS.STEM_TYPE "deeplab")
    with the dilations of torchvision's replace_stride_with_dilation=[False, True, True]:
    MODEL.AGMM.RES4_DILATIONS / RES5_DILATIONS give one dilation per block ([] = [1, 2, ..., 2]
    and [2, 4, ..., 4]; Cityscapes' multi-grid res5 is [4, 8, 16]). detectron2's DeepLab
    builder would give [2, ..., 2] and [4, 4, 4] instead. An undilated res4 ([1, ..., 1])
    gives output stride 16 (the CPU-sized synthetic configs). The dilation rule is the shared
    `resolve_block_dilations` of `build_resnet_block_dilated_backbone` (MODEL.RESNETS.
    RES4/RES5_BLOCK_DILATIONS); this builder keeps reading the MODEL.AGMM keys.
    """
    r = cfg.MODEL.RESNETS
    dilations = resolve_block_dilations(
        r.DEPTH, cfg.MODEL.AGMM.RES4_DILATIONS, cfg.MODEL.AGMM.RES5_DILATIONS,
        keys=("MODEL.AGMM.RES4_DILATIONS", "MODEL.AGMM.RES5_DILATIONS"),
    )
    if r.RES5_STRIDE != 2:
        raise ValueError(f"build_agmm_resnet_backbone dilates res5; MODEL.RESNETS.RES5_STRIDE must stay 2, got {r.RES5_STRIDE}")
    return build_resnet_with_block_dilations(cfg, input_shape, dilations)
