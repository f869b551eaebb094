"""
SPML segment formation, run once per training iteration on the stride-4 embedding.

1. Clustering features: z = normalize([ê ; w·ℓ (; c)]) with ê the unit embedding, ℓ = (y/(H-1) - 0.5,
   x/(W-1) - 0.5) the pixel position over the whole (padded) crop, w = 1 as in the official code, and c
   an optional extra feature (the smoothed colour of DensePose, `smoothed_color_features`).
2. Batched spherical k-means without gradient: the initial assignment is a G_y x G_x grid over the
   whole padded crop (row cell = round(linspace(0, G_y-1, H)), likewise for columns, id = row + G_y·col);
   all G_y·G_x ids are kept, an empty cluster has a zero centre; 10 iterations of (M-step: centre =
   normalised sum of its z; E-step: argmax_k z·μ_k). Void pixels take no part.
3. A segment is a unique (image, k-means cluster, label value, over-segment region) inside one image;
   it need not be connected. Unlabelled pixels (label in [K, 254]) form their own segments.
4. Per segment: prototype normalize(Σ ê) (gradients flow), the location prototype normalize(Σ z) used
   by the VOC (V) relation, its label (constant inside a segment, so also the majority), its image index,
   its region and its image's tag vector.

Label encoding: 0..K-1 labelled, K..254 unlabelled, 255 void. `unlabeled_as_void=True` treats the
unlabelled pixels as void for the clustering (and thus for (V) and (O)), which reproduces a run on
weak-label files whose unlabelled value is 255.

Everything is batched with scatter/index ops: the only Python loop is over the k-means iterations.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

# the k-means and its per-segment reductions are shared with the pseudo-label generators
from ...modeling.kmeans import (  # noqa: F401
    IGNORE_VALUE,
    NUM_LABEL_VALUES,
    grid_cluster_ids,
    location_features,
    segment_majority,
    segment_prototypes,
    spherical_kmeans,
)


def distance_kernel(size: int = 5) -> torch.Tensor:
    """[size, size] kernel proportional to the distance from the centre (zero centre), summing to 1."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k = torch.sqrt(r[:, None] ** 2 + r[None, :] ** 2)
    return k / k.sum()


def smoothed_color_features(images: torch.Tensor, size: Tuple[int, int], kernel_size: int = 5) -> torch.Tensor:
    """
    DensePose colour feature: the normalised image [B, C, H, W] convolved depthwise without padding
    by `distance_kernel`, resized bilinearly to `size`, then per image and channel centred and
    divided by its maximum absolute value.
    """
    c = images.shape[1]
    weight = distance_kernel(kernel_size).to(images)[None, None].expand(c, 1, kernel_size, kernel_size)
    x = F.conv2d(images, weight, groups=c)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x / x.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)


@dataclass
class Segments:
    """
    Pixel-level fields cover the valid pixels only, in (image, y, x) order; `pixel_index` gives their
    flat position in [B*H*W]. Segment ids are consecutive over the batch and grouped by image.
    """
    pixel_index: torch.Tensor       # [P] long, flat index into B*H*W
    pixel_image: torch.Tensor       # [P] long
    pixel_segment: torch.Tensor     # [P] long, into the segment fields
    pixel_label: torch.Tensor       # [P] long
    pixel_region: torch.Tensor      # [P] long
    pixel_embedding: torch.Tensor   # [P, D] unit ê (with gradient)
    pixel_cluster_feature: torch.Tensor  # [P, D+2(+C)] unit z (with gradient)
    cluster_ids: torch.Tensor       # [B, H, W] k-means ids (-1 on void pixels)
    prototypes: torch.Tensor        # [S, D] normalize(Σ ê)
    cluster_prototypes: torch.Tensor  # [S, D+2(+C)] normalize(Σ z)
    segment_label: torch.Tensor     # [S] long
    segment_image: torch.Tensor     # [S] long
    segment_region: torch.Tensor    # [S] long
    segment_cluster: torch.Tensor   # [S] long
    segment_tags: Optional[torch.Tensor]  # [S, T] float or None
    segment_size: torch.Tensor      # [S] long, pixel count
    aff_prototypes: Optional[torch.Tensor] = None  # [S, D+2(+C)] normalize(Σ normalize([a·ê ; ℓ (; c)]))

    @property
    def num_segments(self) -> int:
        return self.prototypes.shape[0]

    def fields(self):
        """The per-segment fields that are gathered across processes and kept in the memory bank."""
        return {
            "prototypes": self.prototypes,
            "labels": self.segment_label,
            "images": self.segment_image,
            "regions": self.segment_region,
            "tags": self.segment_tags,
            "aff_prototypes": self.aff_prototypes,
        }


def form_segments(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    regions: Optional[torch.Tensor] = None,
    tags: Optional[torch.Tensor] = None,
    grid: Tuple[int, int] = (6, 6),
    iterations: int = 10,
    unlabeled_as_void: bool = False,
    extra_cluster_features: Optional[torch.Tensor] = None,
    location_weight: float = 1.0,
    split_by_label: bool = True,
    ignore_value: int = IGNORE_VALUE,
    affinity_scale: Optional[float] = None,
) -> Segments:
    """
    embeddings [B, D, H, W] raw embedding (normalised here); labels [B, H, W] long at the same
    resolution (nearest-downsampled weak labels); regions [B, H, W] long over-segment ids (None: one
    region); tags [B, T] image tag vectors (foreground classes of the full weak-label map) or None;
    extra_cluster_features [B, C, H, W] appended to the clustering feature (DensePose colour).
    `split_by_label=False` with no regions gives the inference segments (k-means clusters only).
    `affinity_scale` (DensePose feature affinity: 0.1) also computes the affinity prototypes
    normalize(Σ normalize([affinity_scale·ê ; ℓ (; c)])).
    """
    b, d, h, w = embeddings.shape
    device = embeddings.device
    unit = F.normalize(embeddings, dim=1)
    parts = [unit, location_weight * location_features(h, w, device, unit.dtype)[None].expand(b, 2, h, w)]
    if extra_cluster_features is not None:
        parts.append(extra_cluster_features.to(unit.dtype))
    z = F.normalize(torch.cat(parts, dim=1), dim=1)
    c = z.shape[1]
    z_flat = z.permute(0, 2, 3, 1).reshape(b, h * w, c)

    labels = labels.long()
    valid = labels != ignore_value
    if unlabeled_as_void:
        valid &= labels < num_classes
    num_clusters = grid[0] * grid[1]
    init = grid_cluster_ids(h, w, grid[0], grid[1], device).reshape(1, h * w).expand(b, h * w)
    ids = spherical_kmeans(z_flat.detach(), init, valid.reshape(b, h * w), num_clusters, iterations)
    ids = ids.reshape(b, h, w)
    cluster_ids = torch.where(valid, ids, torch.full_like(ids, -1))

    if regions is None:
        regions = torch.zeros_like(labels)
    regions = regions.long()
    pixel_index = valid.reshape(-1).nonzero(as_tuple=True)[0]
    pixel_image = pixel_index // (h * w)
    pixel_cluster = ids.reshape(-1)[pixel_index]
    pixel_label = labels.reshape(-1)[pixel_index]
    pixel_region = regions.reshape(-1)[pixel_index]

    num_regions = int(pixel_region.max().item()) + 1 if pixel_region.numel() else 1
    label_key = pixel_label if split_by_label else torch.zeros_like(pixel_label)
    key = ((pixel_image * num_clusters + pixel_cluster) * NUM_LABEL_VALUES + label_key) * num_regions + pixel_region
    unique_keys, pixel_segment = torch.unique(key, sorted=True, return_inverse=True)
    s = unique_keys.numel()

    segment_region = unique_keys % num_regions
    rest = unique_keys // num_regions
    rest = rest // NUM_LABEL_VALUES
    segment_cluster = rest % num_clusters
    segment_image = rest // num_clusters
    segment_label, _ = segment_majority(pixel_segment, pixel_label, s)
    segment_size = torch.bincount(pixel_segment, minlength=s)

    pixel_embedding = unit.permute(0, 2, 3, 1).reshape(b * h * w, d)[pixel_index]
    pixel_z = z_flat.reshape(b * h * w, c)[pixel_index]
    aff_prototypes = None
    if affinity_scale is not None:
        aff = F.normalize(torch.cat([affinity_scale * unit] + parts[1:], dim=1), dim=1)
        aff = aff.permute(0, 2, 3, 1).reshape(b * h * w, c)[pixel_index]
        aff_prototypes = segment_prototypes(aff, pixel_segment, s)
    return Segments(
        pixel_index=pixel_index,
        pixel_image=pixel_image,
        pixel_segment=pixel_segment,
        pixel_label=pixel_label,
        pixel_region=pixel_region,
        pixel_embedding=pixel_embedding,
        pixel_cluster_feature=pixel_z,
        cluster_ids=cluster_ids,
        prototypes=segment_prototypes(pixel_embedding, pixel_segment, s),
        cluster_prototypes=segment_prototypes(pixel_z, pixel_segment, s),
        segment_label=segment_label,
        segment_image=segment_image,
        segment_region=segment_region,
        segment_cluster=segment_cluster,
        segment_tags=None if tags is None else tags.to(unit.dtype)[segment_image],
        segment_size=segment_size,
        aff_prototypes=aff_prototypes,
    )


def image_tags(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """
    [B, K-1] tag vectors from full (un-augmented) weak-label maps [B, H, W]: t_c = 1 iff foreground class
    c in 1..K-1 occurs; background and values >= K do not count.
    """
    b = labels.shape[0]
    flat = labels.reshape(b, -1).long()
    fg = (flat >= 1) & (flat < num_classes)
    onehot = torch.zeros(b, num_classes, device=labels.device)
    onehot.scatter_(1, torch.where(fg, flat, torch.zeros_like(flat)), fg.float())
    return (onehot[:, 1:] > 0).float()
