"""Models; importing registers backbones and heads in detectron2's registries."""
from .backbone import build_resnet_dilated_backbone
from .heads import DeepLabV2Head, WSSDeepLabV3PlusHead
