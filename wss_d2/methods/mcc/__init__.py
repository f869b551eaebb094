"""
MCC: Masked Collaborative Contrast for weakly supervised semantic segmentation (Wu et al.,
WACV 2024), described in docs/mcc.md. `masks.py` draws the random block key masks and the
positive/negative flags of the masked views (docs/mcc.md §4.1), `losses.py` holds the MCC
contrast, classification, patch-token affinity and segmentation losses (docs/mcc.md §4.3, §5).
Shared parts live elsewhere: the maskable ViT (wss_d2.modeling.backbone.vit), PAR and the
pseudo labels (wss_d2.refinement.par), the energy loss (wss_d2.modeling.energy_loss).
The meta-architecture `MCC` (meta_arch.py) with its heads (heads.py), config (config.py) and
optimizer groups (param_groups.py) puts them together.
"""
from . import param_groups  # noqa: F401  (registers mcc_param_groups)
from .config import add_mcc_config
from .heads import ProjectionHead, ema_update
from .losses import (
    IGNORE_INDEX,
    affinity_labels,
    affinity_loss,
    classification_loss,
    mcc_contrast_loss,
    ptc_token_labels,
    segmentation_loss,
    segmentation_loss_halves,
)
from .masks import MCCMasks, block_key_masks, key_policy, mcc_masks, roi_map, view_flags
from .meta_arch import MCC
