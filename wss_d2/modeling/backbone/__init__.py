from .resnet import (
    DilatedBasicBlock,
    DilatedResNet,
    add_block_dilation_config,
    blocks_per_stage,
    build_resnet_block_dilated_backbone,
    build_resnet_dilated_backbone,
    build_resnet_with_block_dilations,
    resolve_block_dilations,
    set_bn_momentum,
)
from .vit import MaskableViT, add_vit_config, build_vit_backbone
