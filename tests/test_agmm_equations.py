"""AGMM's equations (docs/agmm.md §3-§4, test plan docs/agmm.md §11) against hand-computed values."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from wss_d2.methods.agmm.gmm import (
    EPS,
    absent_class_loss,
    centroid_repulsion_loss,
    class_centroids,
    full_resolution_gmm,
    gmm_predictions,
    gmm_to_prediction_loss,
    l1_distances,
    labels_to_gmm_loss,
    partial_cross_entropy,
)
from wss_d2.methods.agmm._reference import class_centroids_naive, l1_distances_naive

K = 3
UNLABELLED = K
VOID = 255


def _bce(p, t):
    return -t * math.log(p + EPS) - (1 - t) * math.log(1 - p + EPS)


def test_toy_distance_and_gmm_by_hand():
    # C = 2, F = (1, 0), μ = (0, 0): d = 0.5; fixed g = exp(-0.25); σ² = 0.25 gives exp(-0.5)
    features = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1)
    centroids = torch.zeros(1, 1, 2)
    d = l1_distances(features, centroids)
    assert d.item() == pytest.approx(0.5)
    present, valid = torch.ones(1, 1), torch.ones(1, 1, 1)
    assert gmm_predictions(d, present, valid, "fixed").item() == pytest.approx(0.7788, abs=1e-4)
    probs, tags = torch.full((1, 1, 1, 1), 0.9), torch.ones(1, 1)
    assert gmm_predictions(d, present, valid, "adaptive", probs, tags).item() == pytest.approx(0.6065, abs=1e-4)
    assert gmm_predictions(d, present, valid, "global").item() == pytest.approx(0.6065, abs=1e-4)


def test_adaptive_variance_is_the_probability_weighted_mean_and_carries_no_gradient():
    d = torch.tensor([[[[0.2, 0.6]]]], requires_grad=True)  # one class, two positions
    probs = torch.tensor([[[[0.75, 0.25]]]], requires_grad=True)
    g = gmm_predictions(d, torch.ones(1, 1), torch.ones(1, 1, 2), "adaptive", probs, torch.ones(1, 1))
    variance = (0.75 * 0.04 + 0.25 * 0.36) / (1.0 + EPS)  # Σ q d² / Σ q
    expected = [math.exp(-0.04 / (2 * variance + EPS)), math.exp(-0.36 / (2 * variance + EPS))]
    assert g.flatten().tolist() == pytest.approx(expected, rel=1e-5)
    grad_d, grad_p = torch.autograd.grad(g.sum(), [d, probs], allow_unused=True)
    assert grad_p is None or not grad_p.any()  # P enters σ only, which is stop-gradient
    # dg/dd with σ held constant: -2 d / (2σ² + ε) · g
    manual = [-2 * x / (2 * variance + EPS) * e for x, e in zip([0.2, 0.6], expected)]
    assert grad_d.flatten().tolist() == pytest.approx(manual, rel=1e-4)
    # an absent class (a = 0) has d̃ = 0, and a void position too
    g = gmm_predictions(d, torch.zeros(1, 1), torch.ones(1, 1, 2), "fixed")
    assert g.flatten().tolist() == [1.0, 1.0]
    g = gmm_predictions(d, torch.ones(1, 1), torch.tensor([[[1.0, 0.0]]]), "fixed")
    assert g.flatten().tolist() == pytest.approx([math.exp(-0.04), 1.0])


def test_centroids_by_hand_and_gmm_is_one_at_the_centroid():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    labels = torch.tensor([[[0, 0], [1, UNLABELLED]]])
    centroids, present = class_centroids(features, labels, K)
    assert centroids.flatten().tolist() == pytest.approx([1.5 / (1 + EPS) * 2 / 2, 3.0 / (1 + EPS), 0.0], rel=1e-5)
    assert present.tolist() == [[1.0, 1.0, 0.0]]
    # a pixel whose feature equals its class centroid has G = 1
    d = l1_distances(features, centroids)
    g = gmm_predictions(d, present, torch.ones(1, 2, 2))
    assert g[0, 1, 1, 0].item() == pytest.approx(1.0, abs=1e-5)


def test_centroids_at_label_resolution_equal_the_upsampled_feature_average():
    torch.manual_seed(0)
    features = torch.randn(2, 8, 7, 9, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, K + 1, (2, 27, 35))
    labels[0, :3] = VOID
    labels[1] = torch.where(labels[1] == 2, UNLABELLED, labels[1])  # class 2 absent in image 1
    fast, present = class_centroids(features, labels, K)
    slow, present_slow = class_centroids_naive(features, labels, K)
    assert torch.equal(present, present_slow) and present[1, 2] == 0
    assert (fast - slow).abs().max() < 1e-10
    weights = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * weights).sum(), features)[0]
    g_slow = torch.autograd.grad((slow * weights).sum(), features)[0]
    assert (g_fast - g_slow).abs().max() < 1e-10


def test_l1_distance_equals_the_broadcast_form_with_its_gradients():
    torch.manual_seed(0)
    features = torch.randn(2, 16, 5, 6, dtype=torch.float64, requires_grad=True)
    centroids = torch.randn(2, 4, 16, dtype=torch.float64, requires_grad=True)
    fast, slow = l1_distances(features, centroids), l1_distances_naive(features, centroids)
    assert (fast - slow).abs().max() < 1e-12
    weights = torch.randn_like(fast)
    weights[:, 2] = 0  # an absent class: its gradient is skipped, and must be zero
    grads_fast = torch.autograd.grad((fast * weights).sum(), [features, centroids])
    grads_slow = torch.autograd.grad((slow * weights).sum(), [features, centroids])
    for a, b in zip(grads_fast, grads_slow):
        assert (a - b).abs().max() < 1e-12
    assert torch.autograd.gradcheck(l1_distances, (features[:1, :4, :2, :3].detach().requires_grad_(), centroids[:1, :2, :4].detach().requires_grad_()))


def _largest_allocation(fn):
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(event.cpu_memory_usage for event in prof.events())


def test_memory_is_bounded_by_one_class_not_the_broadcast():
    torch.manual_seed(0)
    b, c, k, h, w = 2, 64, 21, 48, 48
    features = torch.randn(b, c, h, w, requires_grad=True)
    centroids = torch.randn(b, k, c, requires_grad=True)
    broadcast = b * k * c * h * w * 4  # the released code's (B, K, C, h, w) tensor
    one_class = b * c * h * w * 4

    def distances():
        l1_distances(features, centroids).sum().backward()

    assert _largest_allocation(distances) <= 2 * one_class < broadcast / 8
    # centroids on 1024x1024 labels with 200 labelled pixels never build the upsampled feature
    labels = torch.full((b, 1024, 1024), UNLABELLED)
    labels.view(-1)[torch.randperm(labels.numel())[:200]] = 1
    upsampled = b * c * 1024 * 1024 * 4

    def centroids_fn():
        class_centroids(features, labels, K)[0].sum().backward()

    assert _largest_allocation(centroids_fn) < upsampled / 16


def test_full_resolution_gmm_is_zero_for_absent_classes():
    g = torch.rand(1, K, 4, 4) * 0.5 + 0.5
    gmm = full_resolution_gmm(g, torch.tensor([[1.0, 0.0, 1.0]]), (16, 16))
    assert gmm.shape == (1, K, 16, 16)
    assert not gmm[0, 1].any() and (gmm[0, [0, 2]] > 0).all()


def test_partial_cross_entropy_averages_labelled_pixels_only():
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [5.0, 5.0, 5.0], [0.0, 0.0, 9.0]]).T.reshape(1, K, 1, 4)
    labels = torch.tensor([[[0, 1, UNLABELLED, VOID]]])
    p0 = math.exp(1) / (math.exp(1) + 2)
    p1 = math.exp(2) / (math.exp(2) + 2)
    assert partial_cross_entropy(logits, labels, K).item() == pytest.approx(-(math.log(p0) + math.log(p1)) / 2, rel=1e-6)


def test_gmm_to_prediction_loss_by_hand():
    # 3 pixels: labelled, unlabelled, void; classes 0 and 2 present
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]).T.reshape(1, K, 1, 3)
    gmm = torch.tensor([[0.9, 0.0, 0.2], [0.4, 0.0, 0.7], [0.5, 0.0, 0.5]]).T.reshape(1, K, 1, 3)
    present = torch.tensor([[1.0, 0.0, 1.0]])
    valid = torch.tensor([[[True, True, False]]])
    per_pixel = [
        (0.5 * _bce(0.6, 0.9) + 0.5 * _bce(0.1, 0.2)) / (2 + EPS),
        (0.5 * _bce(0.2, 0.4) + 0.5 * _bce(0.3, 0.7)) / (2 + EPS),
    ]
    loss = gmm_to_prediction_loss(probs, gmm, present, valid)
    assert loss.item() == pytest.approx(sum(per_pixel) / 2, rel=1e-5)


def test_labels_to_gmm_loss_by_hand():
    gmm = torch.tensor([[0.9, 0.0, 0.2], [0.4, 0.0, 0.7], [0.5, 0.0, 0.5]]).T.reshape(1, K, 1, 3)
    present = torch.tensor([[1.0, 0.0, 1.0]])
    labels = torch.tensor([[[0, 2, UNLABELLED]]])
    per_pixel = [
        (0.5 * _bce(0.9, 1) + 0.5 * _bce(0.2, 0)) / (2 + EPS),
        (0.5 * _bce(0.4, 0) + 0.5 * _bce(0.7, 1)) / (2 + EPS),
    ]
    assert labels_to_gmm_loss(gmm, labels, present, K).item() == pytest.approx(sum(per_pixel) / 2, rel=1e-5)


def test_centroid_repulsion_of_the_spec_and_its_sum_quirk():
    centroids = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [7.0, 7.0]]])
    present = torch.tensor([[1.0, 1.0, 0.0]])  # class 2 absent: not a pair
    assert centroid_repulsion_loss(centroids, present).item() == pytest.approx(0.7788, abs=1e-4)
    # two images with the same centroids: "sum" doubles S_0 = (2, 0) -> exp(-1); "mean" keeps exp(-0.25)
    two = torch.cat([centroids, centroids])
    present2 = torch.cat([present, present])
    assert centroid_repulsion_loss(two, present2, "sum").item() == pytest.approx(math.exp(-1), rel=1e-4)
    assert centroid_repulsion_loss(two, present2, "mean").item() == pytest.approx(math.exp(-0.25), rel=1e-4)
    assert centroid_repulsion_loss(centroids, torch.tensor([[1.0, 0.0, 0.0]])).item() == 0.0


def test_absent_class_loss_by_hand():
    probs = torch.tensor([0.5, 0.3, 0.2]).reshape(1, K, 1, 1)
    loss = absent_class_loss(probs, torch.tensor([[1.0, 1.0, 0.0]]), torch.ones(1, 1, 1, dtype=torch.bool))
    assert loss.item() == pytest.approx(0.2231, abs=1e-4)


def test_gradient_reaches_the_features_through_the_gmm_target():
    torch.manual_seed(0)
    features = torch.rand(1, 4, 4, 4, requires_grad=True)
    labels = torch.full((1, 8, 8), UNLABELLED)
    labels[0, 1, 1], labels[0, 6, 6] = 0, 1
    centroids, present = class_centroids(features, labels, K)
    g = gmm_predictions(l1_distances(features, centroids), present, torch.ones(1, 4, 4))
    gmm = full_resolution_gmm(g, present, (8, 8))
    probs = F.softmax(torch.randn(1, K, 8, 8), dim=1)  # a constant prediction
    loss = gmm_to_prediction_loss(probs, gmm, present, labels != VOID)
    (grad,) = torch.autograd.grad(loss, features)
    assert grad.abs().sum() > 0


def test_batches_without_labelled_or_valid_pixels_give_zero_not_nan():
    logits = torch.randn(1, K, 4, 4, requires_grad=True)
    unlabelled = torch.full((1, 4, 4), UNLABELLED)
    loss = partial_cross_entropy(logits, unlabelled, K)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and not logits.grad.any()
    gmm = torch.rand(1, K, 4, 4)
    assert labels_to_gmm_loss(gmm, unlabelled, torch.zeros(1, K), K).item() == 0.0
    void = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert gmm_to_prediction_loss(F.softmax(logits, 1), gmm, torch.ones(1, K), void).item() == 0.0
    assert absent_class_loss(F.softmax(logits, 1), torch.zeros(1, K), void).item() == 0.0
