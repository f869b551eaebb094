"""
IRN's boundary branch and random walk (Ahn et al., CVPR 2019) as SIPE's VOC pseudo-label
stage uses it (shared/specs/sipe.md §7.2); any CAM method can propagate its maps with it.
"""
from .affinity import affinity_loss, directions, line_paths, pair_affinities, pair_labels, random_walk
from .config import add_irn_config
from .meta_arch import IRNEdge, IRNEdgeHead
