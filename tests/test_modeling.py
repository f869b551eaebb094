import math
import os

import pytest
import torch
import torchvision

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model, build_sem_seg_head

from wss_d2 import get_wss_cfg
from wss_d2.modeling import WSSDeepLabV3PlusHead
from wss_d2.solver import build_lr_scheduler, build_optimizer

from .conftest import CONFIGS, MAIN_CONFIG, lr_factors

OS16 = ["MODEL.RESNETS.RES4_DILATION", "1", "MODEL.RESNETS.RES5_DILATION", "2"]
OS8 = ["MODEL.RESNETS.RES4_DILATION", "2", "MODEL.RESNETS.RES5_DILATION", "4"]
OS32 = ["MODEL.RESNETS.RES4_DILATION", "1", "MODEL.RESNETS.RES5_DILATION", "1"]
R50 = ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.RES2_OUT_CHANNELS", "256", "MODEL.RESNETS.RES5_MULTI_GRID", "[1, 1, 1]"]


def _cfg(*opts):
    return get_wss_cfg(MAIN_CONFIG, list(opts))


@pytest.mark.parametrize(
    "depth_opts, stride_opts, stride, channels",
    [([], OS16, 16, 512), ([], OS8, 8, 512), ([], OS32, 32, 512), (R50, OS16, 16, 2048), (R50, OS8, 8, 2048)],
)
def test_backbone_output_stride(depth_opts, stride_opts, stride, channels):
    backbone = build_backbone(_cfg(*depth_opts, *stride_opts))
    features = backbone(torch.zeros(1, 3, 64, 96))
    assert tuple(features["res5"].shape) == (1, channels, 64 // stride, 96 // stride)
    assert tuple(features["res2"].shape[-2:]) == (16, 24)
    assert backbone.size_divisibility == stride
    assert backbone.output_shape()["res5"].stride == stride


def test_dilations_follow_config():
    backbone = build_backbone(_cfg(*OS8))
    assert [b.conv1.dilation[0] for b in backbone.res4] == [2, 2]
    assert [b.conv1.dilation[0] for b in backbone.res5] == [4, 4]
    assert [b.conv1.stride[0] for b in backbone.res4] == [1, 1]  # dilated stages keep resolution
    backbone = build_backbone(_cfg(*R50, *OS16, "MODEL.RESNETS.RES5_MULTI_GRID", "[1, 2, 4]"))
    assert [b.conv2.dilation[0] for b in backbone.res5] == [2, 4, 8]


@pytest.mark.parametrize("depth, tv_model", [(18, torchvision.models.resnet18), (50, torchvision.models.resnet50)])
def test_parameter_count_matches_torchvision(depth, tv_model):
    opts = ["MODEL.RESNETS.OUT_FEATURES", '["res5"]', *OS32]
    if depth == 50:
        opts = R50 + opts
    ours = sum(p.numel() for p in build_backbone(_cfg(*opts)).parameters())
    reference = tv_model()
    theirs = sum(p.numel() for n, p in reference.named_parameters() if not n.startswith("fc."))
    assert ours == theirs


def test_bad_backbone_configs():
    with pytest.raises(ValueError, match="RES5_DILATION=4"):
        build_backbone(_cfg("MODEL.RESNETS.RES4_DILATION", "2", "MODEL.RESNETS.RES5_DILATION", "2"))
    with pytest.raises(ValueError, match="RES5_MULTI_GRID"):
        build_backbone(_cfg("MODEL.RESNETS.RES5_MULTI_GRID", "[1, 2, 4]"))
    with pytest.raises(ValueError, match="DEPTH"):
        build_backbone(_cfg("MODEL.RESNETS.DEPTH", "26"))


def _head(**kwargs):
    shapes = {"res2": ShapeSpec(channels=8, stride=4), "res5": ShapeSpec(channels=16, stride=16)}
    args = dict(
        in_features=["res2", "res5"], num_classes=3, ignore_value=255, project_channels=4,
        aspp_channels=8, aspp_dilations=[1, 2, 3], aspp_dropout=0.0, aspp_pool_norm=True,
        decoder_channels=8, norm="BN",
    )
    args.update(kwargs)
    return WSSDeepLabV3PlusHead(shapes, **args)


def test_old_feature_head_name_builds_the_same_module():
    """MODEL.SEM_SEG_HEAD.NAME "AGMMDeepLabV3PlusHead" (the earlier name) and
    "DeepLabV3PlusFeatureHead" give the same parameters, so old checkpoints load strictly."""
    config = os.path.join(CONFIGS, "synthetic", "agmm_R18_points.yaml")
    shapes = build_backbone(get_wss_cfg(config, ["MODEL.WEIGHTS", ""])).output_shape()
    heads = {}
    for name in ("AGMMDeepLabV3PlusHead", "DeepLabV3PlusFeatureHead"):
        torch.manual_seed(0)
        heads[name] = build_sem_seg_head(get_wss_cfg(config, ["MODEL.SEM_SEG_HEAD.NAME", name]), shapes)
    old, new = heads["AGMMDeepLabV3PlusHead"], heads["DeepLabV3PlusFeatureHead"]
    assert type(new).__name__ == "DeepLabV3PlusFeatureHead" and isinstance(old, type(new))
    old_state, new_state = old.state_dict(), new.state_dict()
    assert list(old_state) == list(new_state)
    assert {k: v.shape for k, v in old_state.items()} == {k: v.shape for k, v in new_state.items()}
    torch.manual_seed(1)
    for value in old_state.values():
        if value.is_floating_point():
            value.normal_()
    new.load_state_dict(old_state, strict=True)
    assert all(torch.equal(new.state_dict()[k], v) for k, v in old_state.items())


@pytest.mark.parametrize("stage", [4, 5])
def test_old_agmm_dilation_keys_fail_naming_the_generic_ones(stage, tmp_path):
    """MODEL.AGMM.RES{4,5}_DILATIONS moved to MODEL.RESNETS.RES{4,5}_BLOCK_DILATIONS: refused on the
    command line and in a config file, naming the new key."""
    config = os.path.join(CONFIGS, "synthetic", "agmm_R18_points.yaml")
    renamed = f"MODEL.AGMM.RES{stage}_DILATIONS.*renamed.*MODEL.RESNETS.RES{stage}_BLOCK_DILATIONS"
    with pytest.raises(KeyError, match=renamed):
        get_wss_cfg(config, [f"MODEL.AGMM.RES{stage}_DILATIONS", "[1, 1]"])
    old = tmp_path / "old.yaml"
    old.write_text(f'_BASE_: "{config}"\nMODEL:\n  AGMM:\n    RES{stage}_DILATIONS: [2, 2]\n')
    with pytest.raises(KeyError, match=renamed):
        get_wss_cfg(str(old))


def test_agmm_backbone_name_is_an_alias_of_the_block_dilated_builder():
    """MODEL.BACKBONE.NAME "build_agmm_resnet_backbone" (the earlier name) builds the shared
    builder's module: the same class, state-dict keys and dilations, so old checkpoints load."""
    config = os.path.join(CONFIGS, "synthetic", "agmm_R18_points.yaml")
    backbones = {}
    for name in ("build_agmm_resnet_backbone", "build_resnet_block_dilated_backbone"):
        torch.manual_seed(0)
        backbones[name] = build_backbone(get_wss_cfg(config, ["MODEL.WEIGHTS", "", "MODEL.BACKBONE.NAME", name]))
    old, new = backbones["build_agmm_resnet_backbone"], backbones["build_resnet_block_dilated_backbone"]
    assert type(old) is type(new)
    old_state, new_state = old.state_dict(), new.state_dict()
    assert list(old_state) == list(new_state)
    assert all(torch.equal(old_state[k], new_state[k]) for k in old_state)
    dilations = lambda m: [c.dilation for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert dilations(old) == dilations(new)
    x = torch.rand(1, 3, 48, 48)
    old.eval(), new.eval()
    assert torch.equal(old(x)["res5"], new(x)["res5"])


def test_loss_matches_hand_computed_cross_entropy():
    head = _head(num_classes=2)
    # 1x3 image: (logits) -> label
    logits = torch.tensor([[[[0.0, math.log(3.0), 5.0]], [[math.log(3.0), 0.0, -5.0]]]])
    targets = torch.tensor([[[1, 1, 255]]])
    loss = head.losses(logits, targets)["loss_sem_seg"]
    # pixel 1: p(1) = 3/4, pixel 2: p(1) = 1/4, pixel 3 ignored
    expected = (-math.log(3 / 4) - math.log(1 / 4)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    head.loss_weight = 0.5
    assert head.losses(logits, targets)["loss_sem_seg"].item() == pytest.approx(expected / 2, rel=1e-6)


def test_all_ignored_gives_zero_loss_not_nan():
    head = _head()
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = head.losses(logits, torch.full((1, 4, 4), 255))["loss_sem_seg"]
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_head_layers_and_outputs():
    head = _head()
    features = {"res2": torch.randn(2, 8, 12, 20), "res5": torch.randn(2, 16, 3, 5)}
    feature, logits = head.layers(features)
    assert tuple(feature.shape) == (2, 8, 12, 20) and tuple(logits.shape) == (2, 3, 12, 20)
    head.eval()
    out, losses = head(features)
    assert tuple(out.shape) == (2, 3, 48, 80) and losses == {}
    head.train()
    out, losses = head(features, torch.randint(0, 3, (2, 48, 80)))
    assert out is None and set(losses) == {"loss_sem_seg"}


def test_aspp_pools_globally_on_any_size():
    head = _head().eval()
    for h, w in [(3, 5), (7, 2), (1, 1)]:
        _, logits = head.layers({"res2": torch.randn(1, 8, 4 * h, 4 * w), "res5": torch.randn(1, 16, h, w)})
        assert tuple(logits.shape[-2:]) == (4 * h, 4 * w)


def test_unsupported_loss_type():
    with pytest.raises(ValueError, match="LOSS_TYPE"):
        build_model(_cfg("MODEL.SEM_SEG_HEAD.LOSS_TYPE", "hard_pixel_mining"))


def test_model_trains_and_predicts_at_original_size():
    model = build_model(_cfg())
    batch = [
        {"image": torch.randint(0, 255, (3, 37, 53)).float(), "sem_seg": torch.randint(0, 6, (37, 53))},
        {"image": torch.randint(0, 255, (3, 50, 41)).float(), "sem_seg": torch.randint(0, 6, (50, 41))},
    ]
    losses = model(batch)
    losses["loss_sem_seg"].backward()
    stem_grad = model.backbone.stem.conv1.weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        outputs = model([{"image": batch[0]["image"]}, {"image": batch[1]["image"], "height": 100, "width": 82}])
    assert tuple(outputs[0]["sem_seg"].shape) == (6, 37, 53)
    assert tuple(outputs[1]["sem_seg"].shape) == (6, 100, 82)


def test_optimizer_groups():
    cfg = _cfg("SOLVER.BACKBONE_MULTIPLIER", "0.1", "SOLVER.WEIGHT_DECAY_NORM", "0.0")
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in model.parameters())
    base = cfg.SOLVER.BASE_LR
    assert lr_of[id(model.backbone.stem.conv1.weight)] == pytest.approx(base * 0.1)
    assert lr_of[id(model.sem_seg_head.predictor.weight)] == pytest.approx(base)
    assert wd_of[id(model.backbone.stem.conv1.norm.weight)] == 0.0
    assert wd_of[id(model.sem_seg_head.predictor.weight)] == cfg.SOLVER.WEIGHT_DECAY
    assert isinstance(optimizer, torch.optim.SGD)
    adamw = build_optimizer(_cfg("SOLVER.OPTIMIZER", "ADAMW"), model)
    assert isinstance(adamw, torch.optim.AdamW)


def test_poly_schedule_with_warmup():
    cfg = _cfg("SOLVER.MAX_ITER", "100", "SOLVER.WARMUP_ITERS", "10", "SOLVER.WARMUP_FACTOR", "0.1")
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    lrs = lr_factors(optimizer, build_lr_scheduler(cfg, optimizer), 100)
    assert lrs[0] == pytest.approx(0.1)  # warm-up starts at WARMUP_FACTOR
    assert lrs[5] == pytest.approx((0.1 + 0.9 * 5 / 10) * (1 - 5 / 100) ** 0.9)
    assert lrs[50] == pytest.approx((1 - 50 / 100) ** 0.9)
    assert lrs[99] == pytest.approx((1 - 99 / 100) ** 0.9)


def test_deeplab_v2_head_sums_four_dilated_branches_and_trains_at_its_stride():
    from wss_d2.modeling import DeepLabV2Head

    torch.manual_seed(0)
    head = DeepLabV2Head({"res5": ShapeSpec(channels=8, stride=8)}, in_feature="res5", num_classes=3)
    assert [b.dilation[0] for b in head.branches] == [6, 12, 18, 24]
    assert all(b.bias is not None and b.bias.abs().sum() == 0 for b in head.branches)
    x = torch.randn(2, 8, 5, 6)
    logits = head.layers({"res5": x})
    assert torch.allclose(logits, sum(b(x) for b in head.branches))
    head.eval()
    assert head({"res5": x})[0].shape == (2, 3, 40, 48)  # upsampled to the padded input
    head.train()
    targets = torch.randint(0, 3, (2, 40, 48))
    targets[0, :8] = 255
    loss = head({"res5": x}, targets)[1]["loss_sem_seg"]
    small = targets[:, ::8, ::8]  # nearest to the logits' size: pixel 8i
    expected = torch.nn.functional.cross_entropy(logits, small, ignore_index=255)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_second_stage_deeplab_v2_config_builds():
    cfg = get_wss_cfg(os.path.join(CONFIGS, "voc", "deeplabv2_R101_pseudo.yaml"), ["MODEL.WEIGHTS", ""])
    model = build_model(cfg)
    assert model.backbone.output_shape()["res5"].stride == 8
    assert type(model.sem_seg_head).__name__ == "DeepLabV2Head"
    assert all(not isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())  # frozen BN
