"""
SIPE: Self-supervised Image-specific Prototype Exploration (Chen et al., CVPR 2022),
shared/specs/sipe.md. `equations.py` holds the per-image computations (§3), `meta_arch.py`
the registered meta-architecture (training losses, multi-scale + flip localisation maps),
`config.py` its keys. Its backbone is wss_d2's ResNet with MODEL.RESNETS.RES5_STRIDE 1 and
NORM "FrozenStatsBN" (registered as build_sipe_resnet_backbone).
"""
from .config import add_sipe_config
from .equations import (
    gsc_loss,
    hierarchical_feature,
    image_specific_cams,
    image_specific_prototypes,
    normalized_cams,
    structure_aware_seeds,
)
from .backbone import build_sipe_resnet_backbone
from .meta_arch import SIPE
