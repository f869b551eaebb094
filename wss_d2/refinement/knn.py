"""
k-NN segment retrieval (SegSort inference, docs/spml.md §9.2): a pseudo-label generator that labels
the segments of a query image by the labels of their nearest segments in a memory of labelled images.

Memory: each memory image's embedding is clustered by spherical k-means on [ê ⊕ xy] with the inference
grid (VOC 12 x 12, DensePose 24 x 24; 10 iterations) over the whole map, without over-segmentation or label
split; a segment's prototype is the normalised mean of ê and its label the majority value of the
(pseudo-)label map inside it. Only segments whose majority is void (255) are dropped: segments whose
majority is an unlabelled value (K..254) stay, with that value as label.

Query: the query image is clustered the same way; each segment takes the majority vote of the labels of
its k = 20 most similar memory prototypes (cosine; ties go to the lowest label); the pixels inherit it.
The soft variant returns the vote histogram / k as class scores. A query image that yields a single
segment (or a memory smaller than k) is handled: k is capped at the memory size and nothing divides by
the number of segments.

Memory bound: the k-means E-step holds a [B, H·W, G²] similarity; with the 12 x 12 grid a 500 x 375 image
takes 108 MB in fp32 at scale 1, 243 MB at scale 1.5 and 432 MB at scale 2 (plus the [B, H·W, D+2]
features); the retrieval holds a [chunk, M] similarity.
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from ..modeling.kmeans import (
    IGNORE_VALUE,
    NUM_LABEL_VALUES,
    grid_cluster_ids,
    location_features,
    segment_majority,
    segment_prototypes,
    spherical_kmeans,
)

__all__ = ["DEFAULT_K", "InferenceSegments", "image_segments", "build_segment_memory", "knn_vote",
           "knn_segment_retrieval"]

DEFAULT_K = 20


class InferenceSegments(NamedTuple):
    """k-means segments of a batch: every pixel belongs to one (segment ids consecutive, grouped by image)."""
    pixel_segment: torch.Tensor  # [B*H*W] long
    prototypes: torch.Tensor     # [S, D] normalize(Σ ê)
    segment_label: torch.Tensor  # [S] majority of the labels (0 without labels)
    segment_image: torch.Tensor  # [S] long
    cluster_ids: torch.Tensor    # [B, H, W] k-means ids in [0, G²)


@torch.no_grad()
def image_segments(embeddings: torch.Tensor, labels: Optional[torch.Tensor] = None, grid=(12, 12),
                   iterations: int = 10, location_weight: float = 1.0) -> InferenceSegments:
    """
    Inference segments of [B, D, H, W] embeddings (raw or unit; normalised here): the k-means clusters of
    normalize([ê ; ℓ]) with the grid over the whole map; every pixel takes part, labels [B, H, W] only vote.
    """
    b, d, h, w = embeddings.shape
    device = embeddings.device
    unit = F.normalize(embeddings.float(), dim=1)
    loc = location_weight * location_features(h, w, device, unit.dtype)[None].expand(b, 2, h, w)
    z = F.normalize(torch.cat([unit, loc], dim=1), dim=1).permute(0, 2, 3, 1).reshape(b, h * w, d + 2)
    num_clusters = grid[0] * grid[1]
    init = grid_cluster_ids(h, w, grid[0], grid[1], device).reshape(1, h * w).expand(b, h * w)
    valid = torch.ones(b, h * w, dtype=torch.bool, device=device)
    ids = spherical_kmeans(z, init, valid, num_clusters, iterations)
    key = (torch.arange(b, device=device)[:, None] * num_clusters + ids).reshape(-1)
    unique_keys, pixel_segment = torch.unique(key, sorted=True, return_inverse=True)
    s = unique_keys.numel()
    if labels is None:
        segment_label = torch.zeros(s, dtype=torch.long, device=device)
    else:
        segment_label, _ = segment_majority(pixel_segment, labels.long().reshape(-1), s)
    prototypes = segment_prototypes(unit.permute(0, 2, 3, 1).reshape(b * h * w, d), pixel_segment, s)
    return InferenceSegments(pixel_segment, prototypes, segment_label, unique_keys // num_clusters,
                             ids.reshape(b, h, w))


@torch.no_grad()
def build_segment_memory(embeddings: torch.Tensor, labels: torch.Tensor, grid=(12, 12), iterations: int = 10,
                         ignore_value: int = IGNORE_VALUE) -> Tuple[torch.Tensor, torch.Tensor]:
    """Memory (prototypes [M, D], labels [M]) of a batch of images [B, D, H, W] with label maps [B, H, W]."""
    segs = image_segments(embeddings, labels.long(), grid, iterations)
    keep = segs.segment_label != ignore_value
    return segs.prototypes[keep], segs.segment_label[keep]


@torch.no_grad()
def knn_vote(query: torch.Tensor, memory: torch.Tensor, memory_labels: torch.Tensor, k: int = DEFAULT_K,
             num_values: int = NUM_LABEL_VALUES, chunk_size: int = 4096) -> Tuple[torch.Tensor, torch.Tensor]:
    """Majority label [Q] (ties: lowest) and vote histogram [Q, num_values] / k of the top-k memory prototypes."""
    if memory.shape[0] == 0:
        raise ValueError("knn_vote: the memory is empty (every memory segment was void)")
    k = min(k, memory.shape[0])
    labels, hists = [], []
    for start in range(0, query.shape[0], chunk_size):
        sim = query[start:start + chunk_size].float() @ memory.float().t()
        idx = sim.topk(k, dim=1).indices
        hist = torch.zeros(idx.shape[0], num_values, device=query.device)
        hist.scatter_add_(1, memory_labels[idx].long(), torch.ones_like(idx, dtype=hist.dtype))
        labels.append(hist.argmax(dim=1))
        hists.append(hist / k)
    return torch.cat(labels), torch.cat(hists)


@torch.no_grad()
def knn_segment_retrieval(embeddings: torch.Tensor, memory: torch.Tensor, memory_labels: torch.Tensor,
                          num_classes: int, k: int = DEFAULT_K, grid=(12, 12), iterations: int = 10):
    """
    Labels [B, H, W] and soft class scores [B, K, H, W] (votes for classes 0..K-1 / k; votes for
    unlabelled memory segments count in k but in no class) of query images [B, D, H, W] by k-NN
    retrieval of their segments in the memory.
    """
    b, _, h, w = embeddings.shape
    segs = image_segments(embeddings, None, grid, iterations)
    seg_labels, hist = knn_vote(segs.prototypes, memory, memory_labels, k)
    labels = seg_labels[segs.pixel_segment].reshape(b, h, w)
    scores = hist[:, :num_classes][segs.pixel_segment].reshape(b, h, w, num_classes).permute(0, 3, 1, 2)
    return labels, scores
