"""IRN's affinities, loss and random walk (docs/sipe.md §7.2) and SIPE's confident-region labels
(docs/sipe.md §7.1)."""
import math
import os

import numpy as np
import pytest
import torch

from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.methods.irn import affinity_loss, directions, line_paths, pair_affinities
from wss_d2.methods.irn import boundary_random_walk, boundary_transition_matrix
from wss_d2.refinement import combine_confident_regions, ir_label_jobs, random_walk, transition_matrix

from .conftest import CONFIGS

B = torch.tensor([[[0.0, 0.2, 0.9], [0.1, 0.5, 0.0], [0.3, 0.4, 0.6]]])


def test_directions_and_paths():
    assert len(directions(10)) == 152 and len(directions(5)) == 34
    assert directions(2) == ((0, 1), (1, -1), (1, 0), (1, 1))
    assert line_paths(5)[directions(5).index((0, 3))] == ((0, 0), (0, 1), (0, 2), (0, 3))
    assert line_paths(5)[directions(5).index((2, 0))] == ((0, 0), (1, 0), (2, 0))
    # (1, 2): squared distances (2·py − px)² / 5 of the 2x3 box are 0, 0.2, 0.8, 0.8, 0.2, 0: all < 1
    assert line_paths(5)[directions(5).index((1, 2))] == ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2))
    # (1, 3): (3·py − px)² / 10 < 1 keeps the corners (0, 3) and (1, 0): 9/10 < 1
    assert (1, 0) in line_paths(5)[directions(5).index((1, 3))]
    assert (0, 3) in line_paths(5)[directions(5).index((1, 3))]
    # (2, 3): (3·py − 2·px)² / 13 < 1 drops (0, 3) (81/13) and (2, 0) (36/13)
    path = line_paths(5)[directions(5).index((2, 3))]
    assert (0, 3) not in path and (2, 0) not in path and (1, 1) in path and (1, 2) in path


def test_pair_affinities_by_hand():
    a = pair_affinities(B, 2)  # directions (0,1), (1,-1), (1,0), (1,1); sources (0,1) and (1,1)
    assert a.shape == (1, 4, 2, 1)
    expected = [[0.1, 0.5], [0.5, 0.5], [0.5, 0.5], [0.1, 0.4]]
    assert torch.allclose(a[0, :, :, 0], torch.tensor(expected))


def test_affinity_loss_by_hand():
    labels = torch.tensor([[[0, 0, 1], [0, 1, 1], [255, 1, 1]]])
    a = pair_affinities(B, 2)
    loss, counts = affinity_loss(a, labels, 2, num_classes=2, background_class=0)
    assert counts == {"pos_bg": 1, "pos_fg": 3, "neg": 3}
    eps = 1e-5
    pos_bg = -math.log(0.5 + eps) / (1 + eps)
    pos_fg = -(2 * math.log(0.5 + eps) + math.log(0.4 + eps)) / (3 + eps)
    neg = -(2 * math.log(1 + eps - 0.1) + math.log(1 + eps - 0.5)) / (3 + eps)
    assert loss.item() == pytest.approx(((0.5 * pos_bg + 0.5 * pos_fg) + neg) / 2, rel=1e-5)


def test_affinity_loss_trains_the_boundary_towards_label_edges():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 1
    logits = torch.zeros(1, 8, 8, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=5.0)
    for _ in range(100):
        optimizer.zero_grad()
        affinity_loss(pair_affinities(torch.sigmoid(logits), 3), labels, 3, 2)[0].backward()
        optimizer.step()
    boundary = torch.sigmoid(logits)[0]
    # a boundary on one side of the label edge in every row, none far from it
    assert boundary[:, 3:5].max(1).values.min() > 0.5 > boundary[:, [0, 7]].max()


def test_transition_matrix_and_random_walk_stay_within_regions():
    boundary = torch.zeros(4, 7)
    boundary[:, 3] = 1.0  # a wall
    t = boundary_transition_matrix(boundary, radius=3, beta=10, exp_times=4)
    assert torch.allclose(t.sum(0), torch.ones(28), atol=1e-5)  # column-stochastic
    index = lambda y, x: y * 7 + x  # noqa: E731
    assert t[index(0, 0), index(0, 5)] == 0  # no path across the wall
    scores = torch.zeros(2, 4, 7)
    scores[0, 1, 0] = 1.0  # class A seeded left of the wall
    scores[1, 2, 6] = 1.0  # class B seeded right of it
    rw = boundary_random_walk(scores, boundary, radius=3, beta=10, exp_times=4)
    assert (rw[0, :, :3] > rw[1, :, :3]).all() and (rw[1, :, 4:] > rw[0, :, 4:]).all()
    assert rw[:, :, 3].abs().sum() == 0  # boundary pixels keep nothing


def test_generic_random_walk_steps_by_hand():
    # two nodes with affinity 0.5: A^2 = [[1, .25], [.25, 1]], columns sum to 1.25; one squaring
    affinity = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    once = torch.tensor([[0.8, 0.2], [0.2, 0.8]])
    assert torch.allclose(transition_matrix(affinity, beta=2, exp_times=0), once)
    assert torch.allclose(transition_matrix(affinity, beta=2, exp_times=1), once @ once)
    scores = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])  # (C=2, H=1, W=2)
    walked = random_walk(scores, once)
    assert torch.allclose(walked, torch.tensor([[[0.8, 0.2]], [[0.4, 1.6]]]))


def test_irn_model_shapes_training_and_random_walk_inference():
    cfg = get_wss_cfg(os.path.join(CONFIGS, "synthetic", "irn_R18_sipe.yaml"),
                      ["MODEL.WEIGHTS", "", "DATASETS.PSEUDO_LABELS", "[]", "DATASETS.CAMS", "[]",
                       "DATASETS.TRAIN", "()"])
    torch.manual_seed(0)
    model = build_model(cfg)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    model.train()
    assert not model.backbone.training  # the feature extractor stays in eval mode
    label = torch.zeros(64, 64, dtype=torch.long)
    label[:, 32:] = 2
    label[:8] = 255
    batch = [{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), "sem_seg": label,
              "valid_mask": torch.ones(64, 64, dtype=torch.bool)} for _ in range(2)]
    losses = model(batch)
    losses["loss_affinity"].backward()
    assert model.head.fuse.weight.grad.abs().sum() > 0
    model.eval()
    cams = torch.zeros(2, 50, 70)
    cams[0] = 0.5
    cams[1, :, 40:] = 1.0
    out = model([{"image": torch.randint(0, 255, (3, 50, 70), dtype=torch.uint8), "cams": cams,
                  "cam_labels": torch.tensor([0, 3])}])[0]
    assert out["sem_seg"].shape == (6, 50, 70)
    assert out["boundary"].shape == (13, 18)  # (H - 1) // 4 + 1
    assert out["sem_seg"].argmax(0)[:, 60:].eq(3).float().mean() > 0.9
    with pytest.raises(KeyError, match="DATASETS.CAMS"):
        model([{"image": torch.zeros(3, 8, 8, dtype=torch.uint8), "file_name": "x.jpg"}])


def test_confident_region_labels():
    fg_conf = np.array([[0, 1], [2, 0]])
    bg_conf = np.array([[0, 1], [0, 2]])
    assert combine_confident_regions(fg_conf, bg_conf, [0, 5, 7]).tolist() == [[0, 5], [7, 255]]
    assert combine_confident_regions(fg_conf, bg_conf, [0, 5, 7], keep_uncertain=False).tolist() == [[0, 5], [7, 0]]

    cams = np.array([[[0.9, 1.0]], [[0.5, 0.4]]], dtype=np.float32)  # bg, class
    before = cams.copy()
    image = np.zeros((1, 2, 3), np.uint8)
    fg, bg = ir_label_jobs(image, cams, [0, 4], bg_scale=0.5)
    assert fg.labels.tolist() == [[0, 0]] and bg.labels.tolist() == [[1, 0]]  # halved bg 0.45 < 0.5, 0.5 > 0.4
    assert np.array_equal(cams, before)  # the background is scaled on a copy (docs/sipe.md §11.21)
    assert fg.n_labels == 2 and fg.gt_prob == 0.7
    with pytest.raises(ValueError, match="background"):
        ir_label_jobs(image, cams, [4, 0])
