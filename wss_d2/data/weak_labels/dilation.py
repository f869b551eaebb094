"""
Dilation of sparse label maps (docs/spml.md §3.3, §3.4): SPML trains on scribbles dilated
by a 3×3 square and on points dilated by a 6×6 square, so that thin labels survive the
stride-4 subsampling of the embedding.
"""
import cv2
import numpy as np

__all__ = ["dilate_sparse_labels"]


def dilate_sparse_labels(sparse, size, num_classes):
    """
    Dilate the labelled pixels (< num_classes) of an (H, W) sparse map with a size×size square
    (cv2.dilate; an even size extends one pixel further down/right than up/left). Labels grow
    into unlabelled pixels (K..254) only: labelled and void (255) pixels keep their value.
    Where the squares of two classes meet, the larger class id wins (a grey-level dilation of
    class + 1). size <= 1 returns the map unchanged.
    """
    if size is None or size <= 1:
        return sparse
    sparse = np.asarray(sparse)
    labelled = sparse < num_classes
    if not labelled.any():
        return sparse
    coded = np.where(labelled, sparse.astype(np.int32) + 1, 0).astype(np.uint8)
    grown = cv2.dilate(coded, np.ones((int(size), int(size)), np.uint8))
    out = sparse.copy()
    unlabelled = (sparse >= num_classes) & (sparse != 255)
    fill = unlabelled & (grown > 0)
    out[fill] = (grown[fill] - 1).astype(sparse.dtype)
    return out
