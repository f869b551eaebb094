"""The dense-CRF energy (regularised) loss of MCC (docs/mcc.md §5.4, Errata 1)."""
import numpy as np
import pytest
import torch
from detectron2.config import CfgNode

from wss_d2.modeling.energy_loss import (
    DenseEnergyFunction, DenseEnergyLoss, add_energy_loss_config, energy_gate, exact_filter, lattice_filter,
)


def dense_kernel(image, sigma_rgb, sigma_xy):
    """(N, N) float64 bilateral Gaussian of one (3, H, W) image, element by element definition."""
    _, h, w = image.shape
    ys, xs = np.mgrid[:h, :w]
    pos = np.stack([ys.ravel(), xs.ravel()], 1).astype(np.float64)
    rgb = image.reshape(3, -1).T.astype(np.float64)
    d_pos = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    d_rgb = ((rgb[:, None] - rgb[None]) ** 2).sum(-1)
    return np.exp(-d_pos / (2 * sigma_xy ** 2) - d_rgb / (2 * sigma_rgb ** 2))


def toy(b=1, k=3, h=12, w=14, seed=0, image="noise"):
    g = torch.Generator().manual_seed(seed)
    if image == "noise":
        images = torch.randint(0, 256, (b, 3, h, w), generator=g).float()
    else:  # one colour: a purely spatial Gaussian
        images = torch.full((b, 3, h, w), 90.0)
    probs = torch.rand(b, k, h, w, generator=g).mul(3).softmax(dim=1)
    return images, probs


def reference_energy(images, probs, rois, gate, sigma_rgb, sigma_xy):
    """−(1/B) Σ_k Σ_i S̃ G (W S̃) with the dense kernel, float64 numpy."""
    b, k, h, w = probs.shape
    total = 0.0
    for n in range(b):
        kern = dense_kernel(images[n].numpy(), sigma_rgb, sigma_xy)
        s = (probs[n] * rois[n]).double().reshape(k, -1).numpy()
        total -= ((s * gate[n].reshape(1, -1).double().numpy()) * (s @ kern.T)).sum()
    return total / b


def test_exact_filter_matches_dense_kernel():
    images, probs = toy(b=2, h=6, w=7)
    out = exact_filter(images, probs.double(), 15.0, 3.0, chunk=5)  # several chunks
    for n in range(2):
        kern = dense_kernel(images[n].numpy(), 15.0, 3.0)
        ref = probs[n].double().reshape(3, -1).numpy() @ kern.T
        np.testing.assert_allclose(out[n].reshape(3, -1).numpy(), ref, rtol=1e-9, atol=1e-12)


def test_lattice_filter_sign_linearity_and_self_term():
    images, probs = toy(h=10, w=11, seed=1)
    a = lattice_filter(images, probs, 15.0, 4.0)
    assert (a > 0).all()  # positive input, positive kernel: log(Q_c / Q_extra) has the right sign
    # linear in the maps (the internal rescaling must cancel)
    b = lattice_filter(images, 3.0 * probs, 15.0, 4.0)
    torch.testing.assert_close(b, 3.0 * a, rtol=1e-4, atol=1e-5)
    c = lattice_filter(images, probs - 0.5, 15.0, 4.0)
    ones = lattice_filter(images, torch.full_like(probs, 0.5), 15.0, 4.0)
    torch.testing.assert_close(c, a - ones, rtol=1e-3, atol=1e-4)
    # a delta: the response peaks at its own pixel (the self term is included)
    delta = torch.zeros(1, 1, 10, 11)
    delta[0, 0, 5, 6] = 1.0
    response = lattice_filter(images, delta, 15.0, 4.0)[0, 0]
    assert response.argmax().item() == 5 * 11 + 6 and response.max() > 0.2


@pytest.mark.parametrize(
    "image, ratio_range, min_corr, element_range",
    [("flat", (0.4, 0.65), 0.97, (0.35, 0.7)), ("noise", (0.25, 0.75), 0.8, (0.03, 1.0))],
)
def test_lattice_against_exact_gaussian(image, ratio_range, min_corr, element_range):
    """The lattice approximates W at about half its value (docs/mcc.md Errata 1)."""
    images, probs = toy(h=24, w=24, seed=2, image=image)
    lat = lattice_filter(images, probs, 15.0, 5.0).double()
    ex = exact_filter(images, probs.double(), 15.0, 5.0)
    ratio = ((lat * probs).sum() / (ex * probs).sum()).item()
    assert ratio_range[0] < ratio < ratio_range[1]
    corr = np.corrcoef(lat.flatten().numpy(), ex.flatten().numpy())[0, 1]
    assert corr > min_corr
    elementwise = lat / ex
    assert element_range[0] < elementwise.min() and elementwise.max() < element_range[1]


def test_gate():
    probs = torch.tensor([[[[0.9, 0.5, 0.6]], [[0.1, 0.5, 0.4]]]])  # (1, 2, 1, 3)
    rois = torch.tensor([[[1.0, 1.0, 0.0]]])
    unlabeled = torch.tensor([[[False, False, True]]])
    assert energy_gate(probs, rois, unlabeled).flatten().tolist() == pytest.approx([0.1, 0.5, 1.0])
    assert energy_gate(probs, rois, torch.zeros_like(unlabeled)).flatten().tolist() == pytest.approx([0.1, 0.5, 0.0])


def test_loss_value_exact_kernel_by_hand():
    images, probs = toy(b=2, h=8, w=10, seed=3)
    rois = torch.ones(2, 8, 10)
    rois[1, :, 7:] = 0  # padding on the right of image 1
    labels = torch.randint(0, 3, (2, 8, 10), generator=torch.Generator().manual_seed(0))
    labels[0, :3] = 255
    labels[1, :, 7:] = 255
    loss = DenseEnergyLoss(weight=1e-3, sigma_rgb=15.0, sigma_xy=4.0, scale=1.0, kernel="exact")
    value = loss(images, probs.double(), rois.double(), labels)
    # the gate by hand: 1 where ignored, else max(0, R − max_k S_k)
    gate = (rois - probs.max(dim=1).values).clamp(min=0)
    gate[labels == 255] = 1.0
    ref = 1e-3 * reference_energy(images, probs, rois, gate, 15.0, 4.0)
    assert value.item() == pytest.approx(ref, rel=1e-9)
    assert value.item() < 0


def test_loss_value_lattice_about_half_of_exact():
    """Default lattice kernel against the exact one on a flat image (ratio known to be ≈0.5)."""
    images, probs = toy(b=1, k=3, h=48, w=48, seed=4, image="flat")
    rois = torch.ones(1, 48, 48)
    labels = torch.full((1, 48, 48), 255)
    lat = DenseEnergyLoss(sigma_xy=20.0)(images, probs, rois, labels)  # 24x24 at scale 0.5, σ 10 px
    ex = DenseEnergyLoss(sigma_xy=20.0, kernel="exact")(images, probs.double(), rois.double(), labels)
    assert 0.4 < (lat / ex).item() < 0.65


@pytest.mark.parametrize("gate_value", [1.0, 0.3])
def test_backward_gradcheck_exact(gate_value):
    """With a constant gate the original's −2·G·W S̃·R/B is the true gradient of E."""
    images, probs = toy(b=2, k=2, h=4, w=5, seed=5)
    probs = probs.double().requires_grad_(True)
    rois = torch.ones(2, 4, 5, dtype=torch.float64)
    rois[0, :, 4] = 0
    gate = torch.full((2, 4, 5), gate_value, dtype=torch.float64)

    def energy(p):
        return DenseEnergyFunction.apply(images, p, rois, gate, 15.0, 2.0, "exact", 7)

    assert torch.autograd.gradcheck(energy, (probs,), eps=1e-6, atol=1e-8)


def test_backward_is_the_original_formula_with_a_varying_gate():
    """With a varying gate the backward stays −2·G·(W S̃)·R/B (not the true gradient)."""
    images, probs = toy(b=2, k=2, h=4, w=5, seed=6)
    probs = probs.double().requires_grad_(True)
    rois = torch.ones(2, 4, 5, dtype=torch.float64)
    rois[1, 0] = 0
    gate = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    DenseEnergyFunction.apply(images, probs, rois, gate, 15.0, 2.0, "exact", 2048).backward()
    b, k = 2, 2
    expected = np.zeros((b, k, 20))
    true = np.zeros((b, k, 20))
    for n in range(b):
        kern = dense_kernel(images[n].numpy(), 15.0, 2.0)
        s = (probs[n].detach() * rois[n]).reshape(k, -1).numpy()
        g, r = gate[n].reshape(-1).numpy(), rois[n].reshape(-1).numpy()
        expected[n] = -2 * g * (s @ kern.T) * r / b
        true[n] = -(g * (s @ kern.T) + (g * s) @ kern.T) * r / b
    grad = probs.grad.reshape(b, k, -1).numpy()
    np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-14)
    assert np.abs(grad - true).max() > 1e-3 * np.abs(true).max()


def test_backward_lattice_matches_its_forward():
    """
    Lattice path with its own matrix W_lat (filtered deltas): finite differences of the forward
    give −(W_lat + W_latᵀ) S̃ R / B, the backward gives the original's −2 W_lat S̃ R / B; the
    lattice is nearly symmetric, so the two agree closely.
    """
    h, w, k = 6, 7, 2
    images, probs = toy(b=1, k=k, h=h, w=w, seed=8)
    n = h * w
    w_lat = lattice_filter(images, torch.eye(n).view(1, n, h, w), 15.0, 3.0)[0].reshape(n, n).double().T
    # column j of W_lat is the response to a delta at j
    probs = probs.double().requires_grad_(True)
    rois = torch.ones(1, h, w, dtype=torch.float64)
    rois[0, 0] = 0
    gate = torch.ones(1, h, w, dtype=torch.float64)

    def energy(p):
        return DenseEnergyFunction.apply(images, p, rois, gate, 15.0, 3.0, "lattice", 2048)

    energy(probs).backward()
    s = (probs.detach() * rois[:, None]).reshape(k, n)
    r = rois.reshape(1, n)
    backward_ref = -2 * (s @ w_lat.T) * r
    true_grad = -(s @ (w_lat + w_lat.T)) * r
    torch.testing.assert_close(probs.grad.reshape(k, n), backward_ref, rtol=1e-4, atol=1e-6)
    direction = torch.randn(1, k, h, w, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    step = 0.5  # E is quadratic in S: central differences are exact up to rounding
    with torch.no_grad():
        numeric = (energy(probs + step * direction) - energy(probs - step * direction)).item() / (2 * step)
    assert numeric == pytest.approx((true_grad * direction.reshape(k, n)).sum().item(), rel=1e-3)
    assert numeric == pytest.approx((probs.grad * direction).sum().item(), rel=0.1)


def test_backward_lattice_finite_difference():
    """Lattice path, whole module (bilinear down-sampling included), labels all ignored (G = 1)."""
    images, probs = toy(b=1, k=3, h=20, w=24, seed=7)
    logits = torch.randn(1, 3, 20, 24, generator=torch.Generator().manual_seed(2))
    rois = torch.ones(1, 20, 24)
    rois[:, :, 20:] = 0
    labels = torch.full((1, 20, 24), 255)
    loss = DenseEnergyLoss(weight=1.0, sigma_xy=8.0)

    def value(z):
        return loss(images, z.softmax(dim=1), rois, labels)

    z = logits.clone().requires_grad_(True)
    value(z).backward()
    direction = torch.randn(1, 3, 20, 24, generator=torch.Generator().manual_seed(3))
    analytic = (z.grad * direction).sum().item()
    h = 1e-2
    with torch.no_grad():
        numeric = (value(logits + h * direction) - value(logits - h * direction)).item() / (2 * h)
    assert analytic == pytest.approx(numeric, rel=0.1)  # W_lat is not exactly symmetric
    assert abs(analytic) > 1e-3


def test_clear_errors():
    images, probs = toy(h=8, w=8)
    rois = torch.ones(1, 8, 8)
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    loss = DenseEnergyLoss()
    with pytest.raises(ValueError, match="images must be"):
        loss(images[:, :, :6], probs, rois, labels)
    with pytest.raises(ValueError, match="rois must be"):
        loss(images, probs, rois[:, :6], labels)
    with pytest.raises(ValueError, match="uint8 range"):
        loss(images * 2 + 10, probs, rois, labels)
    with pytest.raises(ValueError, match="uint8 range"):
        loss(images - 128, probs, rois, labels)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        loss(images / 255.0, probs, rois, labels)
    with pytest.raises(ValueError, match="kernel"):
        DenseEnergyLoss(kernel="gaussian")
    with pytest.raises(ValueError, match="share batch size"):
        lattice_filter(images, probs[:, :, :4], 15.0, 5.0)
    # uint8 images are accepted as they are
    assert torch.isfinite(loss(images.to(torch.uint8), probs, rois, labels))


def test_config():
    cfg = CfgNode({"MODEL": CfgNode({"MCC": CfgNode({"REG": CfgNode()})})})
    add_energy_loss_config(cfg.MODEL.MCC.REG)
    loss = DenseEnergyLoss(cfg)
    assert (loss.weight, loss.sigma_rgb, loss.sigma_xy, loss.scale, loss.kernel) == (1e-7, 15.0, 100.0, 0.5, "lattice")
