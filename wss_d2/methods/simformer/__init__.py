"""SimFormer: weak-shot semantic segmentation with dual similarity transfer (docs/simformer.md)."""
from .config import add_simformer_config
from .losses import (
    SimilarityNet,
    balanced_similarity_loss,
    complementary_loss,
    distill_loss,
    pair_cosine,
    sample_in_region,
    student_scores,
)
from .meta_arch import SimFormer, SimFormerCriterion
