"""
SIPE: Self-supervised Image-specific Prototype Exploration (Chen et al., CVPR 2022),
shared/specs/sipe.md. `equations.py` holds the method's per-image computations (§3); the
meta-architecture, backbone, solver and pseudo-label stages build on them.
"""
from .equations import (
    gsc_loss,
    hierarchical_feature,
    image_specific_cams,
    image_specific_prototypes,
    normalized_cams,
    structure_aware_seeds,
)
