"""
SPML's k-NN segment retrieval (SegSort inference).

Memory: each training image's embedding is clustered by spherical k-means on [ê ⊕ xy] with the inference
grid (VOC 12 x 12, DensePose 24 x 24; 10 iterations) over the whole map, without over-segmentation or label
split; a segment's prototype is the normalised mean of ê and its label the majority value of the
(pseudo-)label map inside it. Only segments whose majority is void (255) are dropped: segments whose
majority is an unlabelled value (K..254) stay, with that value as label.

Query: the query image is clustered the same way; each segment takes the majority vote of the labels of
its k = 20 most similar memory prototypes (cosine; ties go to the lowest label); the pixels inherit it.
The soft variant returns the vote histogram / k as class scores. A query image that yields a single
segment (or a memory smaller than k) is handled: k is capped at the memory size and nothing divides by
the number of segments.
"""
from typing import Optional, Tuple

import torch

from .segments import IGNORE_VALUE, NUM_LABEL_VALUES, form_segments

DEFAULT_K = 20


def image_segments(embeddings: torch.Tensor, labels: Optional[torch.Tensor] = None, grid=(12, 12), iterations: int = 10):
    """Inference segments (k-means clusters only) of [B, D, H, W]; every pixel takes part (labels only vote)."""
    b, _, h, w = embeddings.shape
    if labels is None:
        labels = torch.zeros(b, h, w, dtype=torch.long, device=embeddings.device)
    return form_segments(embeddings, labels, num_classes=NUM_LABEL_VALUES, grid=grid, iterations=iterations,
                         split_by_label=False, ignore_value=-1)


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
    Labels [B, H, W] and soft class scores [B, K, H, W] of query images [B, D, H, W] by k-NN retrieval
    of their segments in the memory.
    """
    b, _, h, w = embeddings.shape
    segs = image_segments(embeddings, None, grid, iterations)
    seg_labels, hist = knn_vote(segs.prototypes, memory, memory_labels, k)
    labels = seg_labels[segs.pixel_segment].reshape(b, h, w)
    scores = hist[:, :num_classes][segs.pixel_segment].reshape(b, h, w, num_classes).permute(0, 3, 1, 2)
    return labels, scores
