"""
SPML: universal weakly supervised segmentation by pixel-to-segment contrastive learning (Ke et al.,
ICLR 2021). `segments.py` the per-iteration segment formation (spherical k-means on [ê ⊕ xy], split by over-segment
and weak label, prototypes), `losses.py` the pixel-to-segment contrastive loss and its relations
(V, C, O, A) with the per-setting weights, `memory.py` the cross-process segment gather and the prototype
memory bank; `config.py` the MODEL.SPML keys,
`heads.py` the classifier head, `meta_arch.py` the registered SPMLEmbedder (stage A) and SPMLClassifier
(stage C/T), `param_groups.py` the registered `spml_param_groups`. The embedding heads
(SPMLASPPv2SumHead, SPMLPSPEmbedHead), k-means and the block-dilated backbone live in wss_d2/modeling;
k-NN segment retrieval, the embedding random walk and the stage-B generators in wss_d2/refinement.
"""
from .segments import (
    Segments,
    form_segments,
    grid_cluster_ids,
    image_tags,
    location_features,
    segment_majority,
    segment_prototypes,
    smoothed_color_features,
    spherical_kmeans,
)
from .losses import (
    SPML_SETTINGS,
    SPMLCandidates,
    feature_affinity_label_sets,
    feature_affinity_loss,
    group_mean,
    image_similarity_loss,
    pixel_segment_contrastive_loss,
    relation_masks,
    semantic_annotation_loss,
    semantic_cooccurrence_loss,
    spml_total_loss,
)
from .memory import PrototypeMemoryBank, append_memory, gather_segments
from .config import add_spml_config
from .heads import SPMLClassifierHead
from .meta_arch import SPMLClassifier, SPMLEmbedder
from .param_groups import spml_param_groups
