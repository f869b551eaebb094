"""SPML's registered models: backbone, embedding and classifier heads, SPMLEmbedder, SPMLClassifier, parameter groups."""
import glob
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.methods.spml import (
    SPML_SETTINGS,
    SPMLClassifier,
    SPMLClassifierHead,
    SPMLEmbedder,
    form_segments,
    spml_total_loss,
    SPMLCandidates,
)
from wss_d2.methods.spml.meta_arch import check_setting
from wss_d2.modeling.heads import DeepLabV2Head, SPMLASPPv2SumHead, SPMLPSPEmbedHead
from wss_d2.solver import build_lr_scheduler
from wss_d2.solver.param_groups import build_param_groups

from .conftest import CONFIGS

BASE = os.path.join(CONFIGS, "Base-SPML.yaml")
SYNTHETIC = os.path.join(CONFIGS, "synthetic", "spml_R18_scribbles.yaml")
CPU = ["MODEL.DEVICE", "cpu"]
K = 6


def _cfg(path=SYNTHETIC, opts=()):
    return get_wss_cfg(path, [*CPU, *opts])


def _model(opts=(), path=SYNTHETIC, seed=0):
    torch.manual_seed(seed)
    return build_model(_cfg(path, opts))


def _batch(n=2, size=32, seed=0):
    """Two-colour images: left half class 1 (red), right half class 2 (green), sparse strokes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        image = torch.zeros(3, size, size)
        image[0, :, : size // 2] = 200
        image[1, :, size // 2:] = 200
        image = (image + torch.randint(0, 40, (3, size, size), generator=g)).clamp(0, 255).to(torch.uint8)
        labels = torch.full((size, size), K, dtype=torch.long)  # unlabelled
        labels[4:28, 4:10] = 1
        labels[4:28, 22:28] = 2
        labels[:, -2:] = 255  # void padding
        regions = torch.zeros(size, size, dtype=torch.long)
        regions[:, size // 2:] = 1
        regions[size // 2:] += 2
        tags = torch.tensor([1.0, 1, 1, 0, 0, 0])
        out.append({"image": image, "sparse_sem_seg": labels, "overseg": regions, "image_labels": tags,
                    "file_name": f"toy{i}.png"})
    return out


# ----------------------------------------------------------------------------- backbone
def test_resnet101_backbone_has_spml_dilations_deep_stem_stride_8_and_bn_momentum():
    from detectron2.modeling import build_backbone

    cfg = get_wss_cfg(BASE, [*CPU, "MODEL.RESNETS.NORM", "BN"])
    backbone = build_backbone(cfg)
    assert backbone.output_shape()["res5"].stride == 8
    res4 = [b.conv2.dilation[0] for b in backbone.res4]
    res5 = [b.conv2.dilation[0] for b in backbone.res5]
    assert res4 == [1] + [2] * 22 and res5 == [2, 4, 4]
    assert [b.conv2.stride[0] for b in backbone.res3][:1] == [2]
    assert all(b.conv1.stride[0] == 1 and b.conv2.stride[0] == 1 for b in list(backbone.res4) + list(backbone.res5))
    assert backbone.stem.conv1.out_channels == 64 and backbone.stem.conv3.out_channels == 128
    bns = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(m.momentum == pytest.approx(3e-4) for m in bns)


def test_block_dilated_backbone_output_shape_and_bad_dilations():
    from detectron2.modeling import build_backbone

    cfg = _cfg()
    backbone = build_backbone(cfg)
    out = backbone(torch.zeros(1, 3, 64, 48))
    assert out["res5"].shape == (1, 512, 8, 6)
    assert [b.conv1.dilation[0] for b in backbone.res5] == [2, 4]
    with pytest.raises(ValueError, match="RES5_BLOCK_DILATIONS"):
        build_backbone(_cfg(opts=["MODEL.RESNETS.RES5_BLOCK_DILATIONS", "[0, 4]"]))
    with pytest.raises(ValueError, match="res5 of ResNet-18 has 2 blocks"):
        build_backbone(_cfg(opts=["MODEL.RESNETS.RES5_BLOCK_DILATIONS", "[2, 4, 4]"]))


# ----------------------------------------------------------------------------- heads
def test_aspp_embedding_head_is_four_summed_biased_dilated_convs_upsampled_x2():
    shape = {"res5": ShapeSpec(channels=16, stride=8)}
    head = SPMLASPPv2SumHead(shape, in_feature="res5", embed_dim=64)
    convs = list(head.aspp)
    assert [c.dilation[0] for c in convs] == [6, 12, 18, 24] and all(c.bias is not None for c in convs)
    assert not any(isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.ReLU)) for m in head.modules())
    x = torch.randn(2, 16, 5, 7)
    e = head({"res5": x})
    assert e.shape == (2, 64, 10, 14) and head.output_stride == 4
    summed = sum(c(x) for c in convs)
    assert torch.allclose(e, F.interpolate(summed, scale_factor=2, mode="bilinear", align_corners=False))


def test_deeplab_v2_head_shares_the_summed_aspp_and_keeps_its_parameter_names():
    shape = {"res5": ShapeSpec(channels=8, stride=8)}
    head = DeepLabV2Head(shape, in_feature="res5", num_classes=3)
    assert sorted(head.state_dict()) == sorted(f"branches.{i}.{p}" for i in range(4) for p in ("weight", "bias"))
    x = torch.randn(1, 8, 4, 4)
    assert torch.allclose(head.layers({"res5": x}), sum(b(x) for b in head.branches))


def test_psp_embedding_head_shape_and_default_bn_momentum():
    shape = {"res5": ShapeSpec(channels=16, stride=8)}
    head = SPMLPSPEmbedHead(shape, in_feature="res5", embed_dim=32, branch_channels=8)
    e = head({"res5": torch.randn(2, 16, 12, 12)})
    assert e.shape == (2, 32, 24, 24)
    bns = [m for m in head.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 5 and all(m.momentum == 0.1 for m in bns)
    assert head.fuse.in_channels == 16 + 4 * 8 and head.predictor.bias is not None


def test_classifier_head_layers_and_dropout():
    head = SPMLClassifierHead(64, 21, dropout=0.75)
    assert head.conv.out_channels == 128 and head.conv.bias is None and head.conv.kernel_size == (3, 3)
    assert head.dropout.p == 0.75 and head.predictor.kernel_size == (1, 1) and head.predictor.bias is not None
    assert head(torch.randn(2, 64, 5, 5)).shape == (2, 21, 5, 5)
    with pytest.raises(ValueError, match="dropout"):
        SPMLClassifierHead(8, 3, dropout=1.0)


# ----------------------------------------------------------------------------- stage A
def test_embedder_shapes_and_stride_4_embedding():
    model = _model()
    assert isinstance(model, SPMLEmbedder)
    images = torch.randn(2, 3, 32, 48)
    assert model.embed(images).shape == (2, 64, 8, 12)


def test_crop_padding_is_the_mean_pixel_after_normalisation():
    model = _model()
    batch = _batch()
    for x in batch:
        x["valid_mask"] = torch.ones(32, 32, dtype=torch.bool)
        x["valid_mask"][:, -4:] = False
    images = model._normalised_training_images(batch)
    assert torch.all(images[..., -4:] == 0) and images[..., :-4].abs().sum() > 0


def test_stage_a_loss_keys_and_each_weight_scales_its_own_loss():
    batch = _batch()
    model = _model().train()
    torch.manual_seed(1)
    base = model(batch)
    assert sorted(base) == ["loss_img_sim", "loss_sem_ann", "loss_sem_occ"]
    assert all(torch.isfinite(v) and v.dim() == 0 for v in base.values())
    for key, loss in (("SEM_OCC_LOSS_WEIGHT", "loss_sem_occ"), ("IMG_SIM_LOSS_WEIGHT", "loss_img_sim"),
                      ("SEM_ANN_LOSS_WEIGHT", "loss_sem_ann")):
        default = _cfg().MODEL.SPML[key]
        scaled = _model(["MODEL.SPML.SETTING", "", f"MODEL.SPML.{key}", str(default * 3)]).train()
        torch.manual_seed(1)
        out = scaled(batch)
        assert torch.allclose(out[loss], 3 * base[loss], rtol=1e-4, atol=1e-6), key
        for other in base:
            if other != loss:
                assert torch.allclose(out[other], base[other], rtol=1e-4, atol=1e-6), (key, other)
    off = _model(["MODEL.SPML.SETTING", "", "MODEL.SPML.SEM_OCC_LOSS_WEIGHT", "0.0"]).train()
    assert "loss_sem_occ" not in off(batch)
    aff = _model(["MODEL.SPML.SETTING", "", "MODEL.SPML.FEATURE_AFFINITY", "True"]).train()
    assert "loss_feat_aff" in aff(batch)


def test_sem_ann_term_is_weight_times_ce_plus_contrastive():
    batch = _batch()
    model = _model(["MODEL.SPML.SETTING", "", "MODEL.SPML.SEM_ANN_LOSS_WEIGHT", "0.5"]).eval()
    # eval mode: no dropout, so the CE is deterministic; the training path runs through .losses
    images = model._normalised_training_images(batch)
    labels = torch.stack([x["sparse_sem_seg"] for x in batch])
    regions = torch.stack([x["overseg"] for x in batch])
    tags = torch.stack([x["image_labels"] for x in batch])[:, 1:]
    with torch.no_grad():
        losses = model.losses(images, labels, regions, tags)
        e = model.embed(images)
        logits = F.interpolate(model.aux_classifier(F.normalize(e, dim=1)), size=labels.shape[-2:], mode="bilinear",
                               align_corners=False)
        target = torch.where(labels < K, labels, torch.full_like(labels, 255))
        ce = F.cross_entropy(logits, target, ignore_index=255)
        small = F.interpolate(labels[:, None].float(), size=e.shape[-2:], mode="nearest")[:, 0].long()
        small_r = F.interpolate(regions[:, None].float(), size=e.shape[-2:], mode="nearest")[:, 0].long()
        seg = form_segments(e, small, K, regions=small_r, tags=tags, grid=(6, 6))
        cands = SPMLCandidates.from_fields(seg.fields())
        setting = dict(SPML_SETTINGS["voc_scribbles"])
        ref = spml_total_loss(seg, cands, 0, K, setting)
    assert torch.allclose(losses["loss_sem_ann"], 0.5 * (ce + ref["loss_sem_ann"] / 1.0), rtol=1e-4)
    assert torch.allclose(losses["loss_sem_occ"], ref["loss_sem_occ"], rtol=1e-4)
    assert torch.allclose(losses["loss_img_sim"], ref["loss_img_sim"], rtol=1e-4)


def test_aux_ce_does_not_reach_the_embedding_but_trains_the_head():
    opts = ["MODEL.SPML.SETTING", "", "MODEL.SPML.SEM_ANN_LOSS_WEIGHT", "0.0", "MODEL.SPML.SEM_OCC_LOSS_WEIGHT", "0.0",
            "MODEL.SPML.IMG_SIM_LOSS_WEIGHT", "0.0"]
    model = _model(opts).train()
    losses = model(_batch())
    assert sorted(losses) == ["loss_ce"]
    losses["loss_ce"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is None for p in model.sem_seg_head.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.aux_classifier.parameters())


def test_contrastive_losses_reach_the_embedding_through_the_prototypes():
    torch.manual_seed(0)
    e = torch.randn(2, 8, 6, 6, requires_grad=True)
    labels = torch.randint(0, 3, (2, 6, 6))
    seg = form_segments(e, labels, 3, tags=torch.tensor([[1.0, 0], [0, 1]]), grid=(2, 2))
    seg.pixel_embedding = seg.pixel_embedding.detach()  # only the prototypes keep the graph
    seg.pixel_cluster_feature = seg.pixel_cluster_feature.detach()
    cands = SPMLCandidates.from_fields(seg.fields())
    losses = spml_total_loss(seg, cands, 0, 3, SPML_SETTINGS["voc_scribbles"])
    sum(losses.values()).backward()
    assert e.grad is not None and e.grad.abs().sum() > 0


def test_stem_and_res2_are_frozen_but_their_bn_stays_in_train_mode():
    model = _model(path=BASE, opts=["MODEL.RESNETS.NORM", "BN", "MODEL.SPML.CLASSIFIER_NORM", "BN",
                                    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
                                    "MODEL.RESNETS.RES4_BLOCK_DILATIONS", "[1, 2]",
                                    "MODEL.RESNETS.RES5_BLOCK_DILATIONS", "[2, 4]", "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
                                    "6", "MODEL.WEIGHTS", ""]).train()
    frozen = list(model.backbone.stem.parameters()) + list(model.backbone.res2.parameters())
    assert frozen and not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in model.backbone.res3.parameters())
    bn = model.backbone.stem.conv1.norm
    assert bn.training
    before = bn.running_mean.clone()
    model(_batch())
    assert not torch.equal(before, bn.running_mean)


def test_memory_bank_fills_after_each_step_and_is_not_checkpointed():
    model = _model().train()
    assert len(model.memory) == 0
    model(_batch())
    model(_batch())
    model(_batch())
    assert len(model.memory) == 2
    assert not any("memory" in k for k in model.state_dict())


def test_missing_overseg_names_the_field_and_bad_setting_names_the_key():
    batch = _batch()
    for x in batch:
        del x["overseg"]
    with pytest.raises(KeyError, match="overseg"):
        _model().train()(batch)
    assert sorted(_model(["MODEL.SPML.ALLOW_MISSING_OVERSEG", "True"]).train()(batch))
    with pytest.raises(ValueError, match="SEM_OCC_CONCENTRATION"):
        _model(["MODEL.SPML.SEM_OCC_CONCENTRATION", "8.0"])


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(CONFIGS, "**", "*spml*.yaml"), recursive=True)) + [BASE],
    ids=lambda p: os.path.relpath(p, CONFIGS),
)
def test_every_spml_config_matches_its_named_recipe(path):
    cfg = get_wss_cfg(path)
    check_setting(cfg.MODEL.SPML)
    name = cfg.MODEL.SPML.SETTING
    if name:
        assert cfg.MODEL.SPML.KMEANS_GRID_TRAIN == SPML_SETTINGS[name]["grid_train"]


def test_short_learning_run_lowers_the_loss():
    model = _model().train()
    batch = _batch(n=4)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
    totals = []
    torch.manual_seed(0)
    for _ in range(12):
        losses = model(batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert sum(totals[-3:]) / 3 < 0.8 * sum(totals[:3]) / 3, totals


# ----------------------------------------------------------------------------- inference
def test_embedder_inference_contract():
    model = _model().eval()
    image = torch.randint(0, 255, (3, 30, 45), dtype=torch.uint8)
    out = model([{"image": image, "height": 60, "width": 90}])[0]
    assert out["embedding"].shape == (64, 60, 90) and out["sem_seg"].shape == (K, 60, 90)
    assert out["sem_seg_kind"] == "logits"
    assert torch.allclose(out["embedding"].norm(dim=0), torch.ones(60, 90), atol=1e-5)


def test_embedder_inference_resizes_the_long_side():
    model = _model(["TEST.SPML.IMAGE_SIZE", "32"]).eval()
    seen = []
    original = model.embed
    model.embed = lambda x: (seen.append(tuple(x.shape[-2:])), original(x))[1]
    out = model([{"image": torch.randint(0, 255, (3, 20, 64), dtype=torch.uint8)}])[0]
    assert seen == [(16, 32)] and out["sem_seg"].shape == (K, 20, 64)


def test_window_starts_end_at_the_border():
    from wss_d2.methods.spml.meta_arch import window_starts

    assert window_starts(400, 512) == [0]
    assert window_starts(512, 512) == [0]
    assert window_starts(1000, 512) == [0, 488]  # ends 512, 1000
    assert window_starts(1024, 512) == [0, 512]
    assert window_starts(1100, 512) == [0, 294, 588]  # ends linspace(512, 1100, 3) = 512, 806, 1100


def test_sliding_window_inference_pads_tiles_and_averages_unit_embeddings():
    model = _model(["TEST.SPML.WINDOW_SIZE", "16"]).eval()
    seen = []
    original = model.embed
    model.embed = lambda x: (seen.append(tuple(x.shape[-2:])), original(x))[1]
    image = torch.randint(0, 255, (3, 10, 40), dtype=torch.uint8)
    out = model([{"image": image}])[0]
    # rows padded 10 -> 16: one; columns 40: starts 0, 12, 24; then the raw embedding in one pass
    assert seen == [(16, 16)] * 3 + [(16, 40)]
    assert out["embedding"].shape == (64, 10, 40) and out["sem_seg"].shape == (K, 10, 40)
    assert torch.allclose(out["embedding"].norm(dim=0), torch.ones(10, 40), atol=1e-5)
    # a pixel inside one window only: that window's unit embedding
    padded = F.pad((image[None].float() - model.pixel_mean) / model.pixel_std, (0, 0, 0, 6))
    first = F.normalize(F.interpolate(original(padded[..., :16]), size=(16, 16), mode="bilinear",
                                      align_corners=False), dim=1)
    assert torch.allclose(out["embedding"][:, :, :12], first[0, :, :10, :12], atol=1e-5)
    # the random walk's raw embedding: the whole padded image, not normalised, cropped to the image
    whole = F.interpolate(original(padded), size=(16, 40), mode="bilinear", align_corners=False)
    assert torch.equal(out["raw_embedding"], whole[0, :, :10])
    assert not torch.allclose(out["raw_embedding"].norm(dim=0), torch.ones(10, 40))


def test_one_window_inference_reuses_its_pass_for_the_raw_embedding_and_stage_c_returns_it():
    model = _model(["TEST.SPML.WINDOW_SIZE", "16"]).eval()
    seen = []
    original = model.embed
    model.embed = lambda x: (seen.append(tuple(x.shape[-2:])), original(x))[1]
    out = model([{"image": torch.randint(0, 255, (3, 10, 12), dtype=torch.uint8)}])[0]
    assert seen == [(16, 16)]
    assert torch.allclose(F.normalize(out["raw_embedding"], dim=0), out["embedding"], atol=1e-6)
    stage_c = _classifier()
    stage_c.load_state_dict(model.state_dict(), strict=False)
    out_c = stage_c.eval()([{"image": torch.randint(0, 255, (3, 10, 12), dtype=torch.uint8)}])[0]
    assert set(out_c) == {"embedding", "raw_embedding", "sem_seg", "sem_seg_kind"}
    assert out_c["raw_embedding"].shape == (64, 10, 12)


# ----------------------------------------------------------------------------- stage C
def _classifier(opts=()):
    return _model(["MODEL.META_ARCHITECTURE", "SPMLClassifier", "MODEL.SPML.SETTING", "", *opts])


def test_stage_c_freezes_the_embedder_loads_only_its_weights_and_trains_a_fresh_head():
    stage_a = _model(seed=3)
    stage_c = _classifier()
    assert isinstance(stage_c, SPMLClassifier)
    fresh = {k: v.clone() for k, v in stage_c.classifier.state_dict().items()}
    result = stage_c.load_state_dict(stage_a.state_dict(), strict=False)
    assert all(k.startswith("classifier.") for k in result.missing_keys) and result.missing_keys
    assert all(k.startswith("aux_classifier.") for k in result.unexpected_keys)
    for k, v in stage_c.classifier.state_dict().items():
        assert torch.equal(v, fresh[k])
    assert torch.equal(stage_c.backbone.res3[0].conv1.weight, stage_a.backbone.res3[0].conv1.weight)
    assert stage_c.classifier.dropout.p == 0.65

    stage_c.train()
    assert stage_c.training and not stage_c.backbone.training and not stage_c.sem_seg_head.training
    batch = [{"image": x["image"], "sem_seg": torch.where(x["sparse_sem_seg"] < K, x["sparse_sem_seg"], 255)}
             for x in _batch()]
    bn = stage_c.backbone.res3[0].conv1.norm
    before = bn.running_mean.clone()
    losses = stage_c(batch)
    assert sorted(losses) == ["loss_ce"]
    losses["loss_ce"].backward()
    assert torch.equal(bn.running_mean, before)
    assert all(p.grad is None and not p.requires_grad for p in stage_c.backbone.parameters())
    assert all(p.grad is not None for p in stage_c.classifier.parameters())
    groups = build_param_groups(_cfg(opts=["MODEL.META_ARCHITECTURE", "SPMLClassifier"]), stage_c)
    params = [p for g in groups for p in g["params"]]
    assert {id(p) for p in params} == {id(p) for p in stage_c.classifier.parameters()}
    by_lr = sorted((round(g["lr"], 9), g["weight_decay"]) for g in groups)
    assert by_lr == [(0.1, 0.0005), (0.2, 0.0)]  # BASE_LR 0.01: weights x10 with decay, biases x20 without


def test_stage_c_inference_contract_and_tta_wrap():
    from wss_d2.inference import maybe_wrap_with_tta

    model = _classifier().eval()
    image = torch.randint(0, 255, (3, 24, 40), dtype=torch.uint8)
    out = model([{"image": image, "height": 24, "width": 40}])[0]
    assert sorted(out) == ["embedding", "raw_embedding", "sem_seg", "sem_seg_kind"]
    assert out["sem_seg"].shape == (K, 24, 40) and out["embedding"].shape == (64, 24, 40)
    assert out["sem_seg_kind"] == "logits"
    cfg = _cfg(opts=["TEST.TTA.ENABLED", "True", "TEST.TTA.SCALES", "[0.5, 1.0]", "TEST.TTA.FLIP", "True"])
    probs = maybe_wrap_with_tta(cfg, model).eval()([{"image": image, "height": 24, "width": 40}])[0]["sem_seg"]
    assert probs.shape == (K, 24, 40) and torch.allclose(probs.sum(0), torch.ones(24, 40), atol=1e-4)


def test_train_embedding_makes_the_classifier_the_end_to_end_partial_ce_baseline():
    model = _classifier(["MODEL.SPML.TRAIN_EMBEDDING", "True", "MODEL.SPML.FROZEN_STAGES", "['stem']"]).train()
    assert model.backbone.training and model.sem_seg_head.training
    assert not any(p.requires_grad for p in model.backbone.stem.parameters())
    bn = model.backbone.res3[0].conv1.norm
    before = bn.running_mean.clone()
    batch = _batch()
    losses = model(batch)
    assert sorted(losses) == ["loss_ce"]
    losses["loss_ce"].backward()
    assert not torch.equal(bn.running_mean, before)  # the BN statistics train too
    assert model.backbone.res5[0].conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.sem_seg_head.parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.backbone.stem.parameters())
    # the loss is the CE of the labelled pixels only (labels >= K and 255 ignored)
    model.eval()
    with torch.no_grad():
        images = model._normalised_training_images(batch)
        e = F.normalize(model.embed(images), dim=1)
        logits = F.interpolate(model.classifier(e), size=images.shape[-2:], mode="bilinear", align_corners=False)
        labels = torch.stack([x["sparse_sem_seg"] for x in batch])
        expected = F.cross_entropy(logits, torch.where(labels < K, labels, -1), ignore_index=-1)
        assert torch.allclose(model.losses(images, labels)["loss_ce"], expected, atol=1e-5)
    groups = build_param_groups(_cfg(opts=["MODEL.META_ARCHITECTURE", "SPMLClassifier"]), model)
    trained = {id(p) for g in groups for p in g["params"]}
    assert id(model.backbone.res5[0].conv1.weight) in trained and id(model.backbone.stem.conv1.weight) not in trained


# ----------------------------------------------------------------------------- parameter groups, schedule
def test_stage_a_parameter_groups_follow_the_table():
    opts = ["MODEL.RESNETS.NORM", "BN", "MODEL.SPML.CLASSIFIER_NORM", "BN", "MODEL.RESNETS.DEPTH", "18",
            "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.RESNETS.RES4_BLOCK_DILATIONS", "[1, 2]",
            "MODEL.RESNETS.RES5_BLOCK_DILATIONS", "[2, 4]", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "6", "MODEL.WEIGHTS", ""]
    cfg = _cfg(BASE, opts)
    torch.manual_seed(0)
    model = build_model(cfg)
    groups = build_param_groups(cfg, model)
    setting = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in setting
            setting[id(p)] = (g["lr"], g["weight_decay"])
    base, wd = 0.003, 0.0005
    named = dict(model.named_parameters())
    expected = {
        "backbone.res3.0.conv1.weight": (base, wd),           # conv kernel x1, decay
        "backbone.res3.0.conv1.norm.weight": (base, wd),      # BN γ x1, decay
        "backbone.res3.0.conv1.norm.bias": (2 * base, 0.0),   # BN β x2, no decay
        "backbone.res5.1.conv2.weight": (base, wd),
        "sem_seg_head.aspp.0.weight": (10 * base, wd),        # head weights x10
        "sem_seg_head.aspp.3.bias": (20 * base, 0.0),         # head biases x20, no decay
        "aux_classifier.conv.weight": (10 * base, wd),
        "aux_classifier.conv.norm.weight": (10 * base, wd),
        "aux_classifier.conv.norm.bias": (20 * base, 0.0),
        "aux_classifier.predictor.bias": (20 * base, 0.0),
    }
    for name, (lr, decay) in expected.items():
        got = setting[id(named[name])]
        assert got[0] == pytest.approx(lr) and got[1] == pytest.approx(decay), name
    for name, p in named.items():
        if name.startswith(("backbone.stem.", "backbone.res2.")):
            assert id(p) not in setting, name  # not optimised
        else:
            assert id(p) in setting, name


def test_poly_schedule_with_linear_warmup_from_a_tenth():
    cfg = _cfg(BASE, ["SOLVER.MAX_ITER", "1000"])
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.SOLVER.BASE_LR)
    sched = build_lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(201):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    base = 0.003
    assert lrs[0] == pytest.approx(0.1 * base)
    assert lrs[50] == pytest.approx(base * (0.1 + 0.9 * 0.5) * (1 - 50 / 1000) ** 0.9, rel=1e-6)
    assert lrs[200] == pytest.approx(base * (1 - 200 / 1000) ** 0.9, rel=1e-6)
