"""SIPE's equations (docs/sipe.md §3) against the worked toy example of docs/sipe.md §3.6 and by hand."""
import pytest
import torch

from wss_d2.methods.sipe import (
    gsc_loss,
    hierarchical_feature,
    image_specific_cams,
    image_specific_prototypes,
    structure_aware_seeds,
)
from wss_d2.modeling.cam import normalized_cams


def _toy():
    """docs/sipe.md §3.6: one image, K = 2 (both present), a 2x2 map, pixels p0..p3 row-major."""
    logits = torch.tensor([[[[2.0, 1.0], [0.0, -1.0]], [[-1.0, 0.5], [1.0, 3.0]]]])
    feature = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1]]).T.reshape(1, 3, 2, 2)
    return logits, feature


def _flat(x):
    return x.reshape(x.shape[1], -1)


def test_worked_toy_example():
    logits, feature = _toy()
    cams = normalized_cams(logits)
    expected_cams = [[0, 0.5, 2 / 3, 0], [1, 0.5, 0, 0], [0, 1 / 6, 1 / 3, 1]]
    assert torch.allclose(_flat(cams), torch.tensor(expected_cams), atol=1e-4)

    seeds, iou = structure_aware_seeds(cams, feature, torch.ones(1, 3))
    expected_iou = [[0, 0.2553, 0.1992, 0.0981], [0.6667, 0.1847, 0.0993, 0], [0, 0.1435, 0.4203, 0.6268]]
    assert torch.allclose(_flat(iou), torch.tensor(expected_iou), atol=1e-4)
    # seeds: p0 -> c1, p1 -> background, p2 -> c2, p3 -> c2
    assert _flat(seeds).argmax(0).tolist() == [1, 0, 2, 2] and _flat(seeds).sum().item() == 4

    prototypes = image_specific_prototypes(seeds, feature)
    expected_prototypes = [[0, 0.25, 0], [0.25, 0, 0], [0, 0.25, 0.5]]
    assert torch.allclose(prototypes[0], torch.tensor(expected_prototypes), atol=1e-6)

    is_cams = image_specific_cams(feature, prototypes)
    expected_is_cams = [[0, 1, 0.7071, 0], [1, 0, 0, 0], [0, 0.4472, 0.9487, 0.8944]]
    assert torch.allclose(_flat(is_cams), torch.tensor(expected_is_cams), atol=1e-4)
    assert gsc_loss(cams, is_cams).item() == pytest.approx(0.17242, abs=1e-5)


def test_label_mask_removes_seeds_of_absent_classes_and_padding():
    logits, feature = _toy()
    cams = normalized_cams(logits)
    # class 2 absent: its seeds (p2, p3) become no seed at all
    seeds, _ = structure_aware_seeds(cams, feature, torch.tensor([[1.0, 1.0, 0.0]]))
    assert _flat(seeds).sum(0).tolist() == [1, 1, 0, 0]
    # per-position mask (training: crop validity): p0 is padding
    mask = torch.ones(1, 3, 2, 2)
    mask[..., 0, 0] = 0
    seeds, _ = structure_aware_seeds(cams, feature, mask)
    assert _flat(seeds)[:, 0].sum().item() == 0


def test_background_weight_changes_the_assignment():
    logits, feature = _toy()
    cams = normalized_cams(logits)
    # without halving (α = 1) the background IoUs double; the assignment is unchanged here
    seeds, iou = structure_aware_seeds(cams, feature, torch.ones(1, 3), background_weight=1.0)
    assert _flat(iou)[0].tolist() == pytest.approx([0, 0.5106, 0.3984, 0.1962], abs=1e-4)
    assert _flat(seeds).argmax(0).tolist() == [1, 0, 2, 2]
    seeds, _ = structure_aware_seeds(cams, feature, torch.ones(1, 3), background_weight=2.0)
    assert _flat(seeds).argmax(0).tolist() == [1, 0, 0, 2]  # p2: 0.7968 beats c2's 0.4203


def test_zero_prototype_gives_zero_is_cam_and_batches_are_independent():
    logits, feature = _toy()
    two = torch.cat([logits, logits.flip(-1)]), torch.cat([feature, feature.flip(-1)])
    cams = normalized_cams(two[0])
    seeds, _ = structure_aware_seeds(cams, two[1], torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
    prototypes = image_specific_prototypes(seeds, two[1])
    assert prototypes[0, 2].abs().sum() == 0  # absent class: no seed, zero prototype
    is_cams = image_specific_cams(two[1], prototypes)
    assert is_cams[0, 2].abs().sum() == 0
    # the second image is the first mirrored: its IS-CAM is the mirrored toy result
    single = image_specific_cams(feature, image_specific_prototypes(structure_aware_seeds(normalized_cams(logits), feature, torch.ones(1, 3))[0], feature))
    assert torch.allclose(is_cams[1], single[0].flip(-1), atol=1e-6)


def test_gsc_gradients_reach_both_branches_but_not_through_seeds():
    logits, feature = _toy()
    logits.requires_grad_(True)
    hier = feature.clone().requires_grad_(True)
    cams = normalized_cams(logits)
    seeds, _ = structure_aware_seeds(cams, feature, torch.ones(1, 3))
    assert not seeds.requires_grad  # an argmax
    loss = gsc_loss(cams, image_specific_cams(hier, image_specific_prototypes(seeds, hier)))
    loss.backward()
    assert logits.grad.abs().sum() > 0 and hier.grad.abs().sum() > 0


def test_hierarchical_feature_normalises_resizes_and_concatenates():
    sides = [torch.full((1, 2, 8, 8), 3.0), torch.full((1, 4, 4, 4), -2.0), torch.randn(1, 3, 2, 2)]
    feature = hierarchical_feature(sides, (2, 2))
    assert feature.shape == (1, 9, 2, 2)
    assert torch.allclose(feature[:, :2], torch.full((1, 2, 2, 2), 2 ** -0.5), atol=1e-5)
    assert torch.allclose(feature[:, 2:6], torch.full((1, 4, 2, 2), -0.5), atol=1e-5)
    assert torch.allclose(feature[:, 6:].norm(dim=1), torch.ones(1, 2, 2), atol=1e-4)
