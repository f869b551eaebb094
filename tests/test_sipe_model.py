"""SIPE's backbone, meta-architecture, solver and configs (docs/sipe.md §2, §4, §5)."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.methods.sipe import (
    hierarchical_feature,
    image_specific_cams,
    image_specific_prototypes,
    structure_aware_seeds,
)
from wss_d2.modeling.backbone.frozen_stats_bn import FrozenStatsBatchNorm2d
from wss_d2.modeling.cam import normalized_cams, resize_bicubic
from wss_d2.solver import build_lr_scheduler, build_optimizer

from .conftest import CONFIGS, lr_factors

VOC_CONFIG = os.path.join(CONFIGS, "voc", "sipe_R50.yaml")
SYNTHETIC_CONFIG = os.path.join(CONFIGS, "synthetic", "sipe_R18.yaml")
NO_WEIGHTS = ["MODEL.WEIGHTS", ""]


def _voc_model(*opts):
    torch.manual_seed(0)
    return build_model(get_wss_cfg(VOC_CONFIG, [*NO_WEIGHTS, *opts]))


def _inputs(n, size, tags, valid=None):
    """Mapper-like training dicts: uint8 image, valid_mask, (K+1) multi-hot tags."""
    torch.manual_seed(1)
    out = []
    for i in range(n):
        labels = torch.zeros(len(tags[i]) + 1)
        labels[0] = 1
        labels[1:] = torch.tensor(tags[i], dtype=torch.float32)
        out.append({
            "image": torch.randint(0, 255, (3, *size), dtype=torch.uint8),
            "valid_mask": torch.ones(size, dtype=torch.bool) if valid is None else valid[i],
            "image_labels": labels,
            "file_name": f"img{i}.jpg",
        })
    return out


def test_backbone_is_output_stride_16_with_undilated_res5():
    model = _voc_model()
    backbone = model.backbone
    assert [b.conv2.stride[0] for b in backbone.res5] == [1, 1, 1]  # stride on the 3x3 (torchvision)
    assert [b.conv2.dilation[0] for b in backbone.res5] == [1, 1, 1]
    assert backbone.res5[0].shortcut.stride == (1, 1)
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, 375, 500))
    # four ceil-halvings: 375x500 -> 24x32 (docs/sipe.md §2.5)
    assert tuple(features["res4"].shape[-2:]) == tuple(features["res5"].shape[-2:]) == (24, 32)
    assert tuple(features["res2"].shape[-2:]) == (94, 125)
    assert backbone.output_shape()["res5"].stride == 16
    # side and classifier parameter counts of docs/sipe.md §2.3
    assert sum(p.numel() for p in model.sides.parameters()) == 884736
    assert model.classifier.weight.numel() == 40960
    assert all(conv.bias is None for conv in [*model.sides, model.classifier])


def test_frozen_stats_bn_keeps_statistics_and_trains_affine():
    bn = FrozenStatsBatchNorm2d(4)
    bn.running_mean.fill_(1.0)
    bn.running_var.fill_(4.0)
    bn.train()
    x = torch.randn(8, 4, 5, 5) * 3 + 7
    y = bn(x)
    assert torch.allclose(y, (x - 1.0) / torch.sqrt(torch.tensor(4.0 + bn.eps)))  # eval-mode normalisation
    assert torch.all(bn.running_mean == 1.0) and torch.all(bn.running_var == 4.0)
    y.sum().backward()
    assert bn.weight.grad is not None and bn.bias.grad is not None


def test_bad_sipe_backbone_config():
    with pytest.raises(ValueError, match="RES5_STRIDE 1"):
        build_model(get_wss_cfg(VOC_CONFIG, [*NO_WEIGHTS, "MODEL.RESNETS.RES5_STRIDE", "2"]))
    with pytest.raises(ValueError, match="seed_feature_train"):
        build_model(get_wss_cfg(VOC_CONFIG, [*NO_WEIGHTS, "MODEL.SIPE.SEED_FEATURE_TRAIN", "res4"]))


def test_gradient_flow_follows_section_2_2():
    model = _voc_model()
    model.train()
    losses = model(_inputs(2, (64, 80), [[1] + [0] * 19, [0, 1] + [0] * 18]))
    assert set(losses) == {"loss_cls", "loss_gsc"}
    bn_before = model.backbone.res4[0].conv1.norm.running_mean.clone()
    sum(losses.values()).backward()
    named = dict(model.named_parameters())
    # stem, res2, res3: never a gradient (frozen and detached)
    for name, p in named.items():
        if name.startswith(("backbone.stem", "backbone.res2", "backbone.res3")):
            assert p.grad is None and not p.requires_grad, name
    # res4 and res5: conv weights and BN affine train; BN statistics do not move
    for name in ("backbone.res4.0.conv1.weight", "backbone.res4.0.conv1.norm.weight", "backbone.res5.2.conv3.norm.bias"):
        assert named[name].grad is not None and named[name].grad.abs().sum() > 0, name
    assert torch.equal(model.backbone.res4[0].conv1.norm.running_mean, bn_before)
    for conv in [*model.sides, model.classifier]:
        assert conv.weight.grad.abs().sum() > 0


def test_side_convs_learn_only_from_gsc_and_cls_never_reaches_them():
    model = _voc_model()
    model.train()
    losses = model(_inputs(1, (64, 64), [[1] + [0] * 19]))
    losses["loss_cls"].backward(retain_graph=True)
    assert all(conv.weight.grad is None for conv in model.sides)
    assert model.classifier.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    # GSC through IS-CAM alone: its gradient must not reach the backbone (detached side inputs)
    features = model._backbone_features(model.normalize(torch.zeros(1, 3, 64, 64)))
    sides = [conv(features[f].detach()) for conv, f in zip(model.sides, model.side_features)]
    hier = hierarchical_feature(sides, features["res4"].shape[-2:])
    seeds = torch.zeros(1, 21, 4, 4)
    seeds[0, 0, :2] = 1
    seeds[0, 1, 2:] = 1
    image_specific_cams(hier, image_specific_prototypes(seeds, hier)).sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(conv.weight.grad.abs().sum() > 0 for conv in model.sides)


def test_training_losses_match_the_equations_with_padding_mask():
    """loss_cls and loss_gsc recomputed by hand from the network's own tensors, with a padded crop."""
    model = _voc_model()
    model.train()
    valid = torch.zeros(64, 64, dtype=torch.bool)
    valid[:40, 8:] = True  # padding at the bottom and left
    tags = [0] * 20
    tags[4] = tags[14] = 1
    inputs = _inputs(1, (64, 64), [tags], valid=[valid])
    losses = model(inputs)

    with torch.no_grad():
        images = model.normalize(inputs[0]["image"][None], valid[None].float())
        assert torch.all(images[0, :, 50, 2] == 0)  # padding is zero after normalisation
        logits, hier, x5 = model._network(images)
    y = torch.tensor(tags, dtype=torch.float32)
    s = logits[0].mean(dim=(1, 2))
    expected_cls = -(y * F.logsigmoid(s) + (1 - y) * F.logsigmoid(-s)).mean()
    assert losses["loss_cls"].item() == pytest.approx(expected_cls.item(), rel=1e-5)

    # V: top-left pixel of each 16x16 cell, channels 1..K times the tags
    v = valid[::16, ::16].float()
    assert v.tolist() == [[0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]]
    mask = v[None] * torch.cat([torch.ones(1), y])[:, None, None]
    cams = normalized_cams(logits)[0] * mask
    seeds, _ = structure_aware_seeds(cams[None], x5, mask[None])
    assert seeds[0, :, 3].sum() == 0 and seeds[0, :, :, 0].sum() == 0  # no seed in padding
    assert seeds[0, [c for c in range(21) if c not in (0, 5, 15)]].sum() == 0  # no seed of an absent class
    is_cam = image_specific_cams(hier, image_specific_prototypes(seeds, hier))[0]
    is_cam = is_cam / (is_cam.flatten(1).max(1).values[:, None, None] + 1e-5)
    assert losses["loss_gsc"].item() == pytest.approx((cams - is_cam).abs().mean().item(), rel=1e-5)


class _FixedNetwork:
    """Stands in for SIPE._network: returns given logits / F_h per input row (image, flip)."""

    def __init__(self, logits, hier):
        self.logits, self.hier = logits, hier

    def __call__(self, images):
        n = images.shape[0]
        return self.logits[:n], self.hier[:n], self.hier[:n]


def test_flip_fusion_sums_raw_logits_and_features_before_normalisation():
    model = _voc_model("MODEL.SEM_SEG_HEAD.NUM_CLASSES", "3")
    model.eval()
    torch.manual_seed(3)
    logits = torch.randn(2, 2, 3, 4)
    hier = torch.randn(2, 5, 3, 4)
    model._network = _FixedNetwork(logits, hier)
    tags = torch.tensor([1.0, 1.0])
    got = model._scale_maps(torch.zeros(1, 3, 48, 64), tags)
    fused_logits = logits[:1] + logits[1:].flip(-1)
    fused_hier = hier[:1] + hier[1:].flip(-1)
    cams = normalized_cams(fused_logits)
    seeds, _ = structure_aware_seeds(cams, fused_hier, torch.ones(1, 3))
    expected = image_specific_cams(fused_hier, image_specific_prototypes(seeds, fused_hier))
    assert torch.allclose(got, expected)
    # fusing after the ReLU / max-normalisation would differ
    late = normalized_cams(logits[:1]) + normalized_cams(logits[1:]).flip(-1)
    assert not torch.allclose(cams, late / late.flatten(2).max(2).values[..., None, None])


def test_scales_are_summed_at_full_size_then_max_normalised():
    model = _voc_model("MODEL.SEM_SEG_HEAD.NUM_CLASSES", "4", "TEST.SIPE.SCALES", "[1.0, 0.5]")
    model.eval()
    per_scale = {}

    def fake_scale_maps(image, tags):
        h, w = image.shape[-2:]
        maps = torch.arange(4 * h * w, dtype=torch.float32).reshape(1, 4, h, w) / (h * w)
        per_scale[(h, w)] = (maps, image.clone())
        return maps

    model._scale_maps = fake_scale_maps
    image = torch.randint(0, 255, (3, 10, 14), dtype=torch.uint8)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])  # background, class 2 present
    out = model.inference({"image": image, "image_labels": labels})
    assert set(per_scale) == {(10, 14), (5, 7)}
    # the 0.5 scale was made with PIL bicubic on the uint8 image
    expected_small = model.normalize(resize_bicubic(image, (5, 7))[None])
    assert torch.allclose(per_scale[(5, 7)][1], expected_small)
    total = per_scale[(10, 14)][0][0] + F.interpolate(per_scale[(5, 7)][0], size=(10, 14), mode="bilinear",
                                                       align_corners=False)[0]
    total = total / (total.flatten(1).max(1).values[:, None, None] + 1e-5)
    assert out["cam_labels"].tolist() == [0, 2]  # background first, then the present classes
    assert torch.allclose(out["cams"], total[[0, 2]])
    assert torch.allclose(out["sem_seg"][[0, 2]], total[[0, 2]]) and out["sem_seg"][[1, 3]].abs().sum() == 0


def test_tag_errors_name_the_image():
    model = _voc_model()
    model.train()
    inputs = _inputs(1, (32, 32), [[1] + [0] * 19])
    inputs[0]["image_labels"] = torch.ones(20)
    with pytest.raises(ValueError, match="image_labels of img0.jpg has 20 entries, expected 21"):
        model(inputs)
    del inputs[0]["image_labels"]
    with pytest.raises(KeyError, match="img0.jpg"):
        model(inputs)


def test_solver_reproduces_section_4():
    cfg = get_wss_cfg(VOC_CONFIG, NO_WEIGHTS + ["SOLVER.MAX_ITER", "10"])
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert set(groups) == {id(p) for p in trainable}  # frozen stages are not optimised
    assert groups[id(model.backbone.res4[0].conv1.weight)]["lr"] == pytest.approx(0.1)
    assert groups[id(model.backbone.res4[0].conv1.norm.weight)]["lr"] == pytest.approx(0.1)
    assert groups[id(model.classifier.weight)]["lr"] == pytest.approx(1.0)
    assert groups[id(model.sides[0].weight)]["lr"] == pytest.approx(1.0)
    assert all(g["weight_decay"] == 1e-4 for g in optimizer.param_groups)  # BN γ/β included
    assert all(g["momentum"] == 1e-4 for g in optimizer.param_groups)  # the docs/sipe.md §4.2 quirk
    factors = lr_factors(optimizer, build_lr_scheduler(cfg, optimizer), 10)
    assert factors == pytest.approx([(1 - t / 10) ** 0.9 for t in range(10)])  # poly, no warm-up


def test_full_model_clipping_uses_one_norm_over_all_parameters():
    cfg = get_wss_cfg(VOC_CONFIG, NO_WEIGHTS + ["SOLVER.BASE_LR", "1.0", "SOLVER.BACKBONE_MULTIPLIER", "1.0",
                                                "SOLVER.WEIGHT_DECAY", "0.0", "SOLVER.WEIGHT_DECAY_NORM", "0.0",
                                                "SOLVER.MOMENTUM", "0.0"])
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    module = torch.nn.Module()
    module.a, module.b = a, b
    optimizer = build_optimizer(cfg, module)
    a.grad, b.grad = torch.tensor([3.0]), torch.tensor([4.0])  # total norm 5, each below... per-param 3 and 4
    optimizer.step()
    # one norm: both scaled by 1/5 (per-parameter clipping would give -1 and -1)
    assert a.item() == pytest.approx(-0.6, rel=1e-4) and b.item() == pytest.approx(-0.8, rel=1e-4)


def test_pil_bicubic_resize_matches_pil():
    from PIL import Image

    image = np.random.RandomState(0).randint(0, 255, (11, 17, 3), dtype=np.uint8)
    got = resize_bicubic(torch.from_numpy(image).permute(2, 0, 1), (6, 9))
    expected = np.asarray(Image.fromarray(image).resize((9, 6), Image.BICUBIC))
    assert np.array_equal(got.permute(1, 2, 0).numpy(), expected)


def test_training_crops_of_different_sizes_name_the_images():
    model = _voc_model()
    model.train()
    batch = _inputs(1, (64, 64), [[1] + [0] * 19]) + _inputs(1, (48, 64), [[1] + [0] * 19])
    batch[1]["file_name"] = "small.jpg"
    with pytest.raises(ValueError, match=r"small.jpg: \(48, 64\).*INPUT.CROP.PAD True"):
        model(batch)
