"""
SIPE's equations (docs/sipe.md §2.4, §3), batched over images. Shapes: N images,
K foreground classes, channel 0 = background, h x w positions (stride 16), Ω = h·w.
The normalised CAM M (docs/sipe.md §3.1) is shared with other CAM methods: wss_d2.modeling.cam.
"""
import torch
import torch.nn.functional as F

from ...modeling.cam import EPS, max_normalize

__all__ = [
    "hierarchical_feature",
    "structure_aware_seeds",
    "image_specific_prototypes",
    "image_specific_cams",
    "gsc_loss",
]


def hierarchical_feature(side_outputs, size):
    """
    F_h (docs/sipe.md §2.4): each side output L2-normalised over channels (÷ (‖s‖ + 1e-5)),
    resized to `size` (bilinear, align_corners=False, no antialias), concatenated in order;
    not re-normalised after concatenation.
    """
    parts = []
    for side in side_outputs:
        side = side / (side.norm(dim=1, keepdim=True) + EPS)
        if tuple(side.shape[-2:]) != tuple(size):
            side = F.interpolate(side, size=size, mode="bilinear", align_corners=False)
        parts.append(side)
    return torch.cat(parts, dim=1)


def structure_aware_seeds(cams, seed_feature, label_mask, background_weight=0.5):
    """
    Seeds (docs/sipe.md §3.2): the one-hot (N, K+1, h, w) assignment of each position to the
    channel whose map best overlaps the position's structure map S_i(j) = ReLU(f̂(i)·f̂(j)) in soft IoU
    C_k(i) = I / (Σ_j S_i(j) + Σ_j M_k(j) − I), I = Σ_j S_i(j) M_k(j); the background IoU is
    multiplied by `background_weight` (α = 0.5). Positions are then masked by `label_mask`
    (N, K+1, h, w) (or (N, K+1) broadcast): an argmax on an absent class or on padding gives
    no seed. Not differentiable (an argmax); I is one (K+1)×Ω by Ω×Ω matmul per image, never
    a (K+1)×Ω×Ω tensor.
    Returns (seeds, C) with C the (N, K+1, h, w) soft IoUs after the background weight.
    """
    n, channels, h, w = cams.shape
    with torch.no_grad():
        feature = seed_feature.flatten(2)  # N, D, Ω
        feature = feature / (feature.norm(dim=1, keepdim=True) + EPS)
        structure = F.relu(feature.transpose(1, 2) @ feature)  # N, Ω, Ω (symmetric)
        maps = cams.detach().flatten(2)  # N, K+1, Ω
        intersection = maps @ structure  # I_k(i) = Σ_j M_k(j) S(j, i) = Σ_j S_i(j) M_k(j)
        union = structure.sum(dim=1)[:, None, :] + maps.sum(dim=2, keepdim=True) - intersection
        # 0/0 (a zero feature against an all-zero map) is no overlap, not NaN (docs/sipe.md §11.12)
        iou = torch.nan_to_num(intersection / union, nan=0.0)
        iou[:, 0] *= background_weight
        assignment = iou.argmax(dim=1)  # ties: lowest channel, as torch.argmax
        seeds = F.one_hot(assignment, channels).permute(0, 2, 1).float().reshape(n, channels, h, w)
        if label_mask.dim() == 2:
            label_mask = label_mask[:, :, None, None]
        seeds = seeds * label_mask
    return seeds, iou.reshape(n, channels, h, w)


def image_specific_prototypes(seeds, hier_feature):
    """
    P_k = (1/Ω) Σ_i R_k(i) F_h(i) (docs/sipe.md §3.3; the code divides by Ω, the paper by the
    seed count: only the direction matters). (N, K+1, D); classes without seeds get 0.
    Differentiable w.r.t. the hierarchical feature only.
    """
    n, channels = seeds.shape[:2]
    positions = seeds.shape[2] * seeds.shape[3]
    return seeds.flatten(2) @ hier_feature.flatten(2).transpose(1, 2) / positions


def image_specific_cams(hier_feature, prototypes, eps=1e-8):
    """IS-CAM (docs/sipe.md §3.4): ReLU(cos(F_h(i), P_k)) with PyTorch's cosine_similarity semantics
    (a zero prototype gives exactly 0). (N, K+1, h, w)."""
    feature = hier_feature.flatten(2)  # N, D, Ω
    dots = prototypes @ feature  # N, K+1, Ω
    norms = prototypes.norm(dim=2)[:, :, None] * feature.norm(dim=1)[:, None, :]
    cosine = dots / norms.clamp_min(eps)
    return F.relu(cosine).reshape(hier_feature.shape[0], prototypes.shape[1], *hier_feature.shape[2:])


def gsc_loss(cams, is_cams, eps=EPS):
    """
    General-Specific Consistency (docs/sipe.md §3.5): mean over images, all K+1 channels and
    all positions of |M_k(i) − M̃_k(i) / (max M̃_k + eps)|, with M the (masked) normalised CAM. Both sides
    receive gradients (no detach).
    """
    return (cams - max_normalize(is_cams, eps)).abs().mean()
