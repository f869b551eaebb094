from .resnet import DilatedBasicBlock, DilatedResNet, build_resnet_dilated_backbone
