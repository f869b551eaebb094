"""
SimFormer's terms beyond MaskFormer's (docs/simformer.md §3-§4), as functions over tensors:
the complementary loss, the pixel-pair similarity net, point sampling, the class-balanced similarity
loss and the distillation functions.
"""
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from ...modeling.maskformer.losses import dice_loss, sigmoid_focal_loss

__all__ = [
    "complementary_loss",
    "SimilarityNet",
    "pair_features",
    "sample_in_region",
    "gather_points",
    "balanced_similarity_loss",
    "distill_loss",
    "pair_cosine",
    "student_scores",
]


def complementary_loss(novel_mask_logits, not_base, ignore_logit=-2.9444, focal_weight=20.0, dice_weight=1.0):
    """
    docs/simformer.md §3.3 for one image: z(x) = max(max_q m_q(x), τ) over the mask logits (N, H, W) of
    the queries matched to novel (tag) targets and the constant τ = `ignore_logit` (left out when
    <= −50); target y = `not_base` (H, W): 1 on pixels no base target covers, 0 on base pixels and on
    padding. Returns focal_weight·focal(z, y) + dice_weight·dice(z, y) (focal averaged over pixels).
    """
    z = novel_mask_logits.max(0).values
    if ignore_logit > -50:
        z = torch.clamp(z, min=ignore_logit)  # = max(z, τ): no gradient where every novel logit is below τ
    z, y = z.flatten()[None].float(), not_base.flatten()[None].float()
    return focal_weight * sigmoid_focal_loss(z, y)[0] + dice_weight * dice_loss(z, y)[0]


class _SimilarityBlock(nn.Module):
    """conv 1x1 + BN + ReLU, conv 1x1 + BN + ReLU, plus the input (through ReLU(conv 1x1) when widths differ)."""

    def __init__(self, in_dim, dim, batch_norm=True):
        super().__init__()
        self.layer1 = nn.Conv2d(in_dim, dim, 1)
        self.bn1 = nn.BatchNorm2d(dim) if batch_norm else nn.Identity()
        self.layer2 = nn.Conv2d(dim, dim, 1)
        self.bn2 = nn.BatchNorm2d(dim) if batch_norm else nn.Identity()
        self.sqz = nn.Conv2d(in_dim, dim, 1) if in_dim != dim else None

    def forward(self, x):
        out = F.relu(self.bn2(self.layer2(F.relu(self.bn1(self.layer1(x))))))
        return out + (x if self.sqz is None else F.relu(self.sqz(x)))


class _FcBranch(nn.Module):
    def __init__(self, in_dim, dim, num_blocks, batch_norm):
        super().__init__()
        self.layers = nn.Sequential(OrderedDict(
            (f"block{i}", _SimilarityBlock(in_dim if i == 0 else dim, dim, batch_norm)) for i in range(num_blocks)
        ))

    def forward(self, x):
        return self.layers(x)


class SimilarityNet(nn.Module):
    """
    The pixel-pair similarity net (docs/simformer.md §3.4): on pair features (B, 2C, N, M) (the two
    pixels' embeddings concatenated), residual blocks of 1x1 convs, a 1x1 conv to 2 channels, softmax;
    returns the probability of "same class", (B, N, M).
    """

    def __init__(self, in_dim=512, dim=256, num_blocks=3, batch_norm=True):
        super().__init__()
        self.fc_branch = _FcBranch(in_dim, dim, num_blocks, batch_norm)
        self.out_head = nn.Conv2d(dim, 2, 1)

    def forward(self, pair_features):
        return F.softmax(self.out_head(self.fc_branch(pair_features)), dim=1)[:, 1]


def pair_features(first, second):
    """(1, 2C, N, M) similarity-net input of every row of `first` (N, C) against every row of `second` (M, C)."""
    n, m = first.shape[0], second.shape[0]
    x = torch.cat([first[:, None].expand(n, m, -1), second[None].expand(n, m, -1)], dim=-1)
    return x.permute(2, 0, 1)[None]


def sample_in_region(region, k, generator=None):
    """
    (B, k) flat indices of k distinct uniformly drawn pixels of each `region` (B, P) bool: the top k of
    region + U(0, 0.1); when the region has fewer than k pixels, uniform pixels outside it fill the rest.
    """
    noise = torch.rand(region.shape, generator=generator, device=region.device) * 0.1
    return (region.float() + noise).topk(k, dim=1).indices


def gather_points(values, indices):
    """values (B, C, h, w) at the flat indices (B, k): (B, k, C)."""
    flat = values.flatten(2)
    return flat.gather(2, indices[:, None].expand(-1, flat.shape[1], -1)).transpose(1, 2)


def balanced_similarity_loss(similarity, same, valid, weight_pos, weight_neg):
    """
    Σ v·w(s*)·BCE(S, s*) / max(Σ v, 1e-5) over all entries (docs/simformer.md §3.4): `similarity` S in
    (0, 1), `same` s* and `valid` v bool of the same shape; w = weight_pos on positives, weight_neg on
    negatives.
    """
    target = same.float()
    bce = F.binary_cross_entropy(similarity.float(), target, reduction="none")
    weights = torch.where(same, weight_pos, weight_neg) * valid.float()
    return (weights * bce).sum() / torch.clamp(valid.float().sum(), min=1e-5)


def distill_loss(student, teacher, func="ce"):
    """
    Mean over entries of the distillation function (docs/simformer.md §3.5) of student s and teacher t,
    both in [0, 1]:
      "ce":   −t' log s' − (1 − t') log(1 − s'), with t', s' clamped to [0.01, 0.99]
      "cce":  −ReLU(t − 0.5) log(1 + s) − ReLU(0.5 − t) log(2 − s)   (never positive)
      "b<c>": −(t − c)·s
    """
    if func == "ce":
        s, t = student.clamp(0.01, 0.99), teacher.clamp(0.01, 0.99)
        return (-t * torch.log(s) - (1 - t) * torch.log(1 - s)).mean()
    if func == "cce":
        return (-F.relu(teacher - 0.5) * torch.log(1 + student) - F.relu(0.5 - teacher) * torch.log(2 - student)).mean()
    if func.startswith("b"):
        return (-(teacher - float(func[1:])) * student).mean()
    raise ValueError(f"MODEL.SIMFORMER.DISTILL_FUNC must be 'ce', 'cce' or 'b<threshold>', got {func!r}")


def pair_cosine(first, second, eps=1e-8):
    """ReLU of the cosine similarity of every row of `first` (N, D) with every row of `second` (M, D)."""
    dots = first @ second.T
    norms = first.norm(dim=1)[:, None] * second.norm(dim=1)[None]
    return F.relu(dots / torch.clamp(norms, min=eps))


def student_scores(class_logits, mask_logits, mode="NovelScore", novel_classes=None):
    """
    The student's per-pixel vectors (B, D, h, w) from the final layer's class logits (B, Q, K+1) and mask
    logits (B, Q, h, w): Σ_q v_q σ(m_q) with v_q = softmax(l_q) at the novel classes ("NovelScore", not
    renormalised), at all K classes ("FullScore"), the raw logits without "no object" ("FullLogit") or
    their ReLU ("FullLogitC").
    """
    if mode == "NovelScore":
        weights = class_logits.softmax(-1)[..., novel_classes]
    elif mode == "FullScore":
        weights = class_logits.softmax(-1)[..., :-1]
    elif mode == "FullLogit":
        weights = class_logits[..., :-1]
    elif mode == "FullLogitC":
        weights = F.relu(class_logits[..., :-1])
    else:
        raise ValueError(f"MODEL.SIMFORMER.DISTILL_TO must be one of NovelScore, FullScore, FullLogit, FullLogitC; got {mode!r}")
    return torch.einsum("bqd,bqhw->bdhw", weights, mask_logits.sigmoid())
