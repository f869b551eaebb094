"""
Pseudo-label refinement shared by the methods that turn localisation maps or segmentation
scores into training labels: scores → probabilities (tag restriction, argmax with a
threshold), dense-CRF label generators over a `DenseCRFPool` (CRF-then-argmax, SIPE's
confident regions), IRN's random walk, and the quality of pseudo labels against the GT.
The CRF engine itself is wss_d2.inference.crf.
"""
from .confident_regions import combine_confident_regions, ir_label_jobs
from .crf_labels import argmax_labels, confident_region_labels, confident_region_pool
from .probabilities import SOURCES, argmax_with_threshold, restrict_to_tags, scores_to_probabilities
from .quality import PseudoLabelQuality
from .random_walk import random_walk, transition_matrix

__all__ = [
    "SOURCES",
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
]
