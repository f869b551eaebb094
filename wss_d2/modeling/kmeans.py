"""
Batched spherical k-means with a grid initialisation, and the per-segment reductions over its
clusters (majority label, normalised prototype). Shared by SPML's training segments
(wss_d2.methods.spml.segments, docs/spml.md §6) and the k-NN / nearest-prototype pseudo-label
generators (wss_d2.refinement.knn, docs/spml.md §9.2, §9.4).

Everything is batched with scatter / index ops; the only Python loop is over the k-means iterations.
"""
import torch
import torch.nn.functional as F

__all__ = [
    "IGNORE_VALUE",
    "NUM_LABEL_VALUES",
    "grid_cluster_ids",
    "location_features",
    "spherical_kmeans",
    "segment_majority",
    "segment_prototypes",
]

IGNORE_VALUE = 255
NUM_LABEL_VALUES = 256


def grid_cluster_ids(height: int, width: int, grid_y: int, grid_x: int, device=None) -> torch.Tensor:
    """[H, W] initial cluster ids of a grid laid over the whole H x W map (padding included)."""
    rows = torch.round(torch.linspace(0, grid_y - 1, height, device=device)).long()
    cols = torch.round(torch.linspace(0, grid_x - 1, width, device=device)).long()
    return rows[:, None] + grid_y * cols[None, :]


def location_features(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[2, H, W] pixel positions (y/(H-1) - 0.5, x/(W-1) - 0.5) in [-0.5, 0.5]."""
    ys = torch.arange(height, device=device, dtype=dtype) / max(height - 1, 1) - 0.5
    xs = torch.arange(width, device=device, dtype=dtype) / max(width - 1, 1) - 0.5
    return torch.stack([ys[:, None].expand(height, width), xs[None, :].expand(height, width)])


@torch.no_grad()
def spherical_kmeans(
    features: torch.Tensor, init_ids: torch.Tensor, valid: torch.Tensor, num_clusters: int, iterations: int = 10
) -> torch.Tensor:
    """
    Batched spherical k-means, each image on its own.
    features [B, N, C] unit vectors, init_ids [B, N] in [0, num_clusters), valid [B, N] bool.
    Returns [B, N] cluster ids (those of invalid pixels are meaningless; they never enter a centre).
    Peak memory: the [B, N, num_clusters] similarity of the E-step.
    """
    b, n, c = features.shape
    ids = init_ids.clone()
    offsets = (torch.arange(b, device=features.device) * num_clusters)[:, None]
    flat = features.reshape(b * n, c)
    w = valid.reshape(b * n, 1).to(features.dtype)
    for _ in range(iterations):
        sums = features.new_zeros(b * num_clusters, c).index_add_(0, (ids + offsets).reshape(-1), flat * w)
        centres = F.normalize(sums, dim=1).reshape(b, num_clusters, c)  # empty cluster -> zero centre
        ids = torch.bmm(features, centres.transpose(1, 2)).argmax(dim=2)
    return ids


def segment_majority(segment_ids: torch.Tensor, values: torch.Tensor, num_segments: int, num_values: int = NUM_LABEL_VALUES):
    """Per-segment majority of integer `values` (ties go to the lowest value). Returns ([S] values, [S, V] counts)."""
    counts = torch.zeros(num_segments * num_values, dtype=torch.long, device=values.device)
    counts.index_add_(0, segment_ids * num_values + values, torch.ones_like(values))
    counts = counts.reshape(num_segments, num_values)
    return counts.argmax(dim=1), counts


def segment_prototypes(features: torch.Tensor, segment_ids: torch.Tensor, num_segments: int) -> torch.Tensor:
    """[S, C] normalised sums of the [P, C] pixel features per segment (differentiable)."""
    sums = features.new_zeros(num_segments, features.shape[1]).index_add(0, segment_ids, features)
    return F.normalize(sums, dim=1)
