"""
AGMM: sparsely annotated semantic segmentation with adaptive Gaussian mixtures (Wu et al.,
CVPR 2023), docs/agmm.md. `gmm.py` holds the equations (centroids, distances, GMM
predictions, the five losses), `meta_arch.py` the registered meta-architecture,
`backbone.py` the deep-stem output-stride-8 ResNet with per-block dilations, `config.py`
its keys. The head is wss_d2's DeepLabV3+ as DeepLabV3PlusFeatureHead (feature + logits).
"""
from .backbone import build_agmm_resnet_backbone
from .config import add_agmm_config
from .gmm import (
    absent_class_loss,
    centroid_repulsion_loss,
    class_centroids,
    gmm_predictions,
    gmm_to_prediction_loss,
    l1_distances,
    labels_to_gmm_loss,
    partial_cross_entropy,
)
from .meta_arch import AGMM
