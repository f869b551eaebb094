"""
MCC's losses (docs/mcc.md §4.3, §5.1-§5.3): the masked collaborative contrast, the image-level
classification loss, ToCo's patch-token affinity loss with its labels, and the segmentation loss
with separate background / foreground halves. The energy loss is wss_d2.modeling.energy_loss and
the pseudo labels come from wss_d2.refinement.par.

Shapes: B images, K = C − 1 foreground classes, C classes with background (label 0), an (h, w)
token grid with N = h·w tokens, (H, W) crop pixels, D projector outputs. Each function returns
the unweighted loss; the weights (MODEL.MCC.*_LOSS_WEIGHT) are applied by the meta-architecture.
"""
import math
from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "IGNORE_INDEX",
    "mcc_contrast_loss",
    "classification_loss",
    "ptc_token_labels",
    "affinity_labels",
    "affinity_loss",
    "segmentation_loss_halves",
    "segmentation_loss",
]

IGNORE_INDEX = 255


def mcc_contrast_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    flags: torch.Tensor,
    *,
    temperature: float = 0.5,
    eps: float = 1e-4,
) -> torch.Tensor:
    """
    Masked collaborative contrast, ToCo's class-token loss with negatives (docs/mcc.md §4.3).
    With ℓ_{g,m} = ⟨t_{i,g}, s_{i,m}⟩ / τ (raw dot products), E = exp(ℓ), positives P_i and
    negatives N_i from the flags, S_g = Σ_{m∈N_i} E_{g,m}:

        L_i = 1 / (G·(|P_i| + eps)) · Σ_g [ Σ_{m∈P_i} −log(E_{g,m} / (E_{g,m} + S_g + eps))
                                             + log(1 + S_g + eps) ]
        L = mean_i L_i

    The push-away term log(1 + S_g + eps) is added once per teacher view whatever |P_i| is
    (docs/mcc.md §15, detail 4). Computed in float32 in log-sum-exp form, which equals the direct form
    without overflowing exp. The teacher is detached: only the student gets a gradient.

    Args:
        student: (V·B, D) student projections, view-major (row = view·B + b), the G global
            views first, then the masked local views.
        teacher: (G·B, D) teacher projections of the global views, view-major.
        flags: (B, V) 1 = positive, 0 = negative (`mcc_masks(...).flags`).
        temperature: MODEL.MCC.TEMPERATURE (τ = 0.5).
        eps: the 1e-4 of the original (inside the logs and in the normaliser).
    Returns:
        scalar.
    """
    if student.dim() != 2 or teacher.dim() != 2 or flags.dim() != 2:
        raise ValueError(
            f"mcc_contrast_loss: student (V·B, D), teacher (G·B, D) and flags (B, V) must be 2-d, got "
            f"{tuple(student.shape)}, {tuple(teacher.shape)}, {tuple(flags.shape)}"
        )
    b, v = flags.shape
    if b == 0 or student.shape[0] != v * b or teacher.shape[0] % b or student.shape[1] != teacher.shape[1]:
        raise ValueError(
            f"mcc_contrast_loss: with flags (B, V) = {(b, v)} the student must be (V·B, D) = ({v * b}, D) and the "
            f"teacher (G·B, D) with the same D, got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"mcc_contrast_loss: MODEL.MCC.TEMPERATURE must be > 0, got {temperature}")
    if not eps > 0:
        raise ValueError(f"mcc_contrast_loss: eps must be > 0, got {eps}")
    g = teacher.shape[0] // b
    s = student.float().reshape(v, b, -1).transpose(0, 1)  # B, V, D
    t = teacher.detach().float().reshape(g, b, -1).transpose(0, 1)  # B, G, D
    logits = t @ s.transpose(1, 2) / temperature  # B, G, V
    positive = flags.to(logits.device).bool()[:, None, :].expand_as(logits)
    # log(S_g + eps) over the negatives and the eps term
    log_eps = torch.full_like(logits[..., :1], math.log(eps))
    negatives = torch.cat([logits.masked_fill(positive, float("-inf")), log_eps], dim=-1)
    log_neg = torch.logsumexp(negatives, dim=-1, keepdim=True)  # B, G, 1
    # −log(E / (E + S + eps)) = −ℓ + log(exp(ℓ) + S + eps)
    pos_terms = torch.where(positive, torch.logaddexp(logits, log_neg) - logits, torch.zeros_like(logits))
    push_terms = torch.logaddexp(torch.zeros_like(log_neg), log_neg)  # log(1 + S + eps)
    per_image = pos_terms.sum(dim=(1, 2)) + push_terms.sum(dim=(1, 2))
    num_pos = flags.to(logits.device).float().sum(dim=1)
    return (per_image / (g * (num_pos + eps))).mean()


def classification_loss(logits: torch.Tensor, cls_labels: torch.Tensor) -> torch.Tensor:
    """
    Multi-label soft margin loss of the pooled logits (docs/mcc.md §5.1): the mean over the K
    classes of binary cross-entropy with logits, averaged over the batch (PyTorch's
    `multilabel_soft_margin_loss`, as the original). Used for the final and the aux classifier
    (MODEL.MCC.CLS_LOSS_WEIGHT, MODEL.MCC.CLS_AUX_LOSS_WEIGHT).

    Args:
        logits: (B, K) logits after global max pooling.
        cls_labels: (B, K) multi-hot image tags.
    Returns:
        scalar.
    """
    if logits.dim() != 2 or logits.shape != cls_labels.shape:
        raise ValueError(
            f"classification_loss: logits and cls_labels must both be (B, K), got {tuple(logits.shape)} and "
            f"{tuple(cls_labels.shape)}"
        )
    return F.multilabel_soft_margin_loss(logits, cls_labels.to(logits.dtype))


def _box_to_grid(img_boxes: torch.Tensor, pixel_box_quirk: bool, patch_size: int) -> torch.Tensor:
    """(B, 4) [h0, h1, w0, w1) in grid units: as given (the original's pixel units) or converted
    to tokens with the start floored and the end ceiled (docs/mcc.md §15 Q2)."""
    boxes = img_boxes.long()
    if pixel_box_quirk:
        return boxes
    starts = torch.div(boxes[:, 0::2], patch_size, rounding_mode="floor")
    ends = torch.div(boxes[:, 1::2] + patch_size - 1, patch_size, rounding_mode="floor")
    return torch.stack([starts[:, 0], ends[:, 0], starts[:, 1], ends[:, 1]], dim=1)


@torch.no_grad()
def ptc_token_labels(
    cams_aux: torch.Tensor,
    cls_labels: torch.Tensor,
    img_boxes: torch.Tensor,
    grid_size: Tuple[int, int],
    *,
    low_thre: float = 0.25,
    high_thre: float = 0.7,
    pixel_box_quirk: bool = True,
    patch_size: int = 16,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """
    Token labels of the patch-token affinity loss (docs/mcc.md §5.2): the aux CAM is resized
    to the token grid (bilinear, align_corners=False), multiplied by the tags, and with v the
    max and k the argmax over classes the label is k + 1 where v > high_thre, `ignore_index`
    where low_thre < v ≤ high_thre and 0 (background) where v ≤ low_thre. Tokens outside the
    image box are `ignore_index`.

    With `pixel_box_quirk` (the original, docs/mcc.md §15 Q2 and Errata 2) the pixel box slices
    the token grid directly: a top or left padding of ≥ h (resp. w) pixels ignores every token.
    Otherwise the box is converted to tokens (start floored, end ceiled, by `patch_size`).

    Args:
        cams_aux: (B, K, H, W) aux CAMs in [0, 1].
        cls_labels: (B, K) multi-hot tags.
        img_boxes: (B, 4) int [h0, h1, w0, w1) of the real image inside the crop, in pixels.
        grid_size: (h, w) token grid of the final feature map.
        low_thre, high_thre: MODEL.MCC.CAM.LOW_THRESH, MODEL.MCC.CAM.HIGH_THRESH.
        pixel_box_quirk: MODEL.MCC.QUIRKS.PTC_PIXEL_BOX.
        patch_size: the ViT patch size (MODEL.VIT.PATCH_SIZE), used only without the quirk.
    Returns:
        (B, h, w) int64 in {0..K} ∪ {ignore_index}.
    """
    if cams_aux.dim() != 4 or tuple(cls_labels.shape) != tuple(cams_aux.shape[:2]):
        raise ValueError(
            f"ptc_token_labels: cams_aux must be (B, K, H, W) and cls_labels (B, K), got "
            f"{tuple(cams_aux.shape)} and {tuple(cls_labels.shape)}"
        )
    if tuple(img_boxes.shape) != (cams_aux.shape[0], 4):
        raise ValueError(f"ptc_token_labels: img_boxes must be (B, 4), got {tuple(img_boxes.shape)}")
    if not low_thre <= high_thre:
        raise ValueError(
            f"ptc_token_labels: MODEL.MCC.CAM.LOW_THRESH ({low_thre}) must not exceed MODEL.MCC.CAM.HIGH_THRESH "
            f"({high_thre})"
        )
    h, w = (int(s) for s in grid_size)
    cams = cams_aux.float()
    if tuple(cams.shape[-2:]) != (h, w):
        cams = F.interpolate(cams, size=(h, w), mode="bilinear", align_corners=False)
    value, index = (cams * cls_labels.float()[:, :, None, None]).max(dim=1)
    labels = index + 1
    labels[value <= high_thre] = ignore_index
    labels[value <= low_thre] = 0
    boxes = _box_to_grid(img_boxes.to(labels.device), pixel_box_quirk, patch_size)
    rows = torch.arange(h, device=labels.device)[None, :]
    cols = torch.arange(w, device=labels.device)[None, :]
    inside_rows = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 1:2])  # B, h
    inside_cols = (cols >= boxes[:, 2:3]) & (cols < boxes[:, 3:4])  # B, w
    inside = inside_rows[:, :, None] & inside_cols[:, None, :]
    return labels.masked_fill(~inside, ignore_index)


def affinity_labels(token_labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """
    Pairwise labels of the affinity loss (docs/mcc.md §5.2): Y_ij = 1 where tokens i and j carry
    the same label (background pairs included), 0 where they differ, `ignore_index` on the rows
    and columns of ignored tokens and on the diagonal.

    Args:
        token_labels: (B, h, w) or (B, N) labels (`ptc_token_labels`).
    Returns:
        (B, N, N) uint8 in {0, 1, ignore_index}.
    """
    if token_labels.dim() not in (2, 3):
        raise ValueError(f"affinity_labels: token_labels must be (B, h, w) or (B, N), got {tuple(token_labels.shape)}")
    if not 0 <= ignore_index <= 255:
        raise ValueError(f"affinity_labels: ignore_index must fit uint8, got {ignore_index}")
    flat = token_labels.reshape(token_labels.shape[0], -1)
    n = flat.shape[1]
    pairs = (flat[:, :, None] == flat[:, None, :]).to(torch.uint8)
    ignored = flat == ignore_index
    void = ignored[:, :, None] | ignored[:, None, :] | torch.eye(n, dtype=torch.bool, device=flat.device)[None]
    return pairs.masked_fill(void, ignore_index)


def affinity_loss(features: torch.Tensor, aff_labels: torch.Tensor) -> torch.Tensor:
    """
    ToCo's patch-token affinity loss (docs/mcc.md §5.2): with c_ij = |cos(f_i, f_j)| of the
    L2-normalised tokens (eps 1e-8),

        L = 0.5·(1 − Σ_{Y=1} c / (n_pos + 1)) + 0.5·Σ_{Y=0} c / (n_neg + 1),

    sums and counts pooled over the whole batch. With every pair ignored it is the constant 0.5
    with zero gradient (docs/mcc.md Errata 2). Weight MODEL.MCC.AFF_LOSS_WEIGHT.

    Args:
        features: (B, D, h, w) final-layer token map (after the final LayerNorm).
        aff_labels: (B, N, N) with N = h·w, 1 / 0 / ignore (`affinity_labels`).
    Returns:
        scalar.
    """
    if features.dim() != 4:
        raise ValueError(f"affinity_loss: features must be (B, D, h, w), got {tuple(features.shape)}")
    b, d, h, w = features.shape
    if tuple(aff_labels.shape) != (b, h * w, h * w):
        raise ValueError(
            f"affinity_loss: aff_labels must be (B, N, N) = {(b, h * w, h * w)} for features "
            f"{tuple(features.shape)}, got {tuple(aff_labels.shape)}"
        )
    tokens = F.normalize(features.float().reshape(b, d, h * w), p=2, dim=1, eps=1e-8)
    cos = (tokens.transpose(1, 2) @ tokens).abs()  # B, N, N
    positive = aff_labels == 1
    negative = aff_labels == 0
    pos_term = (cos * positive).sum() / (positive.sum() + 1)
    neg_term = (cos * negative).sum() / (negative.sum() + 1)
    return 0.5 * (1 - pos_term) + 0.5 * neg_term


def segmentation_loss_halves(
    logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = IGNORE_INDEX
) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    The background and foreground halves of the segmentation loss (docs/mcc.md §5.3): the mean
    cross-entropy (softmax over all C classes) over the pixels labelled 0, and over the pixels
    labelled 1..C−1; `ignore_index` pixels are in neither. An empty half is 0 with a zero
    gradient (the original's 0/0 is NaN with the same all-zero gradient, docs/mcc.md Errata 3).

    Args:
        logits: (B, C, h, w) seg logits; upsampled bilinearly (align_corners=False) to the
            label size when it differs (28 → 448).
        labels: (B, H, W) pseudo labels in {0..C−1} ∪ {ignore_index}.
    Returns:
        (ce_bg, ce_fg), two scalars.
    """
    if logits.dim() != 4 or labels.dim() != 3 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"segmentation_loss: logits must be (B, C, h, w) and labels (B, H, W) with the same B, got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    num_classes = logits.shape[1]
    labels = labels.to(logits.device).long()
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        raise ValueError(
            f"segmentation_loss: labels must lie in 0..{num_classes - 1} or be {ignore_index}, got "
            f"{sorted(set(labels[bad].unique().tolist()))[:5]}"
        )
    if tuple(logits.shape[-2:]) != tuple(labels.shape[-2:]):
        logits = F.interpolate(logits, size=tuple(labels.shape[-2:]), mode="bilinear", align_corners=False)
    # one per-pixel CE, ignored pixels give 0 and no gradient
    ce = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none")
    background = (labels == 0).to(ce.dtype)
    foreground = ((labels != 0) & (labels != ignore_index)).to(ce.dtype)
    ce_bg = (ce * background).sum() / background.sum().clamp(min=1)
    ce_fg = (ce * foreground).sum() / foreground.sum().clamp(min=1)
    return ce_bg, ce_fg


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """
    L_seg = 0.5·CE_bg + 0.5·CE_fg (docs/mcc.md §5.3), see `segmentation_loss_halves` for the
    shapes. Weight MODEL.MCC.SEG_LOSS_WEIGHT, active after MODEL.MCC.SEG_START_ITER.
    """
    ce_bg, ce_fg = segmentation_loss_halves(logits, labels, ignore_index=ignore_index)
    return 0.5 * (ce_bg + ce_fg)
