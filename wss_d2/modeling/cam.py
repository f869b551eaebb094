"""
Class activation map (CAM) tools shared by the CAM methods (SIPE, IRN's random walk, and the
ViT and pseudo-label methods that follow): normalised CAMs, max-normalisation, the image-tag
inputs of a batch, CAMs written into a (num_classes, H, W) score map, and multi-scale + flip
CAM inference.
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "normalized_cams",
    "max_normalize",
    "min_max_normalize",
    "resize_bicubic",
    "validated_image_labels",
    "foreground_tags",
    "cams_to_class_scores",
    "fuse_flip",
    "multi_scale_cams",
]

EPS = 1e-5


def max_normalize(maps, eps=EPS):
    """Every channel of (..., H, W) maps divided by (its spatial max + eps); differentiable."""
    return maps / (maps.flatten(-2).max(dim=-1).values[..., None, None] + eps)


def min_max_normalize(maps, eps=EPS):
    """Every channel of (..., H, W) maps as (m − min) / (max(m − min) + eps) over its positions."""
    shifted = maps - maps.flatten(-2).min(dim=-1).values[..., None, None]
    return max_normalize(shifted, eps)


def normalized_cams(logits, eps=EPS):
    """
    (N, K+1, h, w) maps from raw logits (N, K, h, w) (docs/sipe.md §3.1): M_c = ReLU(z_c) /
    (max ReLU(z_c) + eps) for every class, and the background M_0 = 1 − max_c M_c over all K
    classes (absent ones included). Differentiable, max-normalisation included.
    """
    cams = max_normalize(F.relu(logits), eps)
    background = 1 - cams.max(dim=1, keepdim=True).values
    return torch.cat([background, cams], dim=1)


def resize_bicubic(image, size):
    """(3, H, W) uint8 tensor resized to `size` (h, w) with PIL bicubic (SIPE's test scales,
    docs/sipe.md §4.3, §11.14)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if image.dtype != torch.uint8:
        raise TypeError(
            f"SIPE resizes uint8 images with PIL bicubic, got a {image.dtype} image of shape "
            f"{tuple(image.shape)}; under TEST.TTA scales set TEST.TTA.ROUND_RESIZED_IMAGE True"
        )
    array = image.permute(1, 2, 0).cpu().numpy()
    resized = Image.fromarray(array).resize((size[1], size[0]), Image.BICUBIC)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


# ----------------------------------------------------------------------------- image tags
def validated_image_labels(input, num_classes, method):
    """
    The mapper's `image_labels` of one input as a flat (num_classes,) tensor (background
    included), or an error naming the image and `method` when they are missing or have the
    wrong length.
    """
    labels = input.get("image_labels")
    name = input.get("file_name", input.get("image_id", "?"))
    if labels is None:
        raise KeyError(
            f"{method} needs image tags ('image_labels') for {name}: train on a tag set (e.g. *_tags) "
            "or evaluate on a split whose mapper provides them"
        )
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.numel() != num_classes:
        raise ValueError(
            f"{method}: image_labels of {name} has {labels.numel()} entries, expected {num_classes} "
            "(MODEL.SEM_SEG_HEAD.NUM_CLASSES, background included)"
        )
    return labels


def foreground_tags(batched_inputs, num_classes, background_class, method, device=None):
    """(N, K) float foreground tags of a batch (the background column dropped), validated."""
    keep = torch.arange(num_classes) != background_class
    tags = [validated_image_labels(x, num_classes, method)[keep].float() for x in batched_inputs]
    return torch.stack(tags).to(device)


# ----------------------------------------------------------------------------- scores
def cams_to_class_scores(
    cams, cam_labels, num_classes, background_class=None, background_score=None
):
    """
    (num_classes, H, W) scores from (C, H, W) maps whose channel i is class `cam_labels[i]`;
    the other classes get 0. When `background_score` is not None and `background_class` is not
    among `cam_labels` (foreground-only CAMs), the background channel is that constant: the
    threshold-like score of a CAM method without a background map. Same dtype and device as
    `cams`.
    """
    labels = torch.as_tensor(cam_labels, dtype=torch.long, device=cams.device).reshape(-1)
    if cams.dim() != 3 or cams.shape[0] != labels.numel():
        raise ValueError(
            f"cams_to_class_scores: {tuple(cams.shape)} maps for {labels.numel()} cam_labels; "
            "expected (len(cam_labels), H, W)"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"cams_to_class_scores: cam_labels {labels.tolist()} outside 0..{num_classes - 1}")
    scores = torch.zeros((num_classes, *cams.shape[-2:]), dtype=cams.dtype, device=cams.device)
    scores[labels] = cams
    if background_score is not None:
        if background_class is None:
            raise ValueError("cams_to_class_scores: a background_score needs its background_class")
        if background_class not in labels.tolist():
            scores[background_class] = background_score
    return scores


# ----------------------------------------------------------------------------- multi-scale + flip
def fuse_flip(maps, mode="sum"):
    """
    (N, C, h, w) maps from a (2N, C, h, w) batch that holds N images and then their N
    horizontal mirrors: each image's maps fused with its mirror's maps flipped back, by
    "sum" or element-wise "max".
    """
    if mode not in ("sum", "max"):
        raise ValueError(f"fuse_flip: mode must be 'sum' or 'max', got {mode!r}")
    n = maps.shape[0] // 2
    original, mirrored = maps[:n], maps[n:].flip(-1)
    return original + mirrored if mode == "sum" else torch.maximum(original, mirrored)


def multi_scale_cams(
    image,
    scales,
    maps_at_scale,
    *,
    resize=resize_bicubic,
    size_rounding=round,
    normalize=max_normalize,
    eps=EPS,
):
    """
    Multi-scale (+ flip) CAMs of an image at its own size.

    For each scale s (in order) the image is resized with `resize(image, (h, w))` to
    h = max(1, int(size_rounding(H·s))) (same for w; the original image is passed as it is
    when the size does not change), `maps_at_scale(resized)` gives its (N, C, h', w')
    unnormalised maps (any stride) with the flip already fused the caller's way, and those
    are upsampled bilinearly (align_corners=False) to (H, W). The scales' maps are summed
    with no per-scale normalisation, and the sum is normalised per channel by
    `normalize(maps, eps)` (max-normalisation by default). Returns (N, C, H, W).

    SIPE (docs/sipe.md §5): scales (1.0, 0.5, 1.5, 2.0), PIL bicubic on the uint8 image with
    round(); the callback normalises the image, runs the image and its mirror as one batch and
    sums their raw logits and hierarchical features inside the network, then returns the
    unnormalised IS-CAM of that scale.
    MCC's CAMs (training-time CAMs and the CAMs of its validation metrics; scales 1.0, 0.5,
    1.5): `resize` is a bilinear (align_corners=False) resize of the float image,
    `size_rounding=math.floor` (int(s·H)); the callback upsamples the CAMs of the image and of
    its mirror to (H, W) first, fuses them with `fuse_flip(..., "max")` and applies ReLU (the
    maps are then at (H, W): no resampling here); `normalize=min_max_normalize` (min-max over
    the whole image, absent classes included, eps 1e-5). MCC's multi-scale segmentation
    logits (scales fused by element-wise max on VOC) are not CAMs and do not use this.
    """
    height, width = image.shape[-2:]
    total = None
    for scale in scales:
        size = tuple(max(1, int(size_rounding(side * scale))) for side in (height, width))
        resized = image if size == (height, width) else resize(image, size)
        maps = maps_at_scale(resized)
        if tuple(maps.shape[-2:]) != (height, width):
            maps = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
        total = maps if total is None else total + maps
    if total is None:
        raise ValueError("multi_scale_cams needs at least one scale")
    return normalize(total, eps)
