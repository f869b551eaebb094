"""
The regularised loss of MCC (docs/mcc.md §5.4): the dense-CRF energy of Tang et al.'s "rloss",
E = −(1/B) Σ_k Σ_i S̃_k(i) · G_i · (W S̃_k)(i), with S̃ = S ⊙ R the soft prediction inside the
image box, G the "unconfident" gate and W an unnormalised bilateral (position + RGB) Gaussian.

Two filters compute W S̃:

* "lattice" (default, as the original): the permutohedral lattice, run on CPU per image through
  pydensecrf. pydensecrf does not expose the filter alone, but one mean-field step with zero unary,
  a Potts compatibility of 1 and the maps plus one all-zero label as Q gives
  Q_c ∝ exp((W S̃)_c) and Q_extra ∝ exp(0), so (W S̃)_c = log(Q_c / Q_extra). This reproduces the
  original lattice's output (docs/mcc.md Errata 1). The lattice is only an approximation of W:
  its output is roughly half the exact Gaussian sum, and the ratio varies from image to image.
* "exact": the dense Gaussian in row chunks with torch (on the inputs' device). Because of the
  lattice's ≈0.5 factor this roughly DOUBLES the effective weight of the loss; it is an
  alternative for checks, not a drop-in replacement.

The backward is the original's, ∂E/∂S_k(i) = −2 · G_i · (W S̃_k)(i) · R_i / B, with G held
constant. It is the true gradient of E when G is constant over the image (and W symmetric);
otherwise the true one would be −(G ⊙ W S̃ + W (G ⊙ S̃)) ⊙ R / B.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable

__all__ = [
    "DenseEnergyLoss",
    "DenseEnergyFunction",
    "add_energy_loss_config",
    "energy_gate",
    "lattice_filter",
    "exact_filter",
    "KERNELS",
]

CONFIG_NODE = "MODEL.MCC.REG"
KERNELS = ("lattice", "exact")
# the largest per-class sum of the scaled maps bounds the filtered values that go through
# pydensecrf's softmax; about 10 keeps exp() in float32 range with room for the lattice's gain
LATTICE_SCALE_TARGET = 10.0


def add_energy_loss_config(node):
    """Set the keys `DenseEnergyLoss.from_config` reads on a config node (docs/mcc.md §5.4, §14.6)."""
    # factor of the energy (the loss weight in the total loss, 0.05, is applied elsewhere)
    node.WEIGHT = 1e-7
    # colour std of the bilateral kernel (0-255 RGB units)
    node.SIGMA_RGB = 15.0
    # spatial std (px) at full resolution; multiplied by SCALE (100 -> 50 px at 224)
    node.SIGMA_XY = 100.0
    # resolution factor of image, prediction, box and labels before the filter
    node.SCALE = 0.5
    # "lattice": permutohedral lattice as the original; "exact": dense Gaussian (about 2x larger)
    node.KERNEL = "lattice"
    # rows of the dense kernel built at once by the "exact" filter
    node.EXACT_CHUNK = 2048


# --------------------------------------------------------------------------- filters
def _check_filter_inputs(images: torch.Tensor, maps: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"energy filter: images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    if maps.dim() != 4:
        raise ValueError(f"energy filter: maps must be (B, K, H, W), got shape {tuple(maps.shape)}")
    if images.shape[0] != maps.shape[0] or images.shape[-2:] != maps.shape[-2:]:
        raise ValueError(
            f"energy filter: images {tuple(images.shape)} and maps {tuple(maps.shape)} must share "
            "batch size and (H, W)"
        )


def _uint8_images(images: torch.Tensor) -> np.ndarray:
    """(B, H, W, 3) contiguous uint8 RGB array of (B, 3, H, W) 0–255 images (rounded)."""
    if images.dtype != torch.uint8:
        images = images.detach().round().clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy())


def lattice_filter(images: torch.Tensor, maps: torch.Tensor, sigma_rgb: float, sigma_xy: float) -> torch.Tensor:
    """
    W · maps with the permutohedral lattice of pydensecrf (unnormalised bilateral kernel with
    the self term, diagonal feature scaling sxy = sigma_xy, srgb = sigma_rgb), per image on CPU.

    Args:
        images: (B, 3, H, W) uint8 or 0–255 images (floats are rounded to uint8).
        maps: (B, K, H, W) maps to filter (any real values).
    Returns:
        (B, K, H, W) float32 filtered maps on the device of `maps`.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf import eigen

    _check_filter_inputs(images, maps)
    b, k, h, w = maps.shape
    rgb = _uint8_images(images)
    values = maps.detach().to("cpu", torch.float64).reshape(b, k, h * w).numpy()
    out = np.empty((b, k, h * w), np.float32)
    for n in range(b):
        # the filter is linear: scale the maps down so exp() of the filtered values stays finite
        bound = np.abs(values[n]).sum(axis=1).max()
        scale = LATTICE_SCALE_TARGET / bound if bound > 0 else 1.0
        crf = dcrf.DenseCRF2D(w, h, k + 1)
        crf.setUnaryEnergy(np.zeros((k + 1, h * w), np.float32))
        crf.addPairwiseBilateral(
            sxy=float(sigma_xy), srgb=float(sigma_rgb), rgbim=rgb[n], compat=1.0,
            kernel=dcrf.DIAG_KERNEL, normalization=dcrf.NO_NORMALIZATION,
        )
        q_in = np.zeros((k + 1, h * w), np.float32)  # the extra label k stays all-zero
        q_in[:k] = values[n] * scale
        q = eigen.matrixXf(q_in)
        _, tmp1, tmp2 = crf.startInference()
        # Potts compat 1 and zero unary: Q <- softmax_labels(+W Q), the extra label gets exp(0)
        crf.stepInference(q, tmp1, tmp2)
        q_out = np.array(q, dtype=np.float64)
        out[n] = (np.log(q_out[:k]) - np.log(q_out[k:])) / scale
    return torch.from_numpy(out).view(b, k, h, w).to(maps.device)


def exact_filter(
    images: torch.Tensor, maps: torch.Tensor, sigma_rgb: float, sigma_xy: float, chunk: int = 2048
) -> torch.Tensor:
    """
    W · maps with the exact dense bilateral Gaussian
    W_ij = exp(−‖p_i − p_j‖² / (2 sigma_xy²) − ‖I_i − I_j‖² / (2 sigma_rgb²)) (self term included),
    built `chunk` rows at a time, in the dtype and on the device of `maps`.

    Args:
        images: (B, 3, H, W) uint8 or 0–255 images (used as they are, not rounded).
        maps: (B, K, H, W).
    Returns:
        (B, K, H, W) filtered maps.
    """
    _check_filter_inputs(images, maps)
    if chunk < 1:
        raise ValueError(f"exact_filter: chunk must be >= 1, got {chunk}")
    b, k, h, w = maps.shape
    dtype = maps.dtype if maps.dtype in (torch.float32, torch.float64) else torch.float32
    ys, xs = torch.meshgrid(
        torch.arange(h, device=maps.device, dtype=dtype), torch.arange(w, device=maps.device, dtype=dtype),
        indexing="ij",
    )
    position = torch.stack([xs, ys], dim=-1).reshape(1, h * w, 2) / sigma_xy
    colour = images.to(maps.device, dtype).reshape(b, 3, h * w).transpose(1, 2) / sigma_rgb
    features = torch.cat([position.expand(b, -1, -1), colour], dim=2)  # (B, N, 5)
    features = features - features.mean(dim=1, keepdim=True)  # smaller norms, less cancellation
    sq_norm = (features ** 2).sum(dim=2)  # (B, N)
    values = maps.to(dtype).reshape(b, k, h * w).transpose(1, 2)  # (B, N, K)
    out = torch.empty_like(values)
    for start in range(0, h * w, chunk):
        rows = slice(start, start + chunk)
        dist = sq_norm[:, rows, None] + sq_norm[:, None, :] - 2 * features[:, rows] @ features.transpose(1, 2)
        out[:, rows] = torch.exp(-0.5 * dist.clamp_(min=0)) @ values
    return out.transpose(1, 2).reshape(b, k, h, w)


# --------------------------------------------------------------------------- energy
def energy_gate(probs: torch.Tensor, rois: torch.Tensor, unlabeled: torch.Tensor) -> torch.Tensor:
    """
    (B, H, W) gate G = 1 where the pseudo label is ignored, else max(0, R − max_k S_k), a constant
    (no gradient). probs (B, K, H, W), rois (B, H, W) in {0, 1}, unlabeled (B, H, W) bool.
    """
    gate = (rois.to(probs.dtype) - probs.detach().max(dim=1).values).clamp(min=0)
    return gate.masked_fill(unlabeled, 1.0)


class DenseEnergyFunction(torch.autograd.Function):
    """
    E = −(1/B) Σ S̃ · G · (W S̃), S̃ = S ⊙ R, with the original's backward
    ∂E/∂S = −2 · G · (W S̃) · R / B (G and R constant).
    apply(images, probs, rois, gate, sigma_rgb, sigma_xy, kernel, chunk) → 0-d tensor.
    """

    @staticmethod
    def forward(ctx, images, probs, rois, gate, sigma_rgb, sigma_xy, kernel="lattice", chunk=2048):
        b = probs.shape[0]
        masked = probs * rois[:, None]
        if kernel == "lattice":
            filtered = lattice_filter(images, masked, sigma_rgb, sigma_xy).to(probs.dtype)
        elif kernel == "exact":
            filtered = exact_filter(images, masked, sigma_rgb, sigma_xy, chunk).to(probs.dtype)
        else:
            raise ValueError(f"DenseEnergyFunction: kernel must be one of {KERNELS}, got {kernel!r}")
        gated = filtered * gate[:, None]  # G · (W S̃)
        ctx.save_for_backward(gated, rois)
        # float64 sum: the products are many and small
        energy = -(masked.double() * gated.double()).sum() / b
        return energy.to(probs.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        gated, rois = ctx.saved_tensors
        grad = -2.0 * grad_output * gated * rois[:, None] / gated.shape[0]
        return None, grad, None, None, None, None, None, None


class DenseEnergyLoss(nn.Module):
    """
    The regularised (dense-CRF energy) loss of docs/mcc.md §5.4, weight · E at `scale` resolution:
    the image and ROI are resized with nearest neighbour, the softmax prediction bilinearly
    (align_corners=False), the pseudo label with nearest neighbour; σ_xy is multiplied by `scale`.
    """

    @configurable
    def __init__(
        self,
        *,
        weight: float = 1e-7,
        sigma_rgb: float = 15.0,
        sigma_xy: float = 100.0,
        scale: float = 0.5,
        kernel: str = "lattice",
        exact_chunk: int = 2048,
        ignore_index: int = 255,
    ):
        """
        Args:
            weight: factor of E (1e-7 in MCC).
            sigma_rgb: colour std of the bilateral kernel, in 0–255 units.
            sigma_xy: spatial std in full-resolution pixels (used as sigma_xy · scale).
            scale: resolution factor applied before filtering (0 < scale <= 1).
            kernel: "lattice" (permutohedral, as the original) or "exact" (dense Gaussian;
                about 2x larger values, see the module docstring).
            exact_chunk: kernel rows per block of the exact filter.
            ignore_index: pseudo-label value of uncertain / padded pixels (gate 1).
        """
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"DenseEnergyLoss: kernel must be one of {KERNELS}, got {kernel!r}")
        if not 0 < scale <= 1:
            raise ValueError(f"DenseEnergyLoss: scale must be in (0, 1], got {scale}")
        for name, value in (("sigma_rgb", sigma_rgb), ("sigma_xy", sigma_xy)):
            if not value > 0:
                raise ValueError(f"DenseEnergyLoss: {name} must be > 0, got {value}")
        self.weight = float(weight)
        self.sigma_rgb = float(sigma_rgb)
        self.sigma_xy = float(sigma_xy)
        self.scale = float(scale)
        self.kernel = kernel
        self.exact_chunk = int(exact_chunk)
        self.ignore_index = int(ignore_index)

    @classmethod
    def from_config(cls, cfg, node: str = CONFIG_NODE):
        """Read `<node>.*` (default MODEL.MCC.REG, see `add_energy_loss_config`)."""
        reg = cfg
        for name in node.split("."):
            reg = reg[name]
        return {
            "weight": reg.WEIGHT,
            "sigma_rgb": reg.SIGMA_RGB,
            "sigma_xy": reg.SIGMA_XY,
            "scale": reg.SCALE,
            "kernel": reg.KERNEL,
            "exact_chunk": reg.EXACT_CHUNK,
        }

    def extra_repr(self) -> str:
        return (
            f"weight={self.weight}, sigma_rgb={self.sigma_rgb}, sigma_xy={self.sigma_xy}, "
            f"scale={self.scale}, kernel={self.kernel!r}"
        )

    @staticmethod
    def _check(images, probs, rois, labels) -> None:
        if probs.dim() != 4:
            raise ValueError(f"DenseEnergyLoss: probs must be (B, K, H, W), got shape {tuple(probs.shape)}")
        b, _, h, w = probs.shape
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] != b or images.shape[-2:] != (h, w):
            raise ValueError(
                f"DenseEnergyLoss: images must be (B, 3, H, W) = {(b, 3, h, w)} like probs "
                f"{tuple(probs.shape)}, got {tuple(images.shape)}"
            )
        for name, value in (("rois", rois), ("labels", labels)):
            if tuple(value.shape) != (b, h, w):
                raise ValueError(
                    f"DenseEnergyLoss: {name} must be (B, H, W) = {(b, h, w)} like probs, got {tuple(value.shape)}"
                )
        if images.dtype != torch.uint8:
            low, high = float(images.min()), float(images.max())
            if low < -0.5 or high > 255.5:
                raise ValueError(
                    f"DenseEnergyLoss: images must be 0-255 RGB (uint8 range), got values in [{low:.3g}, {high:.3g}]; "
                    "de-normalise with x * pixel_std + pixel_mean"
                )
            if high <= 1.0 and bool((images != images.round()).any()):
                raise ValueError(
                    f"DenseEnergyLoss: images look like [0, 1] floats (max {high:.3g}); "
                    "sigma_rgb is in 0-255 units, pass the image times 255"
                )

    def forward(
        self, images: torch.Tensor, probs: torch.Tensor, rois: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            images: (B, 3, H, W) 0–255 RGB (uint8, or floats such as the de-normalised view).
            probs: (B, K, H, W) softmax of the (upsampled) segmentation logits; gets the gradient.
            rois: (B, H, W) 1 inside the image box, 0 in the padding.
            labels: (B, H, W) pseudo labels, `ignore_index` where uncertain or padded.
        Returns:
            0-d tensor weight · E.
        """
        self._check(images, probs, rois, labels)
        images = images.float()
        rois = rois.to(probs.dtype)
        if self.scale != 1.0:
            images = F.interpolate(images, scale_factor=self.scale, mode="nearest")
            probs = F.interpolate(probs, scale_factor=self.scale, mode="bilinear", align_corners=False)
            rois = F.interpolate(rois[:, None], scale_factor=self.scale, mode="nearest")[:, 0]
            labels = F.interpolate(labels[:, None].float(), scale_factor=self.scale, mode="nearest")[:, 0]
        unlabeled = labels.long() == self.ignore_index
        gate = energy_gate(probs, rois, unlabeled)
        energy = DenseEnergyFunction.apply(
            images, probs, rois, gate, self.sigma_rgb, self.sigma_xy * self.scale, self.kernel, self.exact_chunk
        )
        return self.weight * energy
