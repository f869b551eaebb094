from .resnet import (
    DilatedBasicBlock,
    DilatedResNet,
    blocks_per_stage,
    build_resnet_dilated_backbone,
    build_resnet_with_block_dilations,
)
