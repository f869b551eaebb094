"""
Straightforward forms of two of AGMM's equations, as the released code writes them: the
upsample-then-average class centroids and the broadcast (B, K, C, h, w) L1 distance.

These are references for the tests (tests/test_agmm_equations.py checks the memory-bounded
forms in `wss_d2.methods.agmm.gmm` against them) and for the memory benchmark
(tools/benchmark_agmm.py). They are not API: the model never calls them.
"""
import torch
import torch.nn.functional as F

from .gmm import EPS

__all__ = ["class_centroids_naive", "l1_distances_naive"]


def class_centroids_naive(features, labels, num_classes):
    """Reference form of `gmm.class_centroids`: upsample F to the label size, then average."""
    up = F.interpolate(features, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    onehot = torch.stack([(labels == k).to(features.dtype) for k in range(num_classes)], dim=1)
    counts = onehot.sum(dim=(2, 3))
    sums = torch.einsum("bkhw,bchw->bkc", onehot, up)
    return sums / (counts[..., None] + EPS), (counts > 0).to(features.dtype)


def l1_distances_naive(features, centroids):
    """Reference form of `gmm.l1_distances`, with the (B, K, C, h, w) broadcast tensor."""
    return (features[:, None] - centroids[..., None, None]).abs().mean(dim=2)
