"""
Random-walk propagation of class scores over an embedding affinity graph (SPML's stage B,
docs/spml.md §9.3), built on the generic `transition_matrix` / `random_walk`:

1. the embedding of each pass (normal, flipped and flipped back first) is bilinearly resized
   (align_corners=False) to h x w = H//8 x W//8 and L2-normalised once there (from the raw
   embedding when the model gives one; see `walk_embedding`);
2. A_ij = exp(κ(ê_i·ê_j − 1)), κ = 5, averaged over the passes;
3. T = column-normalised A^20 (i.e. exp(100(cos − 1))), squared s times: T^(2^s), s = 6 (64 steps)
   or 0 (one step);
4. P' = P T on the (K, h, w) scores; P' is a convex combination of P, so stays in [min P, max P];
5. P' bilinearly upsampled to the image size.

Memory: the walk holds a few dense n x n float32 matrices, n = h·w. A 500 x 375 image gives
62 x 46 = 2,852 nodes: 32.5 MB per matrix, about 100 MB at the peak of a squaring; a 640 x 640
DensePose input 6,400 nodes, 164 MB per matrix. `MAX_NODES` refuses graphs whose matrices would
exceed 1 GiB each (use a smaller input or a larger stride).
"""
from typing import Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .random_walk import random_walk, transition_matrix

__all__ = ["RW_STRIDE", "MAX_NODES", "walk_size", "walk_embedding", "embedding_affinity", "embedding_random_walk"]

RW_STRIDE = 8
MAX_NODES = 16384  # 16384² fp32 = 1 GiB per matrix


def walk_size(height: int, width: int, stride: int = RW_STRIDE) -> Tuple[int, int]:
    """(H//stride, W//stride), at least 1 x 1: the grid of the walk."""
    return max(height // stride, 1), max(width // stride, 1)


def resize_bilinear(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(C, H, W) maps bilinearly resized (align_corners=False) to `size`; returned as they are at that size."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]


def walk_embedding(embedding: torch.Tensor, size: Sequence[int], flipped: bool = False) -> torch.Tensor:
    """
    (D, h, w) unit embedding of the walk from a pass's (D, H', W') embedding: flipped back first (when
    the pass saw the mirrored image), bilinearly resized to `size`, normalised once. The official code
    resizes the raw embedding; a model that only returns its normalised embedding (the SPMLEmbedder
    contract's "embedding") gives normalize(resize(ê)) instead, which differs where ê turns quickly.
    """
    if flipped:
        embedding = embedding.flip(-1)
    return F.normalize(resize_bilinear(embedding.float(), size), dim=0)


def embedding_affinity(embeddings: Iterable[torch.Tensor], concentration: float = 5.0) -> torch.Tensor:
    """(n, n) mean over the passes of exp(κ(ê_i·ê_j − 1)), for unit (D, h, w) embeddings of one grid."""
    total, count = None, 0
    for unit in embeddings:
        flat = unit.reshape(unit.shape[0], -1).float()
        if flat.shape[1] > MAX_NODES:
            raise ValueError(
                f"embedding_affinity: {flat.shape[1]} nodes (grid {tuple(unit.shape[-2:])}) exceed MAX_NODES "
                f"{MAX_NODES}: the dense {flat.shape[1]}² matrices would not fit; use a smaller input"
            )
        affinity = torch.exp(concentration * (flat.t() @ flat - 1))
        total = affinity if total is None else total + affinity
        count += 1
    if count == 0:
        raise ValueError("embedding_affinity: no embedding given")
    return total / count


def embedding_random_walk(scores: torch.Tensor, embeddings: Iterable[torch.Tensor], *, exp_times: int = 6,
                          beta: float = 20.0, concentration: float = 5.0,
                          output_size: Optional[Sequence[int]] = None) -> torch.Tensor:
    """
    (K, h, w) scores walked over the affinity of the unit (D, h, w) `embeddings` (one per pass, on the
    scores' grid): P T^(2^exp_times), T the column-normalised A^beta; bilinearly upsampled to
    `output_size` when given.
    """
    affinity = embedding_affinity(embeddings, concentration)
    if affinity.shape[0] != scores.shape[-2] * scores.shape[-1]:
        raise ValueError(f"embedding_random_walk: scores {tuple(scores.shape)} and an affinity of "
                         f"{affinity.shape[0]} nodes are not on one grid")
    walked = random_walk(scores.float(), transition_matrix(affinity, beta=beta, exp_times=exp_times))
    return walked if output_size is None else resize_bilinear(walked, output_size)
