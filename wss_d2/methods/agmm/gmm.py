"""
AGMM's equations (docs/agmm.md §3-§4), batched over images and classes.

Shapes: B images, K classes, C feature channels; the decoder feature F is (B, C, h, w) at
stride 4, labels Y are (B, H, W) at input resolution in the internal sparse convention
(0..K-1 labelled, K unlabelled, 255 void/padding). ε = 1e-6 everywhere.
"""
import torch
import torch.nn.functional as F

__all__ = [
    "EPS",
    "VOID",
    "SIGMA_MODES",
    "PROTO_CENTERS",
    "class_centroids",
    "l1_distances",
    "gmm_predictions",
    "full_resolution_gmm",
    "soft_bce",
    "partial_cross_entropy",
    "gmm_to_prediction_loss",
    "labels_to_gmm_loss",
    "centroid_repulsion_loss",
    "absent_class_loss",
]

EPS = 1e-6
VOID = 255
SIGMA_MODES = ("fixed", "adaptive", "global")
PROTO_CENTERS = ("sum", "mean")


def _pixel_centre_grid(rows, cols, height, width):
    """grid_sample coordinates (align_corners=False) of full-resolution pixel centres."""
    x = (2 * cols.double() + 1) / width - 1
    y = (2 * rows.double() + 1) / height - 1
    return torch.stack([x, y], dim=-1)


def class_centroids(features, labels, num_classes):
    """
    μ_{b,k} = Σ_{i ∈ L_b^k} F̂_b(i) / (|L_b^k| + ε) (docs/agmm.md §3.1), with F̂ the feature
    bilinearly upsampled (align_corners=False) to the label size. F̂ is sampled at the labelled
    pixels only (grid_sample at pixel centres, border padding: the same values as the
    upsampling), so memory is B·C·(labelled pixels), never B·C·H·W. Differentiable w.r.t.
    `features`.
    Returns (centroids (B, K, C), present (B, K) float: a_{b,k} = 1[|L_b^k| > 0]).
    """
    b, c = features.shape[:2]
    height, width = labels.shape[-2:]
    labelled = labels < num_classes
    counts = torch.zeros(b, num_classes, device=features.device, dtype=features.dtype)
    sums = torch.zeros(b * num_classes, c, device=features.device, dtype=features.dtype)
    if labelled.any():
        image, rows, cols = labelled.nonzero(as_tuple=True)
        classes = labels[image, rows, cols]
        # one grid per image, padded to the longest list of labelled pixels
        per_image = torch.bincount(image, minlength=b)
        longest = int(per_image.max())
        order = torch.arange(len(image), device=labels.device) - torch.cumsum(per_image, 0)[image] + per_image[image]
        grid = torch.zeros(b, 1, longest, 2, device=features.device, dtype=features.dtype)
        grid[image, 0, order] = _pixel_centre_grid(rows, cols, height, width).to(features.dtype)
        sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)
        sampled = sampled[:, :, 0].permute(0, 2, 1)[image, order]  # (labelled pixels, C)
        flat = image * num_classes + classes
        sums = sums.index_add(0, flat, sampled)
        counts = torch.bincount(flat, minlength=b * num_classes).reshape(b, num_classes).to(features.dtype)
    centroids = sums.reshape(b, num_classes, c) / (counts[..., None] + EPS)
    return centroids, (counts > 0).to(features.dtype)


class _MeanL1Distance(torch.autograd.Function):
    """
    d_{b,k}(j) = mean_c |F_b(c, j) − μ_{b,k}(c)| with memory bounded by a few B·C·h·w
    tensors: the forward is a p=1 cdist, the backward accumulates sign(F − μ_k) one class at
    a time (classes whose incoming gradient is all zero, i.e. absent ones, are skipped).
    Autograd of the broadcast form, or of cdist's own backward on GPU, keeps B·K·C·h·w.
    """

    @staticmethod
    def forward(ctx, features, centroids):
        b, c, h, w = features.shape
        flat = features.flatten(2).transpose(1, 2).contiguous()  # B, hw, C
        distances = torch.cdist(flat, centroids.contiguous(), p=1) / c  # B, hw, K
        ctx.save_for_backward(features, centroids)
        return distances.transpose(1, 2).reshape(b, -1, h, w)

    @staticmethod
    def backward(ctx, grad):
        features, centroids = ctx.saved_tensors
        c = features.shape[1]
        grad_features = torch.zeros_like(features) if ctx.needs_input_grad[0] else None
        grad_centroids = torch.zeros_like(centroids) if ctx.needs_input_grad[1] else None
        for k in range(centroids.shape[1]):
            weight = grad[:, k : k + 1]
            if not weight.any():
                continue
            signed = (features - centroids[:, k, :, None, None]).sign_().mul_(weight / c)
            if grad_features is not None:
                grad_features += signed
            if grad_centroids is not None:
                grad_centroids[:, k] = -signed.sum(dim=(2, 3))
        return grad_features, grad_centroids


def l1_distances(features, centroids):
    """d_{b,k}(j) = (1/C) Σ_c |F_b(c, j) − μ_{b,k}(c)| (docs/agmm.md §3.2): (B, K, h, w) from
    features (B, C, h, w) and centroids (B, K, C), never materialising the (B, K, C, h, w)
    broadcast of the original code, in the forward or the backward pass."""
    return _MeanL1Distance.apply(features, centroids)


def gmm_predictions(distances, present, valid, sigma_mode="fixed", probabilities=None, image_labels=None):
    """
    Per-class Gaussian kernels at the feature resolution (docs/agmm.md §3.2):
    d̃ = d · a_{b,k} · v_b, with v the valid-pixel mask downsampled bilinearly to (h, w).
      fixed    (released code): g = exp(−d̃²);
      adaptive (paper Eq. 7):   g = exp(−d̃² / (2σ² + ε)), σ²_{b,k} = Σ_j q d̃² / (Σ_j q + ε),
               q = Down(P_{b,k} · c_{b,k}) · v, σ² without gradient;
      global:  σ²_{b,k} = mean of d̃² over the (fractionally) valid positions, without gradient.
    `valid` (B, h, w) is v; `probabilities` (B, K, h, w) the downsampled softmax and
    `image_labels` (B, K) the image-level c, both for "adaptive" only. Returns g (B, K, h, w);
    absent classes are masked by the caller (G = a · Up(g)).
    """
    if sigma_mode not in SIGMA_MODES:
        raise ValueError(f"MODEL.AGMM.SIGMA_MODE must be one of {SIGMA_MODES}, got {sigma_mode!r}")
    masked = distances * present[:, :, None, None] * valid[:, None]
    squared = masked**2
    if sigma_mode == "fixed":
        return torch.exp(-squared)
    with torch.no_grad():
        if sigma_mode == "adaptive":
            if probabilities is None or image_labels is None:
                raise ValueError("SIGMA_MODE 'adaptive' needs the softmax probabilities and the image-level labels")
            weights = probabilities * image_labels[:, :, None, None] * valid[:, None]
        else:
            weights = valid[:, None].expand_as(squared)
        variance = (weights * squared).sum(dim=(2, 3)) / (weights.sum(dim=(2, 3)) + EPS)
    return torch.exp(-squared / (2 * variance[:, :, None, None] + EPS))


def full_resolution_gmm(g, present, size):
    """G_{b,k} = a_{b,k} · Up(g_{b,k}) at the label size (bilinear, align_corners=False): in
    (0, 1] for classes present in the crop, exactly 0 for the others."""
    return present[:, :, None, None] * F.interpolate(g, size=size, mode="bilinear", align_corners=False)


def soft_bce(p, t):
    """BCE(p; t) = −t·log(p + ε) − (1 − t)·log(1 − p + ε), element-wise, soft target t."""
    return -t * torch.log(p + EPS) - (1 - t) * torch.log(1 - p + EPS)


def _zero(reference):
    return reference.sum() * 0.0  # an empty mean: 0 with the graph kept, not NaN


def partial_cross_entropy(logits, labels, num_classes):
    """L_pce: cross entropy averaged over labelled pixels (labels < K); 0 if there are none."""
    labelled = labels < num_classes
    if not labelled.any():
        return _zero(logits)
    return F.cross_entropy(logits, torch.where(labelled, labels, torch.full_like(labels, VOID)), ignore_index=VOID)


def _class_average(per_class, present):
    """Σ_k a_k · x_k / (Σ_k a_k + ε) per pixel; per_class (B, K, H, W), present (B, K)."""
    weights = present[:, :, None, None]
    return (per_class * weights).sum(dim=1) / (weights.sum(dim=1) + EPS)


def gmm_to_prediction_loss(probabilities, gmm, present, valid):
    """L_g2p: ½ BCE(P; G) averaged over present classes, then over all valid pixels (labelled
    and unlabelled). G is not detached: the gradient also reaches the features
    (docs/agmm.md §4.2)."""
    if not valid.any():
        return _zero(probabilities)
    per_pixel = _class_average(0.5 * soft_bce(probabilities, gmm), present)
    return per_pixel[valid].mean()


def labels_to_gmm_loss(gmm, labels, present, num_classes):
    """L_l2g: ½ BCE(G; 1[Y = k]) averaged over present classes, then over labelled pixels."""
    labelled = labels < num_classes
    if not labelled.any():
        return _zero(gmm)
    onehot = F.one_hot(labels.clamp(max=num_classes), num_classes + 1)[..., :num_classes]
    per_pixel = _class_average(0.5 * soft_bce(gmm, onehot.permute(0, 3, 1, 2).to(gmm.dtype)), present)
    return per_pixel[labelled].mean()


def centroid_repulsion_loss(centroids, present, center="sum"):
    """
    L_proto (docs/agmm.md §4.4): S_k = Σ_b μ_{b,k} · n_k / (n_k + ε) ("sum", the released
    code; "mean" divides by n_k instead), n_k = Σ_b a_{b,k}; the mean over pairs k < l of
    classes present in the batch of exp(−(mean_c |S_k − S_l|)²); 0 with fewer than two such
    classes.
    """
    if center not in PROTO_CENTERS:
        raise ValueError(f"MODEL.AGMM.PROTO_CENTER must be one of {PROTO_CENTERS}, got {center!r}")
    counts = present.sum(dim=0)  # n_k
    summed = (centroids * present[..., None]).sum(dim=0)  # absent centroids are 0 already
    scale = counts / (counts + EPS) if center == "sum" else 1.0 / (counts + EPS)
    centers = summed * scale[:, None]
    active = (counts > 0).nonzero(as_tuple=True)[0]
    if len(active) < 2:
        return _zero(centroids)
    chosen = centers[active]
    distances = torch.cdist(chosen[None], chosen[None], p=1)[0] / centers.shape[1]
    first, second = torch.triu_indices(len(active), len(active), offset=1, device=centroids.device)
    return torch.exp(-distances[first, second] ** 2).sum() / (len(first) + EPS)


def absent_class_loss(probabilities, image_labels, valid):
    """L_cls: Σ_k −(1 − c_k)·log(1 − P_k + ε), averaged over valid pixels (c image-level)."""
    if not valid.any():
        return _zero(probabilities)
    absent = (1 - image_labels)[:, :, None, None]
    per_pixel = (-absent * torch.log(1 - probabilities + EPS)).sum(dim=1)
    return per_pixel[valid].mean()
