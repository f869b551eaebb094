"""Models; importing registers backbones and heads in detectron2's registries."""
from .backbone import build_resnet_dilated_backbone
from .cam import cams_to_class_scores, max_normalize, multi_scale_cams, normalized_cams
from .heads import DeepLabV2Head, WSSDeepLabV3PlusHead
from . import maskformer  # noqa: F401  (registers WSSMaskFormerHead and the WSSMaskFormer meta-architecture)
