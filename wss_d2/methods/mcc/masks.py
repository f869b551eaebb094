"""
MCC's random block key masks and the positive/negative role of each masked view (docs/mcc.md §4.1).

Shapes: B images, M masked local views per image, an (h, w) token grid (448² crop: 28×28),
K foreground classes. The masks are random; CAMs only decide whether a masked view is a
positive or a negative of the contrast (docs/mcc.md §1.2).
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "MCCMasks",
    "roi_map",
    "block_key_masks",
    "view_flags",
    "key_policy",
    "mcc_masks",
]


class MCCMasks(NamedTuple):
    """Output of `mcc_masks` (docs/mcc.md §4.1)."""

    policy: torch.Tensor  # (M·B, 1 + h·w) float 0/1, view-major (row = view·B + b), CLS column 0
    flags: torch.Tensor  # (B, G + M) long 0/1, the G global views first (always 1)
    masks: torch.Tensor  # (B, M, h, w) bool, True = masked key
    roi: torch.Tensor  # (B, h, w) long ROI scores in {0, 1, 2}


def roi_map(
    cams: torch.Tensor,
    cls_labels: torch.Tensor,
    grid_size: Tuple[int, int],
    *,
    low_thre: float = 0.25,
    high_thre: float = 0.7,
) -> torch.Tensor:
    """
    ROI scores at the token grid (docs/mcc.md §4.1): the CAM is resized to `grid_size` with
    bicubic interpolation (align_corners=False, no antialias), multiplied by the image tags and
    max-pooled over classes to v; roi = 0 where v ≤ low_thre, 2 where v ≥ high_thre, 1 between.

    Args:
        cams: (B, K, H, W) CAMs in [0, 1] (VOC: aux CAM until MODEL.MCC.FLAG_CAM_SWITCH_ITER,
            then the final-layer CAM).
        cls_labels: (B, K) multi-hot image tags.
        grid_size: (h, w) token grid.
        low_thre: MODEL.MCC.CAM.LOW_THRESH.
        high_thre: MODEL.MCC.CAM.HIGH_THRESH (VOC 0.7, COCO 0.65).
    Returns:
        (B, h, w) int64 in {0, 1, 2}.
    """
    if cams.dim() != 4:
        raise ValueError(f"roi_map: cams must be (B, K, H, W), got shape {tuple(cams.shape)}")
    if tuple(cls_labels.shape) != tuple(cams.shape[:2]):
        raise ValueError(
            f"roi_map: cls_labels must be (B, K) = {tuple(cams.shape[:2])}, got {tuple(cls_labels.shape)}"
        )
    if not low_thre <= high_thre:
        raise ValueError(
            f"roi_map: MODEL.MCC.CAM.LOW_THRESH ({low_thre}) must not exceed MODEL.MCC.CAM.HIGH_THRESH ({high_thre})"
        )
    cams = cams.detach().float()
    if tuple(cams.shape[-2:]) != tuple(grid_size):
        cams = F.interpolate(cams, size=tuple(grid_size), mode="bicubic", align_corners=False)
    value = (cams * cls_labels.float()[:, :, None, None]).max(dim=1).values
    roi = torch.ones_like(value, dtype=torch.long)
    roi[value <= low_thre] = 0
    roi[value >= high_thre] = 2
    return roi


def block_key_masks(
    batch: int,
    num_masks: int,
    grid_size: Tuple[int, int],
    *,
    block: int = 4,
    mask_rate: float = 0.95,
    generator: Optional[torch.Generator] = None,
    device=None,
) -> torch.Tensor:
    """
    Random block masks (docs/mcc.md §4.1): for every image and view, a (h/block, w/block)
    Bernoulli(mask_rate) grid (1 = masked) upsampled by `block` with nearest neighbour, so each
    cell masks a block × block square of tokens. About 1 − mask_rate of the tokens stay visible;
    a view is fully masked with probability mask_rate^(cells).

    Args:
        batch, num_masks: B and M (MODEL.MCC.MASK.NUM_LOCAL, 8).
        grid_size: (h, w) token grid; both must be multiples of `block` (crop a multiple of 64 px).
        block: MODEL.MCC.MASK.BLOCK, block side in tokens.
        mask_rate: MODEL.MCC.MASK.RATIO, probability that a block is masked.
        generator: random source (the draws are made on its device), for reproducible masks.
        device: where the masks are returned (default: the generator's device, else CPU).
    Returns:
        (B, M, h, w) bool, True = masked.
    """
    h, w = (int(s) for s in grid_size)
    if block < 1 or h % block or w % block:
        raise ValueError(
            f"block_key_masks: the token grid {h}x{w} must be a multiple of MODEL.MCC.MASK.BLOCK = {block} "
            f"(the crop size must be a multiple of 16·{block} px)"
        )
    if not 0.0 <= mask_rate <= 1.0:
        raise ValueError(f"block_key_masks: MODEL.MCC.MASK.RATIO must lie in [0, 1], got {mask_rate}")
    if batch < 0 or num_masks < 0:
        raise ValueError(f"block_key_masks: batch ({batch}) and num_masks ({num_masks}) must be >= 0")
    draw_device = generator.device if generator is not None else (device if device is not None else "cpu")
    cells = torch.rand(batch, num_masks, h // block, w // block, generator=generator, device=draw_device)
    masked = cells < mask_rate
    # nearest-neighbour ×block upsampling = repeating each cell over its block
    masked = masked.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)
    return masked.to(device) if device is not None else masked


def view_flags(masks: torch.Tensor, roi: torch.Tensor, *, pos_frac: float = 0.2, num_global: int = 2) -> torch.Tensor:
    """
    Positive (1) / negative (0) role of every view (docs/mcc.md §4.1): a masked view is negative
    when the ROI scores of its visible tokens sum to at most pos_frac·|visible| (so a fully
    masked view, 0 ≤ 0, is always negative), positive otherwise. The `num_global` unmasked
    global views come first and are always positive.

    Args:
        masks: (B, M, h, w) bool, True = masked.
        roi: (B, h, w) ROI scores in {0, 1, 2} (`roi_map`).
        pos_frac: MODEL.MCC.MASK.POS_FRAC.
        num_global: number of global views (2).
    Returns:
        (B, num_global + M) int64.
    """
    if masks.dim() != 4 or roi.dim() != 3 or masks.shape[0] != roi.shape[0] or masks.shape[2:] != roi.shape[1:]:
        raise ValueError(
            f"view_flags: masks must be (B, M, h, w) and roi (B, h, w), got {tuple(masks.shape)} and {tuple(roi.shape)}"
        )
    visible = (~masks.bool()).float()
    score = (visible * roi[:, None].float()).sum(dim=(2, 3))
    count = visible.sum(dim=(2, 3))
    # float32 like the original: ROI sums are integers, so ties only where pos_frac·|V| is one
    local = (score > pos_frac * count).long()
    globals_ = torch.ones(masks.shape[0], num_global, dtype=torch.long, device=masks.device)
    return torch.cat([globals_, local], dim=1)


def key_policy(masks: torch.Tensor) -> torch.Tensor:
    """
    The MaskableViT `policy` of the masked views (docs/mcc.md §1.2, §4.1): each (h, w) mask
    flattened row-major with a 0 (never masked) prepended for the CLS key, ordered view-major
    to match the local view repeated M times (`local.repeat(M, 1, 1, 1)`).

    Args:
        masks: (B, M, h, w) bool, True = masked.
    Returns:
        (M·B, 1 + h·w) float32, 1 = masked key; row m·B + b is view m of image b.
    """
    if masks.dim() != 4:
        raise ValueError(f"key_policy: masks must be (B, M, h, w), got shape {tuple(masks.shape)}")
    b, m, h, w = masks.shape
    tokens = masks.transpose(0, 1).reshape(m * b, h * w).float()
    return torch.cat([torch.zeros_like(tokens[:, :1]), tokens], dim=1)


def mcc_masks(
    cams: torch.Tensor,
    cls_labels: torch.Tensor,
    grid_size: Tuple[int, int],
    *,
    num_local: int = 8,
    block: int = 4,
    mask_rate: float = 0.95,
    pos_frac: float = 0.2,
    low_thre: float = 0.25,
    high_thre: float = 0.7,
    num_global: int = 2,
    generator: Optional[torch.Generator] = None,
) -> MCCMasks:
    """
    One iteration's masks, flags and policies for a batch (docs/mcc.md §4.1), drawn
    independently per image and view. Keyword arguments as `roi_map`, `block_key_masks`
    and `view_flags` (MODEL.MCC.MASK.{NUM_LOCAL, BLOCK, RATIO, POS_FRAC},
    MODEL.MCC.CAM.{LOW_THRESH, HIGH_THRESH}).

    Args:
        cams: (B, K, H, W) CAMs of the main view; cls_labels: (B, K); grid_size: (h, w).
    Returns:
        `MCCMasks` (policy (M·B, 1 + h·w), flags (B, 2 + M), masks (B, M, h, w), roi (B, h, w)),
        all on the CAMs' device.
    """
    roi = roi_map(cams, cls_labels, grid_size, low_thre=low_thre, high_thre=high_thre)
    masks = block_key_masks(
        cams.shape[0], num_local, grid_size, block=block, mask_rate=mask_rate, generator=generator, device=cams.device
    )
    flags = view_flags(masks, roi, pos_frac=pos_frac, num_global=num_global)
    return MCCMasks(policy=key_policy(masks), flags=flags, masks=masks, roi=roi)
