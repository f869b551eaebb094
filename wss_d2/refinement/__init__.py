"""
Pseudo-label refinement shared by the methods that turn localisation maps or segmentation
scores into training labels: scores → probabilities (tag restriction, argmax with a
threshold), dense-CRF label generators over a `DenseCRFPool` (CRF-then-argmax, SIPE's
confident regions), stage-A labels from CAMs for tags and boxes, the generic random-walk
steps (used by IRN's boundary walk and SPML's embedding walk), k-NN segment retrieval, SPML's
stage-B generators (docs/spml.md §9), and the quality of pseudo labels against the GT.
The CRF engine itself is wss_d2.inference.crf.
"""
from .cam_labels import box_cam_labels, tag_cam_labels
from .confident_regions import combine_confident_regions, ir_label_jobs
from .crf_labels import argmax_labels, confident_region_labels, confident_region_pool
from .probabilities import SOURCES, argmax_with_threshold, restrict_to_tags, scores_to_probabilities
from .quality import PseudoLabelQuality
from .random_walk import random_walk, transition_matrix
from .embedding_walk import embedding_affinity, embedding_random_walk, walk_embedding
from .knn import build_segment_memory, knn_segment_retrieval, knn_vote
from .par import PAR, add_par_config, fuse_two_threshold_labels, par_image, refine_cams_with_background
from .weak_shot import weak_shot_pseudo_label
from .spml_generators import (
    SPML_SOURCES, build_knn_memory, cam_rw_probabilities, crf_pseudo_labels, densepose_nn_probabilities,
    knn_probabilities, softmax_rw1_probabilities, softmax_rw_probabilities, spml_crf_pool, spml_probabilities,
)

__all__ = [
    "SOURCES",
    "weak_shot_pseudo_label",
    "scores_to_probabilities",
    "restrict_to_tags",
    "argmax_with_threshold",
    "ir_label_jobs",
    "combine_confident_regions",
    "argmax_labels",
    "confident_region_labels",
    "confident_region_pool",
    "PseudoLabelQuality",
    "random_walk",
    "transition_matrix",
    "tag_cam_labels",
    "box_cam_labels",
    "embedding_affinity",
    "embedding_random_walk",
    "walk_embedding",
    "build_segment_memory",
    "knn_segment_retrieval",
    "knn_vote",
    "SPML_SOURCES",
    "softmax_rw_probabilities",
    "softmax_rw1_probabilities",
    "cam_rw_probabilities",
    "build_knn_memory",
    "knn_probabilities",
    "densepose_nn_probabilities",
    "spml_probabilities",
    "spml_crf_pool",
    "crf_pseudo_labels",
]
