"""
PAR, the pixel-adaptive refinement of AFA / ToCo that MCC uses to turn CAMs into segmentation
pseudo labels (docs/mcc.md §6), and the two-threshold pseudo-label procedure built on it.

PAR propagates score maps over a fixed dilated neighbourhood (48 neighbours: the 8 outer taps of
a 3x3 stencil at dilations 1, 2, 4, 8, 12, 24) with a kernel that mixes a colour affinity
(normalised by the local colour spread) and a small, image-independent position term.
Everything is plain torch and differentiable, but it is used under no_grad.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable

__all__ = [
    "PAR",
    "add_par_config",
    "par_offsets",
    "par_image",
    "box_mask",
    "refine_cams_with_background",
    "fuse_two_threshold_labels",
]

CONFIG_NODE = "MODEL.MCC.PAR"


def add_par_config(node):
    """Set the keys `PAR.from_config` reads on a config node (docs/mcc.md §6, §14.6)."""
    # dilations of the 8-neighbour 3x3 stencil; 6 rings give 48 neighbours
    node.DILATIONS = [1, 2, 4, 8, 12, 24]
    # propagation steps m <- sum_n kappa_n m(p + offset_n)
    node.ITERS = 10
    # temperature of the colour and position affinities, a = -(|dx| / std / W1)^2
    node.W1 = 0.3
    # weight of the position softmax added to the colour softmax (kernel sums to 1 + W2)
    node.W2 = 0.01
    # PAR runs at crop size // DOWNSCALE (448 -> 224)
    node.DOWNSCALE = 2


def par_offsets(dilations: Sequence[int]) -> torch.Tensor:
    """
    (8·len(dilations), 2) integer (dy, dx) offsets: for every dilation d the 3x3 stencil at
    spacing d without its centre, i.e. (±d, ±d), (±d, 0), (0, ±d).
    """
    ring = torch.tensor([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)])
    return torch.cat([ring * int(d) for d in dilations], dim=0)


def _neighbours(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """
    (B, C, N, H, W) values of x (B, C, H, W) at p + offset_n for the N offsets, with replicate
    padding (coordinates clamped to the image), as one gather.
    """
    h, w = x.shape[-2:]
    offsets = offsets.to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + offsets[:, :1]).clamp_(0, h - 1)  # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] + offsets[:, 1:]).clamp_(0, w - 1)  # (N, W)
    return x[:, :, rows[:, :, None], cols[:, None, :]]


class PAR(nn.Module):
    """
    Pixel-adaptive refinement (docs/mcc.md §6). For every pixel p and neighbour n:

        a_n = mean_c −( |x_c(p+o_n) − x_c(p)| / (std_n x_c(p+o_n) + 1e-8) / w1 )²
        b_n = −( δ_n / std(δ) / w1 )²,  δ_n = d (axis) or √2·d (diagonal)
        κ_n = softmax_n(a)_n + w2 · softmax_n(b)_n          (sums to 1 + w2, not renormalised)

    (std is the unbiased std over the neighbours), then `num_iter` times
    m(p) ← Σ_n κ_n(p) · m(p + o_n) with replicate padding and no centre term.
    """

    @configurable
    def __init__(
        self,
        *,
        dilations: Sequence[int] = (1, 2, 4, 8, 12, 24),
        num_iter: int = 10,
        w1: float = 0.3,
        w2: float = 0.01,
    ):
        """
        Args:
            dilations: spacings of the 8-neighbour stencil (positive ints).
            num_iter: number of propagation steps (>= 0).
            w1: temperature of both affinities.
            w2: weight of the position softmax.
        """
        super().__init__()
        dilations = [int(d) for d in dilations]
        if not dilations or min(dilations) < 1:
            raise ValueError(f"PAR: dilations must be positive integers, got {dilations}")
        if num_iter < 0:
            raise ValueError(f"PAR: num_iter must be >= 0, got {num_iter}")
        if not w1 > 0:
            raise ValueError(f"PAR: w1 must be > 0, got {w1}")
        self.dilations = tuple(dilations)
        self.num_iter = int(num_iter)
        self.w1 = float(w1)
        self.w2 = float(w2)
        offsets = par_offsets(self.dilations)
        self.register_buffer("offsets", offsets, persistent=False)
        # the position term does not depend on the image: one softmax over the neighbours
        distance = offsets.double().norm(dim=1)
        position = -(distance / distance.std() / self.w1) ** 2
        self.register_buffer("position_weights", position.softmax(0).float(), persistent=False)

    @classmethod
    def from_config(cls, cfg, node: str = CONFIG_NODE):
        """Read `<node>.{DILATIONS, ITERS, W1, W2}` (default MODEL.MCC.PAR, see `add_par_config`)."""
        par = cfg
        for name in node.split("."):
            par = par[name]
        return {"dilations": list(par.DILATIONS), "num_iter": par.ITERS, "w1": par.W1, "w2": par.W2}

    def extra_repr(self) -> str:
        return f"dilations={self.dilations}, num_iter={self.num_iter}, w1={self.w1}, w2={self.w2}"

    def kernel(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, H, W) propagation weights κ of (B, 3, H, W) images (N = 8·len(dilations))."""
        if images.dim() != 4:
            raise ValueError(f"PAR: images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        images = images.float()
        neighbours = _neighbours(images, self.offsets)  # (B, 3, N, H, W)
        spread = neighbours.std(dim=2, keepdim=True)  # unbiased, per pixel and channel
        colour = -((neighbours - images[:, :, None]).abs() / (spread + 1e-8) / self.w1) ** 2
        colour = colour.mean(dim=1).softmax(dim=1)  # average the channels, softmax over neighbours
        return colour + self.w2 * self.position_weights.to(colour)[None, :, None, None]

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """
        Args:
            images: (B, 3, H, W) float images (MCC: the [0, 1] main view at half resolution).
            masks: (B, C, h, w) score maps; resized to (H, W) with bilinear align_corners=True
                (an identity when h, w = H, W).
        Returns:
            (B, C, H, W) refined maps.
        """
        if images.dim() != 4 or masks.dim() != 4:
            raise ValueError(
                f"PAR: images (B, 3, H, W) and masks (B, C, h, w) must be 4-d, got images "
                f"{tuple(images.shape)} and masks {tuple(masks.shape)}"
            )
        if images.shape[0] != masks.shape[0]:
            raise ValueError(
                f"PAR: images {tuple(images.shape)} and masks {tuple(masks.shape)} differ in batch size"
            )
        kappa = self.kernel(images)  # (B, N, H, W), shared by all channels
        masks = masks.to(kappa.dtype)
        if masks.shape[-2:] != images.shape[-2:]:
            masks = F.interpolate(masks, size=images.shape[-2:], mode="bilinear", align_corners=True)
        for _ in range(self.num_iter):
            masks = self._propagate(masks, kappa)
        return masks

    def _propagate(self, masks: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
        """One step Σ_n κ_n · m(p + o_n): accumulated offset by offset so that memory stays at
        one (B, C, H, W) map (a (B, C, N, H, W) stack would be 48x larger)."""
        h, w = masks.shape[-2:]
        pad = max(self.dilations)
        padded = F.pad(masks, [pad] * 4, mode="replicate")  # replicate = clamped coordinates
        out = torch.zeros_like(masks)
        for n, (dy, dx) in enumerate(self.offsets.tolist()):
            shifted = padded[:, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
            out.addcmul_(shifted, kappa[:, n : n + 1])
        return out


def par_image(
    normalized: torch.Tensor, pixel_mean: Sequence[float], pixel_std: Sequence[float]
) -> torch.Tensor:
    """
    The (B, 3, H, W) [0, 1] image PAR sees (docs/mcc.md §6 step 1): the normalised view mapped
    back with x·std + mean, cast to uint8 by truncation (not rounding, so values a hair below an
    integer drop by one, as in the original) and divided by 255.
    """
    if normalized.dim() != 4 or normalized.shape[1] != 3:
        raise ValueError(f"par_image: expected (B, 3, H, W) normalised images, got {tuple(normalized.shape)}")
    mean = torch.as_tensor(pixel_mean, dtype=normalized.dtype, device=normalized.device).view(1, 3, 1, 1)
    std = torch.as_tensor(pixel_std, dtype=normalized.dtype, device=normalized.device).view(1, 3, 1, 1)
    # uint8 cast: truncation toward zero; values outside [0, 255] would wrap, so clamp first
    return (normalized * std + mean).clamp(0, 255).to(torch.uint8).float() / 255.0


def fuse_two_threshold_labels(
    label_high: torch.Tensor, label_low: torch.Tensor, ignore_index: int = 255
) -> torch.Tensor:
    """
    Final pseudo label from the high- and low-background label maps (docs/mcc.md §6 step 6):
    foreground of the high map wins; background in both is background; background in the high
    map but foreground in the low one is `ignore_index`; `ignore_index` in either stays ignored.
    """
    if label_high.shape != label_low.shape:
        raise ValueError(
            f"fuse_two_threshold_labels: label_high {tuple(label_high.shape)} and label_low "
            f"{tuple(label_low.shape)} differ in shape"
        )
    fused = label_high.clone()
    fused[label_high == 0] = ignore_index
    fused[(label_high == 0) & (label_low == 0)] = 0
    fused[(label_high == ignore_index) | (label_low == ignore_index)] = ignore_index
    return fused


def box_mask(boxes: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(B, H, W) bool, True inside each [h0, h1, w0, w1) pixel box of `boxes` (B, 4)."""
    h, w = size
    rows = torch.arange(h, device=boxes.device)
    cols = torch.arange(w, device=boxes.device)
    inside_rows = (rows[None] >= boxes[:, 0:1]) & (rows[None] < boxes[:, 1:2])
    inside_cols = (cols[None] >= boxes[:, 2:3]) & (cols[None] < boxes[:, 3:4])
    return inside_rows[:, :, None] & inside_cols[:, None, :]


@torch.no_grad()
def refine_cams_with_background(
    par: PAR,
    images: torch.Tensor,
    cams: torch.Tensor,
    cls_labels: torch.Tensor,
    img_boxes: torch.Tensor,
    *,
    high_thre: float,
    low_thre: float,
    down_scale: int = 2,
    ignore_index: int = 255,
) -> torch.Tensor:
    """
    Segmentation pseudo labels from CAMs with PAR (docs/mcc.md §6): a constant background score
    of `high_thre` (resp. `low_thre`) is stacked in front of the tag-masked CAMs, the stack is
    resized to 1/down_scale, soft-maxed over {background} ∪ {present classes} (absent classes get
    probability 0, which PAR keeps at 0), refined by PAR, resized back and arg-maxed; outside
    the image box both maps are `ignore_index`; `fuse_two_threshold_labels` combines them.

    Args:
        par: the PAR module.
        images: (B, 3, H, W) [0, 1] images at crop size (see `par_image`).
        cams: (B, K, H, W) foreground CAMs in [0, 1] (K = C − 1 classes, no background).
        cls_labels: (B, K) multi-hot image tags.
        img_boxes: (B, 4) int [h0, h1, w0, w1) of the real image inside the crop, in pixels.
        high_thre, low_thre: background scores of the two stacks (VOC 0.70 / 0.25).
    Returns:
        (B, H, W) int64 labels in {0..K} ∪ {ignore_index}.
    """
    if cams.dim() != 4 or images.dim() != 4:
        raise ValueError(
            f"refine_cams_with_background: images (B, 3, H, W) and cams (B, K, H, W) must be 4-d, got "
            f"{tuple(images.shape)} and {tuple(cams.shape)}"
        )
    b, k, h, w = cams.shape
    if images.shape[0] != b or images.shape[-2:] != cams.shape[-2:]:
        raise ValueError(
            f"refine_cams_with_background: images {tuple(images.shape)} and cams {tuple(cams.shape)} "
            "must share batch size and (H, W)"
        )
    if tuple(cls_labels.shape) != (b, k):
        raise ValueError(
            f"refine_cams_with_background: cls_labels must be (B, K) = {(b, k)}, got {tuple(cls_labels.shape)}"
        )
    if tuple(img_boxes.shape) != (b, 4):
        raise ValueError(f"refine_cams_with_background: img_boxes must be (B, 4), got {tuple(img_boxes.shape)}")
    if not low_thre <= high_thre:
        raise ValueError(f"refine_cams_with_background: low_thre {low_thre} > high_thre {high_thre}")
    small = (h // down_scale, w // down_scale)
    small_images = F.interpolate(images.float(), size=small, mode="bilinear", align_corners=False)
    valid_cams = cams.float() * cls_labels.float()[:, :, None, None]
    present = torch.cat([torch.ones_like(cls_labels[:, :1]), cls_labels], dim=1).bool()  # (B, K+1)
    inside = box_mask(img_boxes.to(cams.device).long(), (h, w))
    # only channels present in some image of the batch go through PAR (VOC: a few of 21)
    keep = present.any(dim=0).nonzero()[:, 0]
    present = present[:, keep]

    labels = []
    for threshold in (high_thre, low_thre):
        background = torch.full_like(valid_cams[:, :1], float(threshold))
        stack = F.interpolate(
            torch.cat([background, valid_cams], dim=1)[:, keep], size=small, mode="bilinear", align_corners=False
        )
        # softmax over {background} ∪ {this image's classes}: the others get exactly 0
        stack = stack.masked_fill(~present[:, :, None, None], float("-inf")).softmax(dim=1)
        refined = par(small_images, stack)
        refined = F.interpolate(refined, size=(h, w), mode="bilinear", align_corners=False)
        # PAR keeps 0 channels at 0 and positive ones > 0, so the argmax is a present class
        label = keep[refined.argmax(dim=1)]
        labels.append(label.masked_fill(~inside, ignore_index))
    return fuse_two_threshold_labels(labels[0], labels[1], ignore_index)
