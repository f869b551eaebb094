"""MCC's meta-architecture, heads, optimizer groups, schedule and inference protocols (docs/mcc.md)."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from wss_d2 import get_wss_cfg
from wss_d2.inference.tta import SemanticSegmentorWithTTA
from wss_d2.methods.mcc import (
    ProjectionHead,
    affinity_labels,
    affinity_loss,
    ema_update,
    mcc_contrast_loss,
    mcc_masks,
    ptc_token_labels,
    segmentation_loss,
)
from wss_d2.methods.mcc.meta_arch import image_boxes
from wss_d2.refinement.par import par_image, refine_cams_with_background
from wss_d2.solver import build_lr_scheduler, build_optimizer
from wss_d2.solver.lr_schedulers import linear_warmup_poly_multiplier

from .conftest import CONFIGS, lr_factors

SYNTHETIC = os.path.join(CONFIGS, "synthetic", "mcc_vit.yaml")
VOC = os.path.join(CONFIGS, "voc", "mcc_deit_b.yaml")
COCO = os.path.join(CONFIGS, "coco", "mcc_deit_b.yaml")
# a tiny ViT: 64-px crops, patch 8 -> 8x8 tokens, mask blocks of 2x2 tokens -> 4x4 cells
TINY = [
    "MODEL.WEIGHTS", "", "MODEL.VIT.EMBED_DIM", "32", "MODEL.VIT.DEPTH", "3", "MODEL.VIT.NUM_HEADS", "2",
    "MODEL.VIT.PRETRAIN_IMG_SIZE", "64", "MODEL.MCC.PROJECTOR.HIDDEN_DIM", "32", "MODEL.MCC.PROJECTOR.BOTTLENECK_DIM",
    "16", "MODEL.MCC.PROJECTOR.OUT_DIM", "24", "MODEL.MCC.DECODER.CHANNELS", "16", "MODEL.MCC.MASK.NUM_LOCAL", "3",
    "MODEL.MCC.SEG_START_ITER", "5", "MODEL.MCC.FLAG_CAM_SWITCH_ITER", "7", "MODEL.MCC.REG.KERNEL", "exact",
    "INPUT.CROP.SIZE", "(64, 64)",
]


def _cfg(*opts, config=SYNTHETIC):
    return get_wss_cfg(config, [*TINY, *opts])


def _model(*opts):
    torch.manual_seed(0)
    return build_model(_cfg(*opts))


def _batch(n=2, size=64, num_classes=6, seed=0, boxes=None):
    """Crops with three views, the real image in `boxes` (black padding elsewhere), 1-2 tags each."""
    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        h0, h1, w0, w1 = boxes[i] if boxes else (0, size, 0, size - 8 * i)
        tags = np.zeros(num_classes, np.float32)
        tags[[1 + i % 5, 1 + (i + 2) % 5][: 1 + i % 2]] = 1
        views = {}
        for key in ("image", "local_view", "global_view2"):
            image = np.zeros((3, size, size), np.uint8)
            image[:, h0:h1, w0:w1] = rng.randint(0, 256, (3, h1 - h0, w1 - w0))
            views[key] = torch.as_tensor(image)
        out.append({**views, "img_box": torch.tensor([h0, h1, w0, w1]), "image_labels": torch.as_tensor(tags),
                    "file_name": f"im{i}.jpg"})
    return out


def _losses(model, batch, iteration, seed=0):
    torch.manual_seed(seed)
    with EventStorage(iteration):
        return model(batch)


# ----------------------------------------------------------------------------- structure
def test_heads_and_parameters_follow_the_original_shapes():
    model = _model()
    assert model.classifier.bias is None and model.classifier.out_channels == 5  # C - 1, no bias
    convs = [m for m in model.decoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.dilation[0], c.padding[0], c.bias) for c in convs] == [(5, 5, None), (5, 5, None), (1, 0, None)]
    assert convs[-1].out_channels == 6
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))  # timm's, all p = 0
    # teacher: an exact, frozen copy of the student projector
    for (name, t), s in zip(model.projector_teacher.named_parameters(), model.projector.parameters()):
        assert torch.equal(t, s) and not t.requires_grad, name
    assert not model.backbone.pos_embed.requires_grad


def test_projection_head_outputs_cosines_with_unit_rows_and_fixed_magnitude():
    torch.manual_seed(0)
    head = ProjectionHead(8, out_dim=5, hidden_dim=16, bottleneck_dim=4)
    x = torch.randn(3, 8)
    bottleneck = F.normalize(head.mlp(x), dim=-1)
    rows = head.last_layer.weight  # weight-normalised: each row has norm g = 1
    torch.testing.assert_close(rows.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(head(x), bottleneck @ rows.t())
    assert head(x).abs().max() <= 1 + 1e-6
    magnitude = head.last_layer.parametrizations.weight.original0
    assert not magnitude.requires_grad and torch.equal(magnitude, torch.ones_like(magnitude))
    assert all(float(layer.bias.detach().abs().max()) == 0 for layer in head.mlp if isinstance(layer, torch.nn.Linear))


def test_ema_update_moves_the_teacher_toward_the_student():
    torch.manual_seed(0)
    student, teacher = ProjectionHead(4, 3, 8, 2), ProjectionHead(4, 3, 8, 2)
    before = [t.clone() for t in teacher.parameters()]
    ema_update(teacher, student, 0.9)
    for b, t, s in zip(before, teacher.parameters(), student.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)


# ----------------------------------------------------------------------------- training
def test_losses_before_and_after_the_segmentation_start():
    model = _model().train()
    batch = _batch()
    early = _losses(model, batch, 0)
    assert set(early) == {"loss_cls", "loss_cls_aux", "loss_mcc", "loss_seg", "loss_reg", "loss_aff"}
    assert all(torch.isfinite(v) for v in early.values())
    assert float(early["loss_seg"].detach()) == 0 and float(early["loss_reg"].detach()) == 0  # weight 0 until iteration 5
    sum(early.values()).backward()
    # Q4: the decoder is in the graph with zero gradients (AdamW decays it and counts its steps)
    assert all(p.grad is not None and float(p.grad.abs().max()) == 0 for p in model.decoder.parameters())
    assert all(p.grad is not None for p in model.projector.parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.projector_teacher.parameters())
    model.zero_grad(set_to_none=True)
    late = _losses(model, batch, 6)
    assert float(late["loss_seg"]) > 0
    sum(late.values()).backward()
    assert float(model.decoder[0].weight.grad.abs().max()) > 0


def test_each_term_equals_its_function_times_its_named_weight():
    """Recompute the step by hand from the library functions: the meta-architecture only wires them."""
    weights = {"CLS": 1.5, "CLS_AUX": 0.7, "AFF": 0.3, "MCC": 0.4, "SEG": 0.2, "REG": 0.05}
    opts = [x for k, v in weights.items() for x in (f"MODEL.MCC.{k}_LOSS_WEIGHT", str(v))]
    model = _model(*opts).train()
    batch = _batch()
    iteration = 6  # after the segmentation start, before the flag-CAM switch (aux CAM)
    losses = _losses(model, batch, iteration, seed=3)

    tags = torch.stack([x["image_labels"][1:] for x in batch])
    images = model.normalize(torch.stack([x["image"] for x in batch]))
    boxes = torch.stack([x["img_box"] for x in batch])
    with torch.no_grad():
        cams, cams_aux = model.training_cams(images)
        feats = model.backbone(images)
        logits, aux_logits = model.classify(feats)
        torch.testing.assert_close(losses["loss_cls"], 1.5 * F.multilabel_soft_margin_loss(logits, tags))
        torch.testing.assert_close(losses["loss_cls_aux"], 0.7 * F.multilabel_soft_margin_loss(aux_logits, tags))
        labels = ptc_token_labels(cams_aux, tags, boxes, (8, 8))
        torch.testing.assert_close(losses["loss_aff"], 0.3 * affinity_loss(feats["final"], affinity_labels(labels)))
        pseudo = refine_cams_with_background(
            model.par, par_image(images, model.pixel_mean.flatten(), model.pixel_std.flatten()), cams, tags, boxes,
            high_thre=0.7, low_thre=0.25,
        )
        seg = F.interpolate(model.decoder(feats["final"]), size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(losses["loss_seg"], 0.2 * segmentation_loss(seg, pseudo))
        # the contrast: same masks (same RNG state), teacher after one EMA step (a copy: unchanged)
        torch.manual_seed(3)
        masks = mcc_masks(cams_aux, tags, (8, 8), num_local=3, block=2, mask_rate=0.95)  # BLOCK 2 (synthetic)
        g2 = model.normalize(torch.stack([x["global_view2"] for x in batch]))
        local = model.normalize(torch.stack([x["local_view"] for x in batch]))
        cls_g = torch.cat([feats["cls"], model.backbone(g2)["cls"]])  # separate unmasked passes, as the original
        cls_l = model.backbone(local.repeat(3, 1, 1, 1), policy=masks.policy)["cls"]
        student = model.projector(torch.cat([cls_g, cls_l]))
        teacher = model.projector_teacher(cls_g)
        expected = 0.4 * mcc_contrast_loss(student, teacher, masks.flags, temperature=0.5)
    torch.testing.assert_close(losses["loss_mcc"], expected, rtol=1e-5, atol=1e-6)
    assert float(losses["loss_reg"]) != 0


def test_zero_weights_leave_terms_out_and_the_quirk_switch():
    model = _model("MODEL.MCC.MCC_LOSS_WEIGHT", "0.0").train()  # ToCo-style
    losses = _losses(model, _batch(), 0)
    assert "loss_mcc" not in losses
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.projector.parameters())
    model = _model("MODEL.MCC.QUIRKS.KEEP_ZERO_WEIGHTED_LOSSES", "False").train()
    assert {"loss_seg", "loss_reg"}.isdisjoint(_losses(model, _batch(), 0))
    assert {"loss_seg", "loss_reg"} <= set(_losses(model, _batch(), 6))
    plain = _model(*[x for k in ("AFF", "MCC", "SEG", "REG") for x in (f"MODEL.MCC.{k}_LOSS_WEIGHT", "0.0")]).train()
    assert set(_losses(plain, _batch(), 9)) == {"loss_cls", "loss_cls_aux"}


def test_ema_runs_once_per_optimizer_step_and_the_cam_sources_switch():
    model = _model().train()
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(0.5)
    before = [t.clone() for t in model.projector_teacher.parameters()]
    student = [s.clone() for s in model.projector.parameters()]
    for _ in range(2):  # two micro-batches of one step (gradient accumulation): one update
        _losses(model, _batch(), 3)
    for b, t, s in zip(before, model.projector_teacher.parameters(), student):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * s)
    _losses(model, _batch(), 4)
    assert not torch.equal(next(model.projector_teacher.parameters()), 0.9 * before[0] + 0.1 * student[0])
    assert model._stage(model.flag_cams, model.flag_cam_switch_iter, 7) == "aux"  # 0-based, strict >
    assert model._stage(model.flag_cams, model.flag_cam_switch_iter, 8) == "final"
    assert model._stage(model.pseudo_label_cams, model.pseudo_label_cam_switch_iter, 0) == "final"


def test_batched_global_view_with_zero_policy_equals_the_plain_pass():
    model = _model().eval()
    x = torch.randn(2, 3, 64, 64)
    plain = model.backbone(x)["cls"]
    policy = torch.zeros(2, 65)
    torch.testing.assert_close(model.backbone(x, policy=policy)["cls"], plain, rtol=0, atol=0)


def test_training_errors_name_what_is_missing():
    model = _model().train()
    batch = _batch()
    with pytest.raises(RuntimeError, match="EventStorage"):
        model(batch)
    for x in batch:
        del x["local_view"]
    with pytest.raises(KeyError, match="INPUT.MULTI_VIEW.ENABLED"):
        _losses(model, batch, 0)
    with pytest.raises(KeyError, match="image_labels"):
        _losses(model, [{k: v for k, v in x.items() if k != "image_labels"} for x in _batch()], 0)
    with pytest.raises(ValueError, match="FLAG_CAMS"):
        _model("MODEL.MCC.FLAG_CAMS", "['aux', 'middle']")


def test_image_boxes_from_the_mapper_or_the_valid_mask():
    valid = torch.zeros(10, 12, dtype=torch.bool)
    valid[2:7, 3:12] = True
    boxes = image_boxes([{"img_box": torch.tensor([1, 5, 0, 4])}, {"valid_mask": valid, "image": torch.zeros(3, 10, 12)},
                         {"image": torch.zeros(3, 10, 12)}])
    assert boxes.tolist() == [[1, 5, 0, 4], [2, 7, 3, 12], [0, 10, 0, 12]]


def test_a_few_steps_on_one_batch_lower_the_loss():
    cfg = _cfg("SOLVER.BASE_LR", "0.001", "SOLVER.WARMUP_ITERS", "0")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = build_optimizer(cfg, model)
    batch = _batch()
    totals = []
    for step in range(8):
        losses = _losses(model, batch, 6, seed=step)  # all terms active
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(float(losses["loss_cls"] + losses["loss_cls_aux"]))
    assert totals[-1] < 0.8 * totals[0]


# ----------------------------------------------------------------------------- inference
def test_inference_returns_logits_or_cam_scores_at_the_requested_size():
    model = _model().eval()
    image = torch.randint(0, 255, (3, 45, 70), dtype=torch.uint8)
    tags = torch.tensor([0, 0, 1, 0, 1, 0.0])
    with torch.no_grad():
        out = model([{"image": image, "height": 90, "width": 140, "image_labels": tags}])[0]
    assert out["sem_seg"].shape == (6, 90, 140) and out["sem_seg_kind"] == "logits"
    cam_model = _model("MODEL.MCC.TEST_OUTPUT", "cam").eval()
    cam_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        out = cam_model([{"image": image, "height": 45, "width": 70, "image_labels": tags}])[0]
        cams, _ = cam_model.training_cams(cam_model.normalize(image[None]))
    assert out["cam_labels"].tolist() == [2, 4] and out["sem_seg_kind"] == "scores"
    torch.testing.assert_close(out["cams"], cams[0, [1, 3]])
    assert torch.all(out["sem_seg"][0] == 0.5) and torch.all(out["sem_seg"][[1, 3, 5]] == 0)
    assert float(out["cams"].max()) <= 1 + 1e-6


class _Recorder(torch.nn.Module):
    """Constant logits per pass: channel 0 = the mean of the pass image's left half, channel 1 = 0."""

    sem_seg_kind = "logits"

    def __init__(self):
        super().__init__()
        self.sizes, self.requested = [], []

    def forward(self, inputs):
        outs = []
        for x in inputs:
            image = x["image"].float()
            self.sizes.append(tuple(image.shape[-2:]))
            self.requested.append((x["height"], x["width"]))
            value = float(image[..., : image.shape[-1] // 2].mean()) / 255
            scores = torch.zeros(2, x["height"], x["width"])
            scores[0] = value
            outs.append({"sem_seg": scores, "sem_seg_kind": "logits"})
        return outs


def _pass_value(image, size, flipped):
    from wss_d2.inference.tta import resize_image

    resized = resize_image(image, size, False, False).float()
    resized = resized.flip(-1) if flipped else resized
    return float(resized[..., : size[1] // 2].mean()) / 255


def test_voc_and_coco_protocols_fuse_in_their_orders():
    from wss_d2.inference.tta import resize_image

    voc = get_wss_cfg(VOC, ["MODEL.WEIGHTS", ""])
    voc_ms = get_wss_cfg(os.path.join(CONFIGS, "voc", "mcc_deit_b_ms_crf.yaml"), ["MODEL.WEIGHTS", ""])
    coco_ms = get_wss_cfg(os.path.join(CONFIGS, "coco", "mcc_deit_b_ms_crf.yaml"), ["MODEL.WEIGHTS", ""])
    assert list(voc.TEST.TTA.BASE_SIZE) == [448, 448] and not voc.TEST.TTA.FLIP and not voc.TEST.TTA.SOFTMAX
    assert list(voc_ms.TEST.TTA.BASE_SIZE) == [] and voc_ms.TEST.CRF.ENABLED
    assert (voc_ms.TEST.CRF.BI_XY_STD, voc_ms.TEST.CRF.BI_RGB_STD, voc_ms.TEST.CRF.BI_W) == (121, 5, 4)
    assert list(coco_ms.TEST.TTA.BASE_SIZE) == [448, 448] and coco_ms.TEST.TTA.SIZE_ROUNDING == "floor"

    image = (torch.arange(30, dtype=torch.uint8) * 8).repeat(3, 20, 1)  # a ramp: a pass and its flip differ
    # VOC: full size, int(s·side); flips summed, scales maxed
    model = _Recorder()
    out = SemanticSegmentorWithTTA(voc_ms, model).eval()([{"image": image, "height": 20, "width": 30}])[0]
    sizes = [(20, 30), (30, 45), (25, 37)]
    assert sorted(set(model.sizes)) == sorted(sizes)
    assert set(model.requested) == {(20, 30)}  # MODEL_OUTPUT_SIZE "fusion": one resize, native -> image
    expected = max(_pass_value(image, s, False) + _pass_value(image, s, True) for s in sizes)
    torch.testing.assert_close(out["sem_seg"][0], torch.full((20, 30), expected))
    assert out["sem_seg_kind"] == "logits"  # fused logits: softmax before the CRF
    # COCO: resized to 448x448 first, scales of that; flips maxed, scales summed; straight to the label size
    model = _Recorder()
    out = SemanticSegmentorWithTTA(coco_ms, model).eval()([{"image": image, "height": 20, "width": 30}])[0]
    sizes = [(448, 448), (560, 560), (672, 672)]
    assert sorted(set(model.sizes)) == sizes and out["sem_seg"].shape == (2, 20, 30)
    assert set(model.requested) == {(20, 30)}  # straight to the label size
    base = resize_image(image, (448, 448), False, False)
    expected = sum(max(_pass_value(base, s, False), _pass_value(base, s, True)) for s in sizes)
    torch.testing.assert_close(out["sem_seg"][0], torch.full((20, 30), expected), rtol=1e-5, atol=1e-5)
    # BASE_SIZE with TTA off (training-time val): one pass at 448x448
    model = _Recorder()
    SemanticSegmentorWithTTA(voc, model).eval()([{"image": image, "height": 20, "width": 30}])
    assert model.sizes == [(448, 448)] and model.requested == [(20, 30)]
    # MCC itself: the val protocol's logits equal one bilinear upsampling of the token-grid logits
    mcc = _model("TEST.TTA.BASE_SIZE", "[64, 64]", "TEST.TTA.MODEL_OUTPUT_SIZE", "fusion").eval()
    wrapped = SemanticSegmentorWithTTA(_cfg("TEST.TTA.BASE_SIZE", "[64, 64]", "TEST.TTA.MODEL_OUTPUT_SIZE", "fusion",
                                            "TEST.TTA.SOFTMAX", "False"), mcc).eval()
    with torch.no_grad():
        out = wrapped([{"image": image, "height": 20, "width": 30}])[0]["sem_seg"]
        resized = resize_image(image, (64, 64), False, False)
        logits = mcc.decoder(mcc.backbone(mcc.normalize(resized[None]))["final"])
        expected = F.interpolate(logits, size=(20, 30), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------------------- solver
def test_param_groups_and_the_warmup_poly_schedule():
    cfg = _cfg()
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    assert type(optimizer).__name__ == "AdamW"
    groups = optimizer.param_groups
    assert [g["lr"] for g in groups] == [1e-4, 1e-4, 1e-3, 1e-3] and all(g["weight_decay"] == 0.01 for g in groups)
    assert groups[0]["betas"] == (0.9, 0.999) and groups[0]["eps"] == 1e-8
    ids = [{id(p) for p in g["params"]} for g in groups]
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("norm" not in names[i] for i in ids[0]) and all("norm" in names[i] for i in ids[1])
    assert {names[i].split(".")[0] for i in ids[2]} == {"classifier", "aux_classifier", "projector"}
    assert {names[i].split(".")[0] for i in ids[3]} == {"decoder"}
    assert model.backbone.cls_token in groups[0]["params"]  # the CLS token decays too
    left_out = {names[i] for i in set(names) - set().union(*ids)}
    assert left_out == {"backbone.pos_embed", "projector.last_layer.parametrizations.weight.original0"} | {
        n for n in names.values() if n.startswith("projector_teacher")
    }

    # docs/mcc.md §8 check values (VOC: 20k iterations, 1500 warm-up, ratio 1e-6, power 0.9)
    m = lambda t: linear_warmup_poly_multiplier(t, 20000, 1500, 1e-6, 0.9)  # noqa: E731
    assert m(0) == pytest.approx(1e-6)
    assert m(199) == pytest.approx(0.13267, abs=1e-5)
    assert m(1499) == pytest.approx(5.996e-5 / 6e-5, abs=1e-4)
    assert m(1500) == pytest.approx(0.93224, abs=1e-5)
    assert 6e-5 * m(9999) == pytest.approx(3.215e-5, rel=1e-3)
    assert m(19999) == pytest.approx(1.346e-4, rel=1e-3)
    assert 6e-5 * linear_warmup_poly_multiplier(79999, 80000, 1500, 1e-6, 0.9) == pytest.approx(2.32e-9, rel=1e-2)
    cfg = _cfg("SOLVER.MAX_ITER", "20", "SOLVER.WARMUP_ITERS", "5")
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    expected = [linear_warmup_poly_multiplier(t, 20, 5, 1e-6, 0.9) for t in range(20)]
    np.testing.assert_allclose(lr_factors(optimizer, scheduler, 20), expected, rtol=1e-12)


def test_recipes_match_the_official_scripts():
    voc, coco = get_wss_cfg(VOC, ["MODEL.WEIGHTS", ""]), get_wss_cfg(COCO, ["MODEL.WEIGHTS", ""])
    for cfg in (voc, coco):
        assert cfg.MODEL.VIT.DEPTH == 12 and cfg.MODEL.VIT.EMBED_DIM == 768 and list(cfg.INPUT.CROP.SIZE) == [448, 448]
        assert cfg.SOLVER.BASE_LR == 6e-5 and cfg.SOLVER.WARMUP_ITERS == 1500 and cfg.SOLVER.WARMUP_FACTOR == 1e-6
        assert cfg.MODEL.MCC.MASK.RATIO == 0.95 and cfg.MODEL.MCC.MASK.NUM_LOCAL == 8 and cfg.MODEL.MCC.TEMPERATURE == 0.5
        assert cfg.INPUT.FORMAT == "RGB" and list(cfg.MODEL.PIXEL_MEAN) == [123.675, 116.28, 103.53]
    assert (voc.SOLVER.MAX_ITER, voc.MODEL.MCC.SEG_START_ITER, voc.MODEL.MCC.CAM.HIGH_THRESH) == (20000, 2000, 0.7)
    assert list(voc.MODEL.MCC.FLAG_CAMS) == ["aux", "final"] and list(voc.MODEL.MCC.PSEUDO_LABEL_CAMS) == ["final", "final"]
    assert (coco.SOLVER.MAX_ITER, coco.MODEL.MCC.SEG_START_ITER, coco.MODEL.MCC.CAM.HIGH_THRESH) == (80000, 8000, 0.65)
    assert list(coco.MODEL.MCC.FLAG_CAMS) == ["aux", "aux"] and list(coco.MODEL.MCC.PSEUDO_LABEL_CAMS) == ["aux", "final"]
    assert coco.MODEL.MCC.CAM.BACKGROUND_SCORE == 0.45 and coco.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 81
    assert coco.MODEL.VIT.AUX_LAYER == 9 and voc.MODEL.VIT.AUX_LAYER == -3


def test_supervised_reference_is_the_same_vit_and_largefov_on_pixel_labels():
    cfg = get_wss_cfg(os.path.join(CONFIGS, "synthetic", "vit_largefov_supervised.yaml"), ["MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    model = build_model(cfg)
    mcc = build_model(get_wss_cfg(SYNTHETIC, ["MODEL.WEIGHTS", ""]))
    # same backbone and head shapes: MCC's weights (backbone., decoder.) map onto it one to one
    assert {k: v.shape for k, v in model.backbone.state_dict().items()} == {
        k: v.shape for k, v in mcc.backbone.state_dict().items()}
    head = {k.replace("predictor.", ""): v.shape for k, v in model.sem_seg_head.state_dict().items()}
    assert head == {k: v.shape for k, v in mcc.decoder.state_dict().items()}
    model.train()
    label = torch.randint(0, 6, (64, 64))
    label[:5] = 255
    batch = [{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), "sem_seg": label}]
    with EventStorage(0):
        losses = model(batch)
    image = (batch[0]["image"].float() - model.pixel_mean) / model.pixel_std
    logits = model.sem_seg_head.predictor(model.backbone(image[None])["final"])
    logits = F.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(losses["loss_sem_seg"], F.cross_entropy(logits, label[None], ignore_index=255))
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 255, (3, 50, 70), dtype=torch.uint8), "height": 50, "width": 70}])
    assert out[0]["sem_seg"].shape == (6, 50, 70)


@pytest.mark.slow
def test_train_net_runs_mcc_with_accumulation_and_evaluates(tmp_path):
    """train_net.py end to end on the synthetic tags: the multi-view mapper, 3 optimizer steps of 2
    accumulated batches (segmentation losses on from step 1), a checkpoint with the EMA teacher, the
    val evaluation; then --eval-only of the CAM output through the CAM evaluator."""
    import json
    import subprocess
    import sys

    from .conftest import REPO

    tiny = ["MODEL.VIT.DEPTH", "3", "MODEL.VIT.EMBED_DIM", "48", "MODEL.MCC.SEG_START_ITER", "0",
            "MODEL.MCC.FLAG_CAM_SWITCH_ITER", "1", "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.ACCUMULATE_STEPS", "2", "SOLVER.CHECKPOINT_PERIOD", "3", "DATALOADER.NUM_WORKERS", "0",
            "MODEL.WEIGHTS", "", "MODEL.MCC.MASK.NUM_LOCAL", "2"]
    out = str(tmp_path / "mcc")
    command = [sys.executable, "train_net.py", "--config-file", SYNTHETIC, *tiny, "OUTPUT_DIR", out]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out, "metrics.json")) as f:
        records = [json.loads(line) for line in f]
    logged = {k for r in records for k in r}
    assert {"loss_cls", "loss_cls_aux", "loss_aff", "loss_mcc", "loss_seg", "loss_reg"} <= logged
    state = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=False)["model"]
    assert any(k.startswith("projector_teacher.") for k in state)
    with open(os.path.join(out, "results.json")) as f:
        assert 0 <= json.load(f)["sem_seg"]["mIoU"] <= 100
    cams = str(tmp_path / "cams")
    command = [sys.executable, "train_net.py", "--config-file", SYNTHETIC, "--eval-only", *tiny, "OUTPUT_DIR", cams,
               "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), "MODEL.MCC.TEST_OUTPUT", "cam",
               "TEST.EVALUATORS", "['cam']", "DATASETS.TEST", "('wss_synthetic_val',)"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(cams, "results.json")) as f:
        assert "cam" in json.load(f)


def test_visible_token_views_equal_the_full_masked_forward():
    full = _model("MODEL.MCC.DROP_MASKED_TOKENS", "False").train()
    short = _model("MODEL.MCC.DROP_MASKED_TOKENS", "True").train()
    short.load_state_dict(full.state_dict())
    batch = _batch()
    a, b = _losses(full, batch, 6, seed=5), _losses(short, batch, 6, seed=5)
    torch.testing.assert_close(b["loss_mcc"], a["loss_mcc"], rtol=1e-5, atol=1e-6)
    a["loss_mcc"].backward()
    b["loss_mcc"].backward()
    for (name, p), q in zip(full.named_parameters(), short.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    # a fully masked view and mixed visible counts: the CLS equals the masked forward's
    masks = torch.zeros(2, 3, 8, 8, dtype=torch.bool)
    masks[0, 0] = True
    masks[1, 1, :4] = True
    masks[0, 2, ::2] = True
    local = torch.randn(2, 3, 64, 64)
    from wss_d2.methods.mcc import key_policy

    with torch.no_grad():
        expected = full.backbone(local.repeat(3, 1, 1, 1), policy=key_policy(masks))["cls"]
        torch.testing.assert_close(short.masked_view_cls(local, masks), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_two_process_training_of_a_variant_with_unused_parameters(tmp_path):
    """ToCo-style (no contrast: the projector is outside the loss) on 2 GLOO processes: DDP is told to
    look for unused parameters, as the model declares."""
    import subprocess
    import sys

    from .conftest import REPO

    assert _model("MODEL.MCC.MCC_LOSS_WEIGHT", "0.0").find_unused_parameters and not _model().find_unused_parameters
    command = [sys.executable, "train_net.py", "--config-file", os.path.join(CONFIGS, "synthetic", "mcc_vit_toco.yaml"),
               "--num-gpus", "2", "MODEL.WEIGHTS", "", "MODEL.VIT.DEPTH", "3", "MODEL.VIT.EMBED_DIM", "48",
               "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0",
               "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "toco")]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.exists(tmp_path / "toco" / "model_final.pth")
