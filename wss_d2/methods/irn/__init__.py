"""
IRN's boundary branch and random walk (Ahn et al., CVPR 2019) as SIPE's VOC pseudo-label
stage uses it (docs/sipe.md §7.2); any CAM method can propagate its maps with it.
"""
from .affinity import (
    affinity_loss,
    boundary_affinity_matrix,
    boundary_random_walk,
    boundary_transition_matrix,
    directions,
    line_paths,
    pair_affinities,
    pair_labels,
)
from .config import add_irn_config
from .head import IRNEdgeHead
from .meta_arch import IRNEdge
