"""SimFormer (docs/simformer.md): its losses, similarity net, pairs, strictness and the model."""
import copy
import math

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from wss_d2.config import get_wss_cfg
from wss_d2.data.build import build_dataset_mapper
from wss_d2.data.pairs import PartnerSampler, build_partner_table, check_partner_table
from wss_d2.methods.simformer import (
    SimilarityNet,
    balanced_similarity_loss,
    complementary_loss,
    distill_loss,
    pair_cosine,
    sample_in_region,
    student_scores,
)
from wss_d2.methods.simformer.meta_arch import check_weak_shot_split

from .conftest import focal_term

OFFICIAL = "configs/synthetic/simformer_R18.yaml"
STRICT = "configs/synthetic/simformer_R18_strict.yaml"
BASE_ONLY = "configs/synthetic/simformer_R18_base_only.yaml"
NOVEL = (4, 5)  # the synthetic split's novel classes


def _sig(m):
    return 1 / (1 + math.exp(-m))


# ------------------------------------------------------------------------------------ losses
def test_complementary_loss_against_hand_values():
    logits = torch.tensor([[[1.0, -5.0, -6.0]], [[0.5, -1.0, -7.0]]])  # 2 novel queries, 1x3 pixels
    not_base = torch.tensor([[True, True, False]])
    tau = -2.9444
    z = [max(1.0, 0.5, tau), max(-5.0, -1.0, tau), max(-6.0, -7.0, tau)]  # 1.0, -1.0, τ
    y = [1, 1, 0]
    focal = sum(focal_term(a, b) for a, b in zip(z, y)) / 3
    s = [_sig(v) for v in z]
    dice = 1 - (2 * (s[0] + s[1]) + 1) / (sum(s) + 2 + 1)
    got = complementary_loss(logits, not_base, tau, 20.0, 1.0)
    assert got.item() == pytest.approx(20 * focal + dice, rel=1e-5)
    # without the ignore proposal (τ <= −50) the third pixel's max is −6
    z2 = [1.0, -1.0, -6.0]
    s2 = [_sig(v) for v in z2]
    expected = 20 * sum(focal_term(a, b) for a, b in zip(z2, y)) / 3 + 1 - (2 * (s2[0] + s2[1]) + 1) / (sum(s2) + 3)
    assert complementary_loss(logits, not_base, -100.0).item() == pytest.approx(expected, rel=1e-5)


def test_complementary_loss_floor_stops_gradients_below_tau():
    logits = torch.tensor([[[-4.0, -3.5, 2.0]]], requires_grad=True)  # the first two below τ
    complementary_loss(logits, torch.tensor([[False, True, True]])).backward()
    grad = logits.grad[0, 0]
    assert grad[0].item() == 0.0 and grad[1].item() == 0.0  # a base pixel is pushed to σ = 0.05 and no further;
    assert grad[2].item() != 0.0  # an unexplained not-base pixel stays empty; above τ the loss acts


def test_balanced_similarity_loss_against_hand_values():
    sim = torch.tensor([[0.9, 0.2], [0.6, 0.3]])
    same = torch.tensor([[True, False], [True, False]])
    valid = torch.tensor([[True, True], [False, True]])
    w_pos, w_neg = 0.7, 0.3
    expected = (w_pos * -math.log(0.9) + w_neg * -math.log(0.8) + w_neg * -math.log(0.7)) / 3
    assert balanced_similarity_loss(sim, same, valid, w_pos, w_neg).item() == pytest.approx(expected, rel=1e-6)
    assert balanced_similarity_loss(sim, same, torch.zeros_like(valid), w_pos, w_neg).item() == 0.0


def test_distill_functions_against_hand_values_and_cce_is_never_positive():
    s, t = torch.tensor([0.5, 0.995, 0.0]), torch.tensor([0.9, 0.2, 0.5])
    ce = [-(0.9 * math.log(0.5) + 0.1 * math.log(0.5)), -(0.2 * math.log(0.99) + 0.8 * math.log(0.01)),
          -(0.5 * math.log(0.01) + 0.5 * math.log(0.99))]
    assert distill_loss(s, t, "ce").item() == pytest.approx(sum(ce) / 3, rel=1e-5)
    cce = [-0.4 * math.log(1.5), -0.3 * math.log(2 - 0.995), 0.0]
    got = distill_loss(s, t, "cce")
    assert got.item() == pytest.approx(sum(cce) / 3, rel=1e-5) and got.item() < 0  # loss_distill may be negative
    assert distill_loss(s, t, "b0.5").item() == pytest.approx(-(0.4 * 0.5 - 0.3 * 0.995) / 3, rel=1e-5)
    torch.manual_seed(0)
    assert distill_loss(torch.rand(1000), torch.rand(1000), "cce").item() <= 0
    with pytest.raises(ValueError, match="DISTILL_FUNC"):
        distill_loss(s, t, "mse")


def test_student_scores_and_pair_cosine():
    logits = torch.tensor([[[0.0, 1.0, 2.0, 0.0], [1.0, 0.0, 0.0, 1.0]]])  # B 1, Q 2, K 3 + no object
    masks = torch.tensor([[[[0.0]], [[2.0]]]])  # (1, 2, 1, 1)
    p = logits.softmax(-1)[0]
    novel = torch.tensor([1, 2])
    u = student_scores(logits, masks, "NovelScore", novel)
    for d, c in enumerate((1, 2)):
        assert u[0, d, 0, 0].item() == pytest.approx(p[0, c].item() * 0.5 + p[1, c].item() * _sig(2.0), rel=1e-6)
    assert student_scores(logits, masks, "FullScore").shape == (1, 3, 1, 1)
    full_logit = student_scores(logits, masks, "FullLogit")
    assert full_logit[0, 2, 0, 0].item() == pytest.approx(2.0 * 0.5 + 0.0 * _sig(2.0))
    a, b = torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[-1.0, 0.0], [0.0, 2.0]])
    cos = pair_cosine(a, b)
    assert cos.flatten().tolist() == pytest.approx([0.0, 0.0, 0.0, 1 / math.sqrt(2)])  # negative cosine -> 0


def test_similarity_net_names_and_output():
    net = SimilarityNet(in_dim=8, dim=4, num_blocks=3)
    names = set(net.state_dict())
    assert "fc_branch.layers.block0.sqz.weight" in names and "out_head.weight" in names
    assert not any(n.startswith("fc_branch.layers.block1.sqz") for n in names)  # sqz only where widths differ
    assert {"fc_branch.layers.block2.layer1.weight", "fc_branch.layers.block2.bn2.running_mean"} <= names
    out = net(torch.randn(2, 8, 5, 3))
    assert out.shape == (2, 5, 3) and ((out > 0) & (out < 1)).all()


def test_sample_in_region_draws_distinct_region_pixels_and_fills_from_outside():
    region = torch.zeros(1, 50, dtype=torch.bool)
    region[0, 10:20] = True
    idx = sample_in_region(region, 5)[0]
    assert len(set(idx.tolist())) == 5 and all(10 <= i < 20 for i in idx.tolist())
    idx = sample_in_region(region, 15)[0]
    assert set(range(10, 20)) <= set(idx.tolist()) and len(set(idx.tolist())) == 15


# ------------------------------------------------------------------------------------ model
def _model(config, tmp_path, *opts):
    cfg = get_wss_cfg(config, ["OUTPUT_DIR", str(tmp_path), "MODEL.MASK_FORMER.DROPOUT", "0.0", *opts])
    return cfg, build_model(cfg)


def _image(label, tags, full=None, seed=0, name="toy"):
    g = torch.Generator().manual_seed(seed)
    x = {"image": torch.randint(0, 255, (3,) + tuple(label.shape), generator=g, dtype=torch.uint8),
         "sem_seg": label, "valid_mask": torch.ones(label.shape, dtype=torch.bool), "file_name": f"{name}.png",
         "image_labels": torch.zeros(6).index_fill_(0, torch.tensor(tags), 1.0)}
    if full is not None:
        x["full_sem_seg"] = full
    return x


def _pair_batch(size=64, poison=False, shared_novel=True):
    """Two pairs; novel pixels are 255 in sem_seg; `poison` rewrites the novel pixels of full_sem_seg.
    Without `shared_novel` the first image of a pair has novel class 4 only, its partner 5 only."""
    items = []
    for p in range(2):
        pair = []
        for i in range(2):
            full = torch.zeros(size, size, dtype=torch.int64)
            full[4:28, 4:28] = 1 + (p + i) % 3
            full[32:60, 8:40] = 4 if (shared_novel or i == 0) else 5
            full[40:60, 44:60] = 5 if (shared_novel or i == 1) else 3
            tags = torch.unique(full).tolist()
            if poison:  # the same novel classes in other places: strict training must not notice
                g = torch.Generator().manual_seed(10 * p + i)
                novel = (full == 4) | (full == 5)
                full = torch.where(novel, torch.randint(4, 6, full.shape, generator=g), full)
            label = torch.where((full == 4) | (full == 5), torch.tensor(255), full)
            pair.append(_image(label, tags, full, seed=10 * p + i, name=f"toy_{p}_{i}"))
        pair[0]["partner"] = pair[1]
        items.append(pair[0])
    return items


def _losses(model, batch, seed=0):
    """The losses of one forward from the same state: the class-balance queues start afresh."""
    model.criterion.positive_counts, model.criterion.negative_counts = [1.0], [1.0]
    torch.manual_seed(seed)
    return {k: v.item() for k, v in model(batch).items()}


def test_targets_are_base_masks_then_novel_tags(tmp_path):
    _, model = _model(OFFICIAL, tmp_path)
    label = torch.tensor([[0, 2, 255], [2, 255, 255]])
    x = _image(label, [0, 2, 5], full=torch.tensor([[0, 2, 4], [2, 5, 5]]))
    target = model.image_targets(x, label)
    assert target["labels"].tolist() == [0, 2, 5]
    assert target["has_mask"].tolist() == [True, True, False]
    assert not target["masks"][2].any() and target["masks"][1].tolist() == [[False, True, False], [True, False, False]]
    with pytest.raises(ValueError, match=r"label values \[4\] in the base-class map"):
        model.image_targets(x, torch.tensor([[0, 4]]))


def test_strict_variant_never_reads_a_novel_pixel_label(tmp_path):
    _, strict = _model(STRICT, tmp_path)
    strict.train()
    clean = _losses(strict, _pair_batch())
    poisoned = _losses(strict, _pair_batch(poison=True))
    dropped = _pair_batch()
    for x in dropped:
        del x["full_sem_seg"], x["partner"]["full_sem_seg"]
    assert clean == poisoned == _losses(strict, dropped)
    # the official counts do read them: the same test tells the variants apart
    _, official = _model(OFFICIAL, tmp_path)
    official.load_state_dict(strict.state_dict())
    official.train()
    assert _losses(official, _pair_batch())["loss_sim"] != _losses(official, _pair_batch(poison=True))["loss_sim"]


def test_strict_mapper_output_ignores_novel_pixel_values(tmp_path, synthetic_dir):
    cfg = get_wss_cfg(STRICT, ["OUTPUT_DIR", str(tmp_path), "INPUT.PAIRS.ENABLED", "False"])
    mapper = build_dataset_mapper(cfg, is_train=True)
    dicts = DatasetCatalog.get("wss_synthetic_train_ws")
    d = next(d for d in dicts if set(np.unique(np.asarray(Image.open(d["sem_seg_file_name"])))) >= {4, 5})
    gt = np.asarray(Image.open(d["sem_seg_file_name"]))
    novel = np.isin(gt, NOVEL)
    poisoned = gt.copy()
    poisoned[novel] = np.random.default_rng(0).choice(NOVEL, size=int(novel.sum()))
    path = tmp_path / "poisoned.png"
    Image.fromarray(poisoned).save(path)
    outs = []
    for label_file in (d["sem_seg_file_name"], str(path)):
        np.random.seed(3)
        torch.manual_seed(3)
        outs.append(mapper({**copy.deepcopy(d), "sem_seg_file_name": label_file}))
    assert "full_sem_seg" not in outs[0]
    assert torch.equal(outs[0]["sem_seg"], outs[1]["sem_seg"]) and torch.equal(outs[0]["image"], outs[1]["image"])
    assert torch.equal(outs[0]["image_labels"], outs[1]["image_labels"])
    assert not np.isin(outs[0]["sem_seg"].numpy(), NOVEL).any()


def test_balance_counts_in_each_variant(tmp_path):
    _, model = _model(STRICT, tmp_path, "MODEL.SIMFORMER.BALANCE_STRIDE", "1")
    # 1x4 maps; a's points at pixels 0..3, b's too
    labels = torch.tensor([[[1, 255, 255, 2]], [[1, 1, 255, 255]]]).flatten(1).view(2, 1, 4)
    full = torch.tensor([[[1, 4, 5, 2]], [[1, 1, 4, 255]]])
    idx = torch.arange(4).repeat(2, 1)
    same, valid, counts = model.pair_relations(labels, full, idx, 0, 1)
    # a × b: rows a = (1, ∅, ∅, 2), columns b = (1, 1, ∅, ∅) on the base-only map
    assert same[0].tolist() == [[True, True, False, False], [False, False, True, True],
                                [False, False, True, True], [False, False, False, False]]
    assert valid[0].tolist() == [[True] * 4, [True, True, False, False], [True, True, False, False], [True] * 4]
    assert counts == (2 * 6, 2 * 10)  # base_only: every pair, 255 == 255 counted positive, both directions
    model.balance_counts = "valid_pairs"
    assert model.pair_relations(labels, full, idx, 0, 1)[2] == (2 * 2, 2 * 10)  # 12 valid pairs per direction
    model.balance_counts = "full_label"
    # full labels: a = (1, 4, 5, 2), b = (1, 1, 4, 255): positives (1,1) x2 and (4,4)
    assert model.pair_relations(labels, full, idx, 0, 1)[2] == (2 * 3, 2 * 13)
    # the queues: one count of 1 each to start, the current iteration pushed before the weights
    w_pos, w_neg = model.criterion.balance_weights(3, 1)
    assert (w_pos, w_neg) == pytest.approx((2 / 6, 4 / 6))
    for _ in range(30):
        model.criterion.balance_weights(1, 3)
    assert len(model.criterion.positive_counts) == 25
    assert model.criterion.balance_weights(1, 3) == pytest.approx((0.75, 0.25))


def test_distillation_needs_a_shared_novel_tag_and_the_pairing_switch_acts(tmp_path):
    _, model = _model(OFFICIAL, tmp_path)
    model.train()
    shared = _losses(model, _pair_batch())
    assert shared["loss_distill"] != 0.0
    assert _losses(model, _pair_batch(shared_novel=False))["loss_distill"] == 0.0
    _, cross = _model(OFFICIAL, tmp_path, "MODEL.SIMFORMER.STUDENT_PAIRING", "cross")
    cross.load_state_dict(model.state_dict())
    cross.train()
    assert _losses(cross, _pair_batch())["loss_distill"] != shared["loss_distill"]


def test_every_term_is_its_named_weight_times_the_criterion(tmp_path):
    _, model = _model(OFFICIAL, tmp_path, "MODEL.SIMFORMER.COMP_LOSS_WEIGHT", "0.5", "MODEL.SIMFORMER.SIM_LOSS_WEIGHT",
                      "2.0", "MODEL.SIMFORMER.DISTILL_LOSS_WEIGHT", "3.0")
    model.train()
    batch = _pair_batch()
    losses = _losses(model, batch)
    inputs = [y for x in batch for y in (x, x["partner"])]
    torch.manual_seed(0)
    images = model.preprocess(inputs)
    outputs = model.sem_seg_head(model.backbone(images.tensor))
    targets = model.prepare_targets(inputs, images)
    raw, _ = model.criterion(outputs, targets)
    assert losses["loss_comp"] == pytest.approx(0.5 * raw["loss_comp"].item(), rel=1e-5)
    assert losses["loss_comp_1"] == pytest.approx(0.5 * raw["loss_comp_1"].item(), rel=1e-5)
    assert losses["loss_mask"] == pytest.approx(20.0 * raw["loss_mask"].item(), rel=1e-5)
    assert set(losses) >= {"loss_sim", "loss_distill", "loss_ce_0", "loss_comp_0"}
    assert "loss_sim_0" not in losses and "loss_distill_0" not in losses  # last layer only


def test_pair_losses_refused_without_pairs(tmp_path):
    with pytest.raises(ValueError, match="INPUT.PAIRS.ENABLED"):
        _model(OFFICIAL, tmp_path, "INPUT.PAIRS.ENABLED", "False")
    with pytest.raises(ValueError, match="needs the similarity net"):
        _model(OFFICIAL, tmp_path, "MODEL.SIMFORMER.SIM_LOSS_WEIGHT", "0.0")
    with pytest.raises(ValueError, match="KEEP_FULL_LABEL"):
        _model(OFFICIAL, tmp_path, "INPUT.WEAK.KEEP_FULL_LABEL", "False")
    _, model = _model(OFFICIAL, tmp_path)
    model.train()
    batch = _pair_batch()
    for x in batch:
        del x["partner"]
    with pytest.raises(ValueError, match="no 'partner'"):
        model(batch)


def test_weak_shot_split_errors(tmp_path):
    MetadataCatalog.get("simformer_test_overlap").set(base_classes=[0, 1, 2, 4], novel_classes=[4, 5])
    with pytest.raises(ValueError, match=r"in both lists: \[4\].*in neither list: \[3\]"):
        check_weak_shot_split("simformer_test_overlap", 6)
    assert check_weak_shot_split("wss_synthetic_train_ws", 6) == [4, 5]


def test_a_few_steps_lower_the_loss(tmp_path):
    torch.manual_seed(0)
    _, model = _model(STRICT, tmp_path)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = _pair_batch()
    first = None
    for step in range(12):
        torch.manual_seed(step)
        losses = model(batch)
        loss = sum(v for k, v in losses.items() if k != "loss_distill")  # the rest are non-negative
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    torch.manual_seed(99)
    assert sum(v for k, v in model(batch).items() if k != "loss_distill").item() < 0.8 * first


# ------------------------------------------------------------------------------------ pairs
def _table(label_sets, novel=(4, 5), num_classes=6):
    dicts = [{"file_name": f"img{i}.jpg", "image_labels": labels} for i, labels in enumerate(label_sets)]
    return dicts, build_partner_table(["toy_ws"], dicts, num_classes, novel)


def test_partner_table_lists():
    # 0: base {1}, novel {4, 5}; 1: {1}, {4}; 2: {2}, {5}; 3: {1}, {4, 5}; 4: {2}, {}
    dicts, table = _table([[0, 1, 4, 5], [0, 1, 4], [0, 2, 5], [0, 1, 4, 5], [0, 2]])
    assert table["single_novel"][0][4].tolist() == [1] and table["single_novel"][0][5].tolist() == [2]
    assert table["novel_overlap"][0].tolist() == [0, 3, 4]  # 0 or >= 2 shared novel classes (itself included)
    assert table["novel_overlap"][1].tolist() == []  # only for images with >= 2 novel classes
    assert table["base_overlap"][4].tolist() == [0, 1, 2, 3, 4]  # background 0 is a base class


def test_an_image_is_never_its_own_partner_and_the_table_is_not_edited():
    # image 0 has one novel class: base_overlap {0, 1} (the original removed 0 in place, and later drew 0 itself)
    dicts, table = _table([[1, 4], [1], [2], [3]], novel=(4,), num_classes=6)
    assert table["base_overlap"][0].tolist() == [0, 1]
    before = copy.deepcopy(table)
    sampler = PartnerSampler(table)
    np.random.seed(0)
    for index in range(4):
        partners = {sampler(index) for _ in range(200)}
        assert index not in partners
    assert sampler(0) == 1
    # image 2 shares nothing with anyone but itself: another image is drawn
    assert {sampler(2) for _ in range(100)} == {0, 1, 3}
    assert all(torch.equal(a, b) for a, b in zip(before["base_overlap"], table["base_overlap"]))


def test_partner_table_built_for_another_split_is_refused():
    dicts, table = _table([[0, 1, 4], [0, 2, 5]])
    check_partner_table(table, ["toy_ws"], dicts, (4, 5))
    with pytest.raises(ValueError, match=r"novel classes \[4, 5\] there, \[3, 5\] here"):
        check_partner_table(table, ["toy_ws"], dicts, (3, 5))
    with pytest.raises(ValueError, match="datasets .*toy_ws.* there, DATASETS.TRAIN .*other_ws.* here"):
        check_partner_table(table, ["other_ws"], dicts, (4, 5))
    with pytest.raises(ValueError, match="2 images there, 1 here"):
        check_partner_table(table, ["toy_ws"], dicts[:1], (4, 5))


def test_pair_mapper_gives_every_image_a_partner(tmp_path, synthetic_dir):
    cfg = get_wss_cfg(OFFICIAL, ["OUTPUT_DIR", str(tmp_path)])
    mapper = build_dataset_mapper(cfg, is_train=True)
    d = DatasetCatalog.get("wss_synthetic_train_ws")[0]
    np.random.seed(0)
    out = mapper(d)
    partner = out["partner"]
    assert partner["file_name"] != out["file_name"]
    assert "partner" not in partner and partner["image"].shape == out["image"].shape == (3, 112, 112)
    for x in (out, partner):
        assert {"full_sem_seg", "valid_mask", "image_labels"} <= set(x)
        assert not np.isin(x["sem_seg"].numpy(), NOVEL).any()


# ------------------------------------------------------------------------------------ second stage
def test_weak_shot_pseudo_label_against_a_hand_made_image():
    from wss_d2.refinement import weak_shot_pseudo_label

    gt = np.array([[0, 1, 4], [4, 255, 1]], dtype=np.uint8)  # novel tags of the image: {4}
    pred = np.array([[4, 5, 4], [2, 4, 0]], dtype=np.uint8)
    out = weak_shot_pseudo_label(pred, gt, (4, 5))
    # base GT on top; the tag 4 where predicted; 5 (not a tag) and base predictions off the base GT: 255
    assert out.tolist() == [[0, 1, 4], [255, 4, 1]]


def test_export_weak_shot_pseudo_labels(tmp_path, synthetic_dir, restore_loggers):
    from detectron2.checkpoint import DetectionCheckpointer

    from .conftest import load_script

    cfg, model = _model(STRICT, tmp_path)
    weights = tmp_path / "model.pth"
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")
    out = tmp_path / "pseudo"
    report = load_script("tools/export_pseudo_labels.py").main([
        "--config-file", STRICT, "--weights", str(weights), "--dataset", "wss_synthetic_train_ws", "--output",
        str(out), "--weak-shot", "--max-images", "3", "TEST.CRF.ENABLED", "False", "OUTPUT_DIR", str(tmp_path)])
    assert report["images"] == 3 and report["weak_shot"]
    for d in DatasetCatalog.get("wss_synthetic_train_ws")[:3]:
        gt = np.asarray(Image.open(d["sem_seg_file_name"]))
        label = np.asarray(Image.open(out / f"{d['image_id']}.png"))
        base = (gt != 255) & ~np.isin(gt, NOVEL)
        assert (label[base] == gt[base]).all()
        tags = set(np.unique(gt[np.isin(gt, NOVEL)]).tolist())
        assert set(np.unique(label[~base]).tolist()) <= tags | {255}
    with pytest.raises(SystemExit, match="not a weak-shot split"):
        load_script("tools/export_pseudo_labels.py").main([
            "--config-file", STRICT, "--weights", str(weights), "--dataset", "wss_synthetic_train", "--output",
            str(tmp_path / "bad"), "--weak-shot", "--max-images", "1", "OUTPUT_DIR", str(tmp_path)])


def test_build_partner_table_tool_writes_what_training_reads(tmp_path, synthetic_dir, restore_loggers):
    from .conftest import load_script

    path = tmp_path / "partners.pth"
    load_script("tools/build_partner_table.py").main(["--config-file", STRICT, "--output", str(path)])
    cfg = get_wss_cfg(STRICT, ["OUTPUT_DIR", str(tmp_path), "INPUT.PAIRS.TABLE", str(path)])
    mapper = build_dataset_mapper(cfg, is_train=True)
    d = DatasetCatalog.get("wss_synthetic_train_ws")[5]
    np.random.seed(0)
    assert mapper(d)["partner"]["file_name"] != d["file_name"]
    # the table of one split refused for another training set
    cfg = get_wss_cfg(STRICT, ["OUTPUT_DIR", str(tmp_path), "INPUT.PAIRS.TABLE", str(path),
                               "DATASETS.TRAIN", "('wss_synthetic_train_ws', 'wss_synthetic_train_ws')"])
    with pytest.raises(ValueError, match="built for another training set or split"):
        build_dataset_mapper(cfg, is_train=True)(d)
    with pytest.raises(FileNotFoundError, match="missing.pth .INPUT.PAIRS.TABLE. does not exist"):
        cfg = get_wss_cfg(STRICT, ["OUTPUT_DIR", str(tmp_path), "INPUT.PAIRS.TABLE", str(tmp_path / "missing.pth")])
        build_dataset_mapper(cfg, is_train=True)(d)


def test_two_process_training_on_pairs(tmp_path):
    """train_net.py on 2 GLOO processes, one pair each (the official variant: every loss on): the pairs
    reach each process whole and DDP finds every parameter used."""
    import os
    import subprocess
    import sys

    from .conftest import REPO

    out = tmp_path / "ddp"
    command = [sys.executable, "train_net.py", "--config-file", OFFICIAL, "--num-gpus", "2",
               "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
               "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()", "OUTPUT_DIR", str(out)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.exists(out / "model_final.pth")
    log = (out / "log.txt").read_text()
    assert "loss_sim" in log and "loss_distill" in log
