"""
SIPE: Self-supervised Image-specific Prototype Exploration (Chen et al., CVPR 2022), described
in docs/sipe.md. `equations.py` holds the per-image computations (docs/sipe.md §3),
`meta_arch.py` the registered meta-architecture (training losses, multi-scale + flip
localisation maps), `config.py` its keys; the normalised CAM and the multi-scale + flip CAM
inference are shared CAM tools (wss_d2.modeling.cam). Its backbone is wss_d2's ResNet with
MODEL.RESNETS.RES5_STRIDE 1 and NORM "FrozenStatsBN" (registered as build_sipe_resnet_backbone).
"""
from ...modeling.cam import normalized_cams  # the CAM of docs/sipe.md §3.1, shared by CAM methods
from .config import add_sipe_config
from .equations import (
    gsc_loss,
    hierarchical_feature,
    image_specific_cams,
    image_specific_prototypes,
    structure_aware_seeds,
)
from .backbone import build_sipe_resnet_backbone
from .meta_arch import SIPE
