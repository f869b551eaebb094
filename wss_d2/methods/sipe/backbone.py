"""SIPE's backbone (docs/sipe.md §2.1-2.2): ResNet at output stride 16 with an undilated stride-1 res5."""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from ...modeling.backbone import build_resnet_dilated_backbone

__all__ = ["build_sipe_resnet_backbone"]


@BACKBONE_REGISTRY.register()
def build_sipe_resnet_backbone(cfg, input_shape: ShapeSpec):
    """
    wss_d2's ResNet with res5 at stride 1 and no dilation (detectron2's builders would
    dilate it), so res4 and res5 share stride 16. The rest follows the config: NORM
    "FrozenStatsBN" (frozen statistics, trainable γ/β), FREEZE_AT 3 (stem..res3 frozen;
    the meta-architecture also detaches res3's output, MODEL.SIPE.DETACH_BACKBONE_AT).
    """
    r = cfg.MODEL.RESNETS
    if (r.RES5_STRIDE, r.RES5_DILATION, r.RES4_DILATION) != (1, 1, 1):
        raise ValueError(
            "build_sipe_resnet_backbone is output stride 16 with an undilated res5: it needs "
            "MODEL.RESNETS.RES5_STRIDE 1, RES5_DILATION 1 and RES4_DILATION 1; got "
            f"{r.RES5_STRIDE}, {r.RES5_DILATION}, {r.RES4_DILATION}"
        )
    return build_resnet_dilated_backbone(cfg, input_shape)
