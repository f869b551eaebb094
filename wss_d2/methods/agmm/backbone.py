"""
AGMM's backbone (docs/agmm.md §2.1, §9.2): deep-stem ResNet at output stride 8 with per-block
dilations, i.e. wss_d2's shared `build_resnet_block_dilated_backbone` read from the generic
MODEL.RESNETS.RES4_BLOCK_DILATIONS / RES5_BLOCK_DILATIONS keys.
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from ...modeling.backbone import build_resnet_block_dilated_backbone

__all__ = ["build_agmm_resnet_backbone"]


@BACKBONE_REGISTRY.register()
def build_agmm_resnet_backbone(cfg, input_shape: ShapeSpec):
    """
    The earlier name of AGMM's backbone, kept registered so that configs naming it keep loading:
    an alias of `build_resnet_block_dilated_backbone` (the same module and state-dict keys). The
    dilations of torchvision's replace_stride_with_dilation=[False, True, True] are the shared
    builder's defaults (MODEL.RESNETS.RES4_BLOCK_DILATIONS [] = [1, 2, ..., 2],
    RES5_BLOCK_DILATIONS [] = [2, 4, ..., 4]; Cityscapes' multi-grid res5 is [4, 8, 16]). The old
    MODEL.AGMM.RES4_DILATIONS / RES5_DILATIONS keys are refused, naming these.
    """
    return build_resnet_block_dilated_backbone(cfg, input_shape)
