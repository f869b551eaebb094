"""The shared MaskFormer components (docs/maskformer.md): losses, matcher, criterion, inference, model, groups."""
import math

import pytest
import torch
from torch.nn import functional as F

from wss_d2.checkpoint import CheckpointMismatchError, load_weights_strict
from wss_d2.config import get_wss_cfg
from wss_d2.modeling.maskformer import (
    HungarianMatcher,
    SetCriterion,
    dice_loss,
    pairwise_dice_cost,
    pairwise_sigmoid_focal_cost,
    semantic_inference,
    semantic_targets,
    sigmoid_focal_loss,
)
from wss_d2.solver import build_optimizer

from detectron2.modeling import build_model

from .conftest import focal_term

CONFIG = "configs/synthetic/maskformer_R18_full.yaml"


def _sigmoid(m):
    return 1 / (1 + math.exp(-m))


def test_focal_and_dice_against_hand_values():
    m = torch.tensor([[0.0, 2.0, -1.0]])
    t = torch.tensor([[1.0, 0.0, 1.0]])
    expected_focal = sum(focal_term(a, b) for a, b in zip([0.0, 2.0, -1.0], [1, 0, 1])) / 3
    assert sigmoid_focal_loss(m, t).item() == pytest.approx(expected_focal, rel=1e-6)
    s = [_sigmoid(v) for v in (0.0, 2.0, -1.0)]
    expected_dice = 1 - (2 * (s[0] + s[2]) + 1) / (sum(s) + 2 + 1)
    assert dice_loss(m, t).item() == pytest.approx(expected_dice, rel=1e-6)
    # one pixel, logit 0, target 1: 0.25 · 0.5² · log 2 and 1 − 2/2.5
    assert sigmoid_focal_loss(torch.zeros(1, 1), torch.ones(1, 1)).item() == pytest.approx(0.25 * 0.25 * math.log(2))
    assert dice_loss(torch.zeros(1, 1), torch.ones(1, 1)).item() == pytest.approx(0.2)


def test_pairwise_costs_equal_the_losses_of_each_pair():
    torch.manual_seed(0)
    m, t = torch.randn(4, 30), (torch.rand(3, 30) > 0.5).float()
    focal, dice = pairwise_sigmoid_focal_cost(m, t), pairwise_dice_cost(m, t)
    for q in range(4):
        for j in range(3):
            assert focal[q, j].item() == pytest.approx(sigmoid_focal_loss(m[q:q + 1], t[j:j + 1]).item(), rel=1e-5)
            assert dice[q, j].item() == pytest.approx(dice_loss(m[q:q + 1], t[j:j + 1]).item(), rel=1e-5)


def _target(labels, masks, has_mask):
    return {"labels": torch.tensor(labels), "masks": torch.stack(masks).bool(), "has_mask": torch.tensor(has_mask)}


def test_matcher_cost_rules_and_a_mask_vanishing_at_stride_4():
    # 8x8 targets, 2x2 predictions: nearest downsampling keeps pixels (0,0), (0,4), (4,0), (4,4)
    kept = torch.zeros(8, 8)
    kept[0:4, 0:4] = 1  # keeps (0, 0)
    thin = torch.zeros(8, 8)
    thin[1, 1:3] = 1  # a base region between the kept pixels: vanishes
    novel = torch.zeros(8, 8)
    target = _target([0, 1, 2], [kept, thin, novel], [True, True, False])
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    masks = torch.tensor([[[4.0, -4.0], [-4.0, -4.0]], [[0.0, 0.0], [0.0, 0.0]], [[-1.0, 1.0], [1.0, -1.0]]])
    matcher = HungarianMatcher(mask_target_class_cost=1.0, mask_target_mask_cost=1.0, tag_target_class_cost=2.0,
                               tag_target_mask_cost=0.0, focal_weight=20.0, dice_weight=1.0)
    cost = matcher.cost_matrix(logits, masks, target)
    prob = logits.softmax(-1)
    small = torch.tensor([[1.0, 0.0, 0.0, 0.0]])  # `kept` at 2x2
    expected_kept = -prob[:, 0] + 20 * pairwise_sigmoid_focal_cost(masks.flatten(1), small)[:, 0] \
        + pairwise_dice_cost(masks.flatten(1), small)[:, 0]
    torch.testing.assert_close(cost[:, 0], expected_kept)
    # the vanished base mask and the novel tag are costed by class probability only, at the tag weight
    torch.testing.assert_close(cost[:, 1], -2.0 * prob[:, 1])
    torch.testing.assert_close(cost[:, 2], -2.0 * prob[:, 2])


def test_matcher_returns_the_targets_own_indices_whatever_their_order():
    torch.manual_seed(1)
    logits, masks = torch.randn(1, 5, 4), torch.randn(1, 5, 4, 4)
    base = torch.zeros(16, 16)
    base[:8, :8] = 1
    other = torch.zeros(16, 16)
    other[8:, 8:] = 1
    novel = torch.zeros(16, 16)
    matcher = HungarianMatcher()
    first = matcher({"pred_logits": logits, "pred_masks": masks}, [_target([0, 1, 2], [base, other, novel], [True, True, False])])
    # the novel tag listed first: the same queries must go to the same classes
    second = matcher({"pred_logits": logits, "pred_masks": masks}, [_target([2, 0, 1], [novel, base, other], [False, True, True])])
    by_class = lambda idx, labels: {labels[t]: int(q) for q, t in zip(*idx[0])}  # noqa: E731
    assert by_class(first, [0, 1, 2]) == by_class(second, [2, 0, 1])
    cost = matcher.cost_matrix(logits[0], masks[0], _target([0, 1, 2], [base, other, novel], [True, True, False]))
    q, t = first[0]
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(cost.numpy())
    assert cost[q, t].sum().item() == pytest.approx(cost.numpy()[rows, cols].sum(), rel=1e-6)


def test_matcher_refuses_more_targets_than_queries():
    masks = torch.zeros(3, 8, 8)
    target = {**_target([0, 1, 2], list(masks), [True, True, True]), "file_name": "img_7.png"}
    with pytest.raises(ValueError, match="img_7.png has 3 targets but the model has 2 queries"):
        HungarianMatcher()({"pred_logits": torch.zeros(1, 2, 4), "pred_masks": torch.zeros(1, 2, 2, 2)}, [target])


def test_criterion_class_loss_is_the_weighted_mean_and_tag_targets_get_no_mask_loss():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])  # K = 2, Q = 3
    masks = torch.randn(1, 3, 4, 4)
    target = _target([0, 1], [torch.ones(8, 8), torch.zeros(8, 8)], [True, False])
    indices = [(torch.tensor([0, 2]), torch.tensor([0, 1]))]  # query 0 -> class 0 (mask), query 2 -> class 1 (tag)
    criterion = SetCriterion(2, HungarianMatcher(), no_object_weight=0.1)
    ce = lambda row, c: -math.log(torch.softmax(logits[0, row], 0)[c].item())  # noqa: E731
    expected = (ce(0, 0) + 0.1 * ce(1, 2) + ce(2, 1)) / 2.1
    assert criterion.loss_labels({"pred_logits": logits}, [target], indices).item() == pytest.approx(expected, rel=1e-6)
    losses = criterion.loss_masks({"pred_masks": masks}, [target], indices, num_masks=1.0)
    up = F.interpolate(masks[:, 0:1], size=(8, 8), mode="bilinear", align_corners=False).flatten(1)
    assert losses["loss_mask"].item() == pytest.approx(sigmoid_focal_loss(up, torch.ones(1, 64)).item(), rel=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(dice_loss(up, torch.ones(1, 64)).item(), rel=1e-5)
    # every layer is matched and reported; the auxiliary layers with suffixes
    outputs = {"pred_logits": logits, "pred_masks": masks,
               "aux_outputs": [{"pred_logits": logits, "pred_masks": masks}]}
    all_losses, _ = criterion(outputs, [target])
    assert set(all_losses) == {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_mask_0", "loss_dice_0"}


def test_semantic_inference_on_toy_masks():
    cls = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0]])  # Q = 2, K = 2 + no object
    masks = torch.tensor([[[5.0, -5.0]], [[-5.0, 5.0]]])  # (Q, 1, 2)
    sem = semantic_inference(cls, masks)
    p = cls.softmax(-1)
    s = masks.sigmoid()
    for c in range(2):
        for x in range(2):
            assert sem[c, 0, x].item() == pytest.approx((p[0, c] * s[0, 0, x] + p[1, c] * s[1, 0, x]).item(), rel=1e-6)
    assert sem.argmax(0).tolist() == [[0, 1]]


def test_semantic_targets_one_mask_per_present_class_and_bad_values_named():
    label = torch.tensor([[0, 0, 255], [3, 3, 0]])
    target = semantic_targets(label, 6, 255)
    assert target["labels"].tolist() == [0, 3]
    assert target["masks"][1].tolist() == [[False, False, False], [True, True, False]]
    with pytest.raises(ValueError, match=r"lbl\.png: label values \[7\]"):
        semantic_targets(torch.tensor([[7, 0]]), 6, 255, "lbl.png")


def _model(tmp_path, *opts):
    cfg = get_wss_cfg(CONFIG, ["OUTPUT_DIR", str(tmp_path), *opts])
    return cfg, build_model(cfg)


def _batch(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = []
    for i in range(n):
        label = torch.zeros(size, size, dtype=torch.int64)
        label[8:30, 8:30] = 1 + i
        label[36:60, 30:60] = 3
        batch.append({"image": torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8),
                      "sem_seg": label, "height": size, "width": size, "file_name": f"toy_{i}.png"})
    return batch


def test_model_outputs_names_and_checkpoint_fit(tmp_path):
    cfg, model = _model(tmp_path)
    keys = model.state_dict().keys()
    for name in ("sem_seg_head.pixel_decoder.adapter_1.weight", "sem_seg_head.pixel_decoder.layer_4.weight",
                 "sem_seg_head.pixel_decoder.mask_features.weight", "sem_seg_head.predictor.query_embed.weight",
                 "sem_seg_head.predictor.input_proj.weight",
                 "sem_seg_head.predictor.transformer.decoder.layers.2.multihead_attn.in_proj_weight",
                 "sem_seg_head.predictor.transformer.decoder.norm.weight",
                 "sem_seg_head.predictor.mask_embed.layers.2.weight", "criterion.empty_weight"):
        assert name in keys, name
    model.train()
    losses = model(_batch())
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_ce_1", "loss_dice_1"} <= set(losses)
    assert "loss_ce_2" not in losses  # 3 decoder layers: the last plus 2 auxiliary
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.zeros(3, 50, 70, dtype=torch.uint8), "height": 100, "width": 140}])
    assert out[0]["sem_seg"].shape == (6, 100, 140) and out[0]["sem_seg_kind"] == "scores"
    path = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, path)
    _, other = _model(tmp_path, "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "10")
    with pytest.raises(CheckpointMismatchError, match=r"query_embed.weight \(checkpoint \(20, 64\), model \(10, 64\)\)"):
        load_weights_strict(other, str(path))
    _, other = _model(tmp_path, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "8")
    with pytest.raises(CheckpointMismatchError, match=r"class_embed.weight \(checkpoint \(7, 64\), model \(9, 64\)\)"):
        load_weights_strict(other, str(path))


def test_named_loss_weights_act_on_their_losses(tmp_path):
    torch.manual_seed(0)
    _, model = _model(tmp_path, "MODEL.MASK_FORMER.DROPOUT", "0.0", "MODEL.MASK_FORMER.MASK_WEIGHT", "5.0",
                      "MODEL.MASK_FORMER.CLASS_WEIGHT", "0.0")
    model.train()
    batch = _batch()
    losses = model(batch)
    images = model.preprocess(batch)
    raw, _ = model.criterion(model.sem_seg_head(model.backbone(images.tensor)), model.prepare_targets(batch, images))
    assert "loss_ce" not in losses and "loss_ce_0" not in losses  # weight 0: left out
    assert losses["loss_mask"].item() == pytest.approx(5.0 * raw["loss_mask"].item(), rel=1e-5)
    assert losses["loss_mask_1"].item() == pytest.approx(5.0 * raw["loss_mask_1"].item(), rel=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(raw["loss_dice"].item(), rel=1e-5)


def test_param_groups_follow_maskformer_rules(tmp_path):
    cfg, model = _model(tmp_path, "SOLVER.BACKBONE_MULTIPLIER", "0.1", "SOLVER.WEIGHT_DECAY", "0.05")
    optimizer = build_optimizer(cfg, model)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    lr, wd = cfg.SOLVER.BASE_LR, 0.05
    conv = model.backbone.res2[0].conv1.weight
    assert group_of[id(conv)]["lr"] == pytest.approx(lr * 0.1) and group_of[id(conv)]["weight_decay"] == wd
    gn = model.sem_seg_head.pixel_decoder.layer_1.norm.weight
    assert group_of[id(gn)]["weight_decay"] == 0.0 and group_of[id(gn)]["lr"] == pytest.approx(lr)
    query = model.sem_seg_head.predictor.query_embed.weight
    assert group_of[id(query)]["weight_decay"] == 0.0
    ln = model.sem_seg_head.predictor.transformer.decoder.norm.weight
    assert group_of[id(ln)]["weight_decay"] == 0.0
    bias = model.sem_seg_head.predictor.class_embed.bias
    assert group_of[id(bias)]["weight_decay"] == wd  # biases are not special
    assert type(optimizer).__name__ == "AdamWWithFullModelClipping"


def test_a_few_steps_lower_the_loss(tmp_path):
    torch.manual_seed(0)
    cfg, model = _model(tmp_path, "MODEL.MASK_FORMER.DROPOUT", "0.0", "SOLVER.CLIP_GRADIENTS.ENABLED", "False")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = _batch()
    first = None
    for _ in range(12):
        loss = sum(model(batch).values())
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert sum(model(batch).values()).item() < 0.7 * first
