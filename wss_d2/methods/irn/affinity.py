"""
Inter-pixel affinities from a boundary map, IRN's affinity loss and its random walk over
those affinities (IRN, Ahn et al. CVPR 2019, as SIPE uses it: docs/sipe.md §7.2; the generic
transition and propagation steps are wss_d2.refinement.random_walk). Everything works on the
stride-4 grid.

The affinity of a pixel pair within `radius` is 1 − the largest boundary probability on the
discrete line joining them. Pairs are enumerated by direction: (0, x) for 1 ≤ x < r and
(y, x) for 1 ≤ y < r, −r < x < r with x² + y² < r² (each unordered pair once; 152 directions
for r = 10, 34 for r = 5). Sources are rows [0, H − r'), columns [r', W − r'), r' = ⌈r⌉ − 1.
"""
import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from ...refinement.random_walk import random_walk, transition_matrix

__all__ = [
    "directions",
    "line_paths",
    "pair_affinities",
    "pair_labels",
    "affinity_loss",
    "boundary_affinity_matrix",
    "boundary_transition_matrix",
    "boundary_random_walk",
]


@lru_cache(maxsize=None)
def directions(radius):
    """The (dy, dx) offsets of the module docstring, in a fixed order."""
    r = int(math.ceil(radius))
    result = [(0, x) for x in range(1, r) if x < radius]
    result += [(y, x) for y in range(1, r) for x in range(-r + 1, r) if x * x + y * y < radius * radius]
    return tuple(result)


@lru_cache(maxsize=None)
def line_paths(radius):
    """
    For each direction, the integer points (py, px) of its bounding box whose squared
    perpendicular distance to the line through (0, 0) and (dy, dx) is below 1: the
    discrete path, both end points included.
    """
    paths = []
    for dy, dx in directions(radius):
        points = []
        for py in range(0, dy + 1):
            for px in range(min(0, dx), max(0, dx) + 1):
                if (dx * py - dy * px) ** 2 < dx * dx + dy * dy:
                    points.append((py, px))
        paths.append(tuple(points))
    return tuple(paths)


def _source_region(height, width, radius):
    margin = int(math.ceil(radius)) - 1
    rows, cols = height - margin, width - 2 * margin
    if rows <= 0 or cols <= 0:
        raise ValueError(f"A {height}x{width} grid is too small for affinity radius {radius}")
    return margin, rows, cols


def pair_affinities(boundary, radius):
    """
    (N, D, h', w') affinities for the D directions of `radius`, from boundary probabilities
    (N, H, W) in [0, 1]; source (i, j) of the crop is grid pixel (i, j + r').
    """
    margin, rows, cols = _source_region(boundary.shape[-2], boundary.shape[-1], radius)
    result = []
    for path in line_paths(radius):  # a loop over directions; each is a max of shifted views
        peak = None
        for py, px in path:
            view = boundary[:, py : py + rows, margin + px : margin + px + cols]
            peak = view if peak is None else torch.maximum(peak, view)
        result.append(1 - peak)
    return torch.stack(result, dim=1)


def pair_labels(labels, radius):
    """(source labels (N, 1, h', w'), destination labels (N, D, h', w')) of every pair."""
    margin, rows, cols = _source_region(labels.shape[-2], labels.shape[-1], radius)
    source = labels[:, None, :rows, margin : margin + cols]
    dest = torch.stack(
        [labels[:, dy : dy + rows, margin + dx : margin + dx + cols] for dy, dx in directions(radius)], dim=1
    )
    return source, dest


def _masked_mean(values, mask):
    mask = mask.float()
    return (values * mask).sum() / (mask.sum() + 1e-5)


def affinity_loss(affinities, labels, radius, num_classes, background_class=0):
    """
    IRN's boundary loss (docs/sipe.md §7.2) from pair affinities and a label map on the same grid
    (255 or any value >= num_classes: not a pair): positives (equal labels) should have
    affinity 1, negatives 0; background and foreground positives are averaged separately.
    Returns (loss, {"pos_bg", "pos_fg", "neg"} pair counts).
    """
    source, dest = pair_labels(labels, radius)
    valid = (source < num_classes) & (dest < num_classes)
    positive = valid & (source == dest)
    pos_bg = positive & (source == background_class)
    pos_fg = positive & (source != background_class)
    negative = valid & (source != dest)
    pos_loss = -torch.log(affinities + 1e-5)
    neg_loss = -torch.log(1 + 1e-5 - affinities)
    loss_pos = 0.5 * _masked_mean(pos_loss, pos_bg) + 0.5 * _masked_mean(pos_loss, pos_fg)
    loss_neg = _masked_mean(neg_loss, negative)
    counts = {"pos_bg": int(pos_bg.sum()), "pos_fg": int(pos_fg.sum()), "neg": int(negative.sum())}
    return (loss_pos + loss_neg) / 2, counts



def boundary_affinity_matrix(boundary, radius=5):
    """
    The dense symmetric (n × n, n = H·W) affinity matrix of one (H, W) boundary map, with ones
    on the diagonal: each pair within `radius` gets its pair affinity; pairs reaching outside
    the grid get 0 (IRN pads the boundary map with 1.0).
    """
    height, width = boundary.shape
    n = height * width
    if n * n > 2**31:
        raise MemoryError(f"Random walk on a {height}x{width} grid needs a {n}x{n} matrix; downscale the image")
    pad = int(math.ceil(radius))
    padded = F.pad(boundary[None, None], (pad, pad, 0, pad), value=1.0)[0]
    affinities = pair_affinities(padded, radius)[0]  # D, h', w'
    margin = pad - 1
    index = torch.arange(n, device=boundary.device).view(height, width)
    rows, cols = affinities.shape[-2:]
    # grid coordinates of every source position of the padded crop
    src_y = torch.arange(rows, device=boundary.device)[:, None].expand(rows, cols)
    src_x = torch.arange(cols, device=boundary.device)[None, :].expand(rows, cols) + margin - pad
    matrix = torch.eye(n, device=boundary.device, dtype=boundary.dtype)
    for d, (dy, dx) in enumerate(directions(radius)):
        dst_y, dst_x = src_y + dy, src_x + dx
        inside = (src_y < height) & (src_x >= 0) & (src_x < width) & (dst_y < height) & (dst_x >= 0) & (dst_x < width)
        a = affinities[d][inside]
        src, dst = index[src_y[inside], src_x[inside]], index[dst_y[inside], dst_x[inside]]
        matrix[src, dst] = a
        matrix[dst, src] = a
    return matrix


def boundary_transition_matrix(boundary, radius=5, beta=10.0, exp_times=8):
    """IRN's random-walk transition T^(2^exp_times) of one (H, W) boundary map."""
    return transition_matrix(boundary_affinity_matrix(boundary, radius), beta, exp_times)


def boundary_random_walk(scores, boundary, radius=5, beta=10.0, exp_times=8):
    """
    IRN's propagation of (C, H, W) scores over the (H, W) boundary map (same grid): scores
    × (1 − B), then one multiplication by T^(2^exp_times). Returns (C, H, W).
    """
    transition = boundary_transition_matrix(boundary, radius, beta, exp_times)
    return random_walk(scores * (1 - boundary)[None], transition)
