"""AGMM's backbone, head, meta-architecture, label check and configs (docs/agmm.md)."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.data.sparse_label_check import check_sparse_label_encoding
from wss_d2.solver import build_lr_scheduler, build_optimizer

from .conftest import CONFIGS, lr_factors, sparse_label_batch

VOC_CONFIG = os.path.join(CONFIGS, "voc", "agmm_R101_point.yaml")
CITYSCAPES_CONFIG = os.path.join(CONFIGS, "cityscapes", "agmm_R50_50clicks.yaml")
SYNTHETIC_CONFIG = os.path.join(CONFIGS, "synthetic", "agmm_R18_points.yaml")
CPU = ["MODEL.WEIGHTS", "", "MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN"]


def _model(config, *opts):
    torch.manual_seed(0)
    return build_model(get_wss_cfg(config, [*CPU, *opts]))


def _dilations(stage):
    return [block.conv2.dilation[0] for block in stage]


def test_backbones_have_the_per_block_dilations_of_torchvision():
    voc = _model(VOC_CONFIG).backbone
    assert _dilations(voc.res4) == [1] + [2] * 22 and _dilations(voc.res5) == [2, 4, 4]
    assert voc.res4[0].conv2.stride == (1, 1) and voc.res5[0].conv2.stride == (1, 1)
    assert voc.res4[0].shortcut.stride == (1, 1)
    assert voc.res2[0].shortcut.in_channels == 128  # deep stem: 128 channels
    assert [type(m).__name__ for m in voc.stem.children()][:3] == ["Conv2d", "Conv2d", "Conv2d"]
    cityscapes = _model(CITYSCAPES_CONFIG).backbone
    assert _dilations(cityscapes.res4) == [1, 2, 2, 2, 2, 2] and _dilations(cityscapes.res5) == [4, 8, 16]
    with torch.no_grad():
        features = voc.eval()(torch.zeros(1, 3, 321, 321))
    assert features["res2"].shape[-2:] == (81, 81) and features["res5"].shape[-2:] == (41, 41)


def test_head_returns_the_decoder_feature_and_logits_at_the_input_size():
    model = _model(VOC_CONFIG).eval()
    head = model.sem_seg_head
    assert isinstance(head.aspp.dropout, torch.nn.Dropout2d) and head.aspp.dropout.p == 0.5
    assert head.align_corners and head.predictor.bias is not None
    with torch.no_grad():
        feature, logits = model.network(torch.zeros(1, 3, 321, 321))
        out = model([{"image": torch.randint(0, 255, (3, 50, 70), dtype=torch.uint8), "height": 100, "width": 140}])
    assert feature.shape == (1, 256, 81, 81) and logits.shape == (1, 21, 321, 321)
    probs = out[0]["sem_seg"]
    assert probs.shape == (21, 100, 140)
    assert torch.allclose(probs.sum(dim=0), torch.ones(100, 140), atol=1e-4)  # probabilities


def _batch(n=2, size=48, num_classes=6, seed=0):
    return sparse_label_batch(n, size, num_classes, seed)


def test_training_returns_the_five_losses_or_pce_only():
    model = _model(SYNTHETIC_CONFIG).train()
    losses = model(_batch())
    assert sorted(losses) == sorted(["loss_pce", "loss_g2p", "loss_l2g", "loss_proto", "loss_cls"])
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.stem.conv1.weight.grad.abs().sum() > 0
    baseline = _model(SYNTHETIC_CONFIG, "MODEL.AGMM.ENABLE", "False").train()
    assert list(baseline(_batch())) == ["loss_pce"]
    # a sanity value: at a uniform softmax, loss_pce = ln K
    with torch.no_grad():
        for p in model.sem_seg_head.predictor.parameters():
            p.zero_()
    assert model(_batch())["loss_pce"].item() == pytest.approx(np.log(6), rel=1e-5)


def test_each_loss_has_its_own_named_weight():
    from wss_d2.methods.agmm.config import loss_weight_key

    cfg = get_wss_cfg(SYNTHETIC_CONFIG, CPU)
    plain = _model(SYNTHETIC_CONFIG).train()(_batch())
    assert all(loss_weight_key(name) in cfg.MODEL.AGMM for name in plain)  # loss_pce -> PCE_LOSS_WEIGHT, ...
    weighted = _model(SYNTHETIC_CONFIG, "MODEL.AGMM.G2P_LOSS_WEIGHT", "2.0", "MODEL.AGMM.PROTO_LOSS_WEIGHT", "0.0",
                      "MODEL.AGMM.CLS_LOSS_WEIGHT", "0.5").train()(_batch())
    factors = {"loss_pce": 1.0, "loss_g2p": 2.0, "loss_l2g": 1.0, "loss_proto": 0.0, "loss_cls": 0.5}
    for name, factor in factors.items():
        assert torch.equal(weighted[name], plain[name] * factor), name


def test_the_old_positional_loss_weights_fail_naming_the_new_keys(tmp_path):
    from wss_d2.config import ConfigKeyError

    old = tmp_path / "old.yaml"
    old.write_text(f'_BASE_: "{SYNTHETIC_CONFIG}"\nMODEL:\n  AGMM:\n    LOSS_WEIGHTS: [1.0, 1.0, 1.0, 1.0, 2.0]\n')
    new_keys = ("PCE", "G2P", "L2G", "PROTO", "CLS")
    on_command_line = ["MODEL.AGMM.LOSS_WEIGHTS", "[1, 1, 1, 1, 2]"]
    for config, opts, source in ((str(old), [], str(old)), (SYNTHETIC_CONFIG, on_command_line, "the command line")):
        with pytest.raises(ConfigKeyError, match="MODEL.AGMM.LOSS_WEIGHTS was renamed") as e:
            get_wss_cfg(config, opts)
        assert str(e.value).startswith(source)
        assert all(f"MODEL.AGMM.{key}_LOSS_WEIGHT (loss_{key.lower()})" in str(e.value) for key in new_keys)


def test_dense_labels_train_with_full_supervision_and_bad_values_fail():
    model = _model(SYNTHETIC_CONFIG, "MODEL.AGMM.ENABLE", "False").train()
    batch = _batch()
    for x in batch:
        sparse = x.pop("sparse_sem_seg")
        x["sem_seg"] = torch.where(sparse == 6, torch.zeros_like(sparse), sparse)  # every pixel labelled
    dense_loss = model(batch)["loss_pce"]
    assert torch.isfinite(dense_loss) and dense_loss > 0
    batch = _batch()
    batch[0]["sparse_sem_seg"][0, 0] = 9
    with pytest.raises(ValueError, match="label values must be 0..5"):
        model(batch)
    batch = _batch()
    batch[1]["image_labels"] = torch.ones(5)
    with pytest.raises(ValueError, match="image_labels of img1.jpg has 5 entries, expected 6"):
        model(batch)


def test_a_few_steps_on_one_batch_lower_the_loss():
    cfg = get_wss_cfg(SYNTHETIC_CONFIG, [*CPU, "SOLVER.BASE_LR", "0.02"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = build_optimizer(cfg, model)
    batch = _batch(4, 40)
    first = None
    for _ in range(25):
        losses = model(batch)
        total = sum(losses.values())
        first = first if first is not None else total.item()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert total.item() < 0.7 * first


def test_voc_solver_groups_and_schedule():
    cfg = get_wss_cfg(VOC_CONFIG, CPU)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    backbone = set(model.backbone.parameters())
    for group in optimizer.param_groups:
        in_backbone = {p in backbone for p in group["params"]}
        assert len(in_backbone) == 1
        assert group["lr"] == pytest.approx(0.001 if in_backbone.pop() else 0.01)
        assert group["weight_decay"] == pytest.approx(1e-4)  # BN and biases too
        assert group["momentum"] == 0.9
    scheduler = build_lr_scheduler(cfg, optimizer)
    factors = lr_factors(optimizer, scheduler, 3)
    assert factors[0] == 1.0  # no warm-up
    assert factors[2] == pytest.approx((1 - 2 / 13200) ** 0.9, rel=1e-6)


def _save_label(path, array):
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


def test_label_check_fails_on_the_wrong_unlabelled_value(tmp_path):
    agmm_style = np.full((20, 20), 21, np.uint8)
    agmm_style[3:5, 3:5] = 15
    tel_style = np.where(agmm_style == 21, 255, agmm_style)
    zero_style = np.where(agmm_style == 21, 0, agmm_style)
    good = [_save_label(tmp_path / f"a{i}.png", agmm_style) for i in range(3)]
    shares = check_sparse_label_encoding(good, 21, 21, 255)
    assert shares["labelled"] == pytest.approx(0.01) and shares["unlabelled"] == pytest.approx(0.99)
    tel = [_save_label(tmp_path / "t.png", tel_style)]
    with pytest.raises(ValueError, match=r"t.png.*unlabelled value 21.*255 \(99.0% .*UNLABELED_RAW 255"):
        check_sparse_label_encoding(tel, 21, 21, 255, name="dataset voc_points")
    zero = [_save_label(tmp_path / "z.png", zero_style)]
    with pytest.raises(ValueError, match="value 0 is class 0"):
        check_sparse_label_encoding(zero, 21, 21, 255)
    dense = np.random.RandomState(0).randint(0, 21, (20, 20))
    dense[0, 0] = 21
    with pytest.raises(ValueError, match="not sparse labels"):
        check_sparse_label_encoding([_save_label(tmp_path / "d.png", dense)], 21, 21, 255)


def test_training_refuses_a_set_whose_files_use_another_unlabelled_value(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from wss_d2.engine import Trainer

    image = tmp_path / "i.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    tel_style = np.full((20, 20), 255, np.uint8)
    tel_style[3:5, 3:5] = 2
    label = _save_label(tmp_path / "l.png", tel_style)
    name = "agmm_test_tel_style_points"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [{"file_name": str(image), "sparse_sem_seg_file_name": label}])
        MetadataCatalog.get(name).set(stuff_classes=[str(i) for i in range(6)], weak_label="points",
                                      sparse_unlabeled_value=6, sparse_void_value=255)
    cfg = get_wss_cfg(SYNTHETIC_CONFIG, [*CPU, "DATASETS.TRAIN", f"('{name}',)"])
    with pytest.raises(ValueError, match=f"dataset {name}.*UNLABELED_RAW 255"):
        Trainer.build_train_loader(cfg)


def _recording(model):
    """Record the (H, W) and batch size of every image batch the network sees."""
    calls = []
    original = model.network

    def network(images):
        calls.append((images.shape[0], tuple(images.shape[-2:])))
        return original(images)

    model.network = network
    return calls


def test_voc_final_protocol_runs_14_passes_and_whole_image_mode_does_not_resize():
    from wss_d2.inference import maybe_wrap_with_tta

    opts = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.RESNETS.RES5_BLOCK_DILATIONS",
            "[2, 4]", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "6"]
    cfg = get_wss_cfg(VOC_CONFIG, [*CPU, *opts, "TEST.TTA.ENABLED", "True"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    calls = _recording(model)
    image = {"image": torch.randint(0, 255, (3, 40, 60), dtype=torch.uint8), "height": 40, "width": 60}
    probs = maybe_wrap_with_tta(cfg, model).eval()([image])[0]["sem_seg"]
    assert sum(n for n, _ in calls) == 14  # 7 scales x (image + flip)
    assert sorted({size for _, size in calls}) == sorted({(int(40 * s), int(60 * s)) for s in cfg.TEST.TTA.SCALES})
    assert probs.shape == (6, 40, 60) and torch.allclose(probs.sum(0), torch.ones(40, 60), atol=1e-4)
    cfg.defrost()
    cfg.TEST.TTA.ENABLED = False
    calls.clear()
    maybe_wrap_with_tta(cfg, model).eval()([image])
    assert calls == [(1, (40, 60))]


def test_void_padding_never_enters_a_loss_and_unlabelled_pixels_enter_the_gmm_terms():
    model = _model(SYNTHETIC_CONFIG).train()
    torch.manual_seed(0)
    feature = torch.rand(2, 8, 12, 12)
    logits = torch.randn(2, 6, 48, 48)
    labels = torch.full((2, 48, 48), 6)
    labels[:, 5:8, 5:8], labels[:, 30:33, 20:23] = 1, 3
    labels[:, :, 40:] = 255  # padding, as the mapper writes it
    tags = torch.zeros(2, 6)
    tags[:, [1, 3]] = 1
    losses = model.losses(feature, logits, labels, tags)
    changed = logits.clone()
    changed[:, :, :, 40:] = torch.randn(2, 6, 48, 8) * 10
    for name, value in model.losses(feature, changed, labels, tags).items():
        assert value.item() == pytest.approx(losses[name].item(), rel=1e-6), name
    # the same logits moved on unlabelled pixels change the GMM → prediction and absent-class terms
    changed = logits.clone()
    changed[:, :, 15:25, 30:38] = torch.randn(2, 6, 10, 8) * 10
    moved = model.losses(feature, changed, labels, tags)
    assert moved["loss_pce"].item() == pytest.approx(losses["loss_pce"].item(), rel=1e-6)
    assert moved["loss_g2p"].item() != pytest.approx(losses["loss_g2p"].item(), rel=1e-3)
    assert moved["loss_cls"].item() != pytest.approx(losses["loss_cls"].item(), rel=1e-3)


def _agmm_style_names(model):
    """The backbone's weights under AGMM/UniMatch's torchvision-style names, written out by hand."""
    stem = {"stem.conv1.": "conv1.0.", "stem.conv1.norm.": "conv1.1.", "stem.conv2.": "conv1.3.",
            "stem.conv2.norm.": "conv1.4.", "stem.conv3.": "conv1.6.", "stem.conv3.norm.": "bn1."}
    out = {}
    for key, value in model.backbone.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        head, leaf = key.rsplit(".", 1)
        head += "."
        if head in stem:
            name = stem[head]
        else:
            stage, block, layer = head.split(".")[:3]
            norm = head.endswith(".norm.")
            layer_name = {"conv1": "bn1" if norm else "conv1", "conv2": "bn2" if norm else "conv2",
                          "conv3": "bn3" if norm else "conv3", "shortcut": "downsample.1" if norm else "downsample.0"}[layer]
            name = f"layer{int(stage[3]) - 1}.{block}.{layer_name}."
        out[name + leaf] = value.clone() + 1  # different from the model's own values
    out["fc.weight"], out["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    out["bn1.num_batches_tracked"] = torch.tensor(5)
    return out


def test_agmm_weight_conversion_covers_every_backbone_parameter(tmp_path):
    from .conftest import load_script

    convert = load_script("tools/convert_agmm_resnet.py")
    model = _model(CITYSCAPES_CONFIG)
    source = _agmm_style_names(model)
    torch.save(source, tmp_path / "resnet50.pth")
    convert.main([str(tmp_path / "resnet50.pth"), str(tmp_path / "converted.pth"), "--config-file", CITYSCAPES_CONFIG])
    converted = torch.load(tmp_path / "converted.pth")["model"]
    assert len(converted) == len(source) - 3  # fc.weight, fc.bias, num_batches_tracked dropped
    assert torch.equal(converted["backbone.res5.2.conv3.norm.running_var"], source["layer4.2.bn3.running_var"])
    assert torch.equal(converted["backbone.stem.conv2.weight"], source["conv1.3.weight"])
    with pytest.raises(ValueError, match="not deep-stem ResNet keys"):
        convert.convert_agmm_resnet({**source, "decoder.conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="missing.*res5.2.conv3"):
        convert.check_coverage({k: v for k, v in converted.items() if "res5.2.conv3" not in k}, model)
