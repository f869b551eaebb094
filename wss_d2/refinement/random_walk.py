"""
Random-walk propagation of class scores over a dense affinity graph (IRN's boundary affinities,
docs/sipe.md §7.2; other methods' feature affinities): the transition matrix from a symmetric
affinity matrix, then one multiplication of the scores. Building the affinities is the
method's part (e.g. wss_d2.methods.irn.affinity.boundary_affinity_matrix).
"""
import torch

__all__ = ["transition_matrix", "random_walk"]


def transition_matrix(affinity: torch.Tensor, beta: float = 10.0, exp_times: int = 8) -> torch.Tensor:
    """
    T^(2^exp_times) of a dense symmetric (n, n) affinity matrix: raised to β element-wise,
    column-normalised, then squared exp_times times.
    """
    matrix = affinity.pow(beta)
    matrix = matrix / matrix.sum(dim=0, keepdim=True)
    for _ in range(exp_times):
        matrix = matrix @ matrix
    return matrix


def random_walk(scores: torch.Tensor, transition: torch.Tensor) -> torch.Tensor:
    """(C, H, W) scores propagated by an (H·W, H·W) transition matrix: scores · T, as (C, H, W)."""
    channels, height, width = scores.shape
    return (scores.reshape(channels, -1) @ transition).reshape(channels, height, width)
