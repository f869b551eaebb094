"""The sem_seg score contract (wss_d2.inference.scores): each model declares what its `sem_seg`
holds, and one conversion turns it into probabilities."""
import os

import pytest
import torch
from torch import nn

from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.inference.scores import model_sem_seg_kind, output_sem_seg_kind, to_probabilities

from .conftest import CONFIGS, MAIN_CONFIG

CPU = ["MODEL.WEIGHTS", ""]


def _model(config, *opts):
    torch.manual_seed(0)
    return build_model(get_wss_cfg(os.path.join(CONFIGS, "synthetic", config), [*CPU, *opts])).eval()


def test_to_probabilities_by_kind():
    logits = torch.tensor([[[0.0, 2.0]], [[1.0, 0.0]]])
    assert torch.allclose(to_probabilities(logits, "logits"), logits.softmax(0))
    probs = logits.softmax(0)
    assert torch.equal(to_probabilities(probs, "probabilities"), probs)  # never softmaxed again
    cams = torch.tensor([[[0.15, 0.0]], [[0.45, 0.0]], [[0.0, 0.0]]])  # constant background, CAMs
    out = to_probabilities(cams, "scores")
    assert out[:, 0, 0].tolist() == pytest.approx([0.25, 0.75, 0.0])
    assert out[:, 0, 1].tolist() == pytest.approx([1 / 3] * 3)  # no evidence at all: uniform
    with pytest.raises(ValueError, match=r"kind 'softmax' is not one of \['logits', 'probabilities', 'scores'\]"):
        to_probabilities(logits, "softmax")
    with pytest.raises(ValueError, match="'scores' must be non-negative"):
        to_probabilities(-cams, "scores")


def test_output_kind_defaults_to_detectron2_logits_and_rejects_unknown_kinds():
    assert output_sem_seg_kind({"sem_seg": torch.zeros(1)}) == "logits"
    assert output_sem_seg_kind({"sem_seg": torch.zeros(1)}, default="scores") == "scores"
    assert output_sem_seg_kind({"sem_seg_kind": "probabilities"}, default="scores") == "probabilities"
    with pytest.raises(ValueError, match=r"a.jpg: sem_seg kind 'probs'"):
        output_sem_seg_kind({"sem_seg_kind": "probs"}, where="a.jpg")


def test_agmm_declares_probabilities_or_logits_in_model_and_outputs():
    image = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)
    for test_softmax, kind in ((True, "probabilities"), (False, "logits")):
        model = _model("agmm_R18_points.yaml", "MODEL.AGMM.TEST_SOFTMAX", str(test_softmax))
        assert model_sem_seg_kind(model) == kind
        with torch.no_grad():
            output = model([{"image": image, "height": 40, "width": 48}])[0]
        assert output["sem_seg_kind"] == kind
        if kind == "probabilities":
            assert torch.allclose(output["sem_seg"].sum(0), torch.ones(40, 48), atol=1e-5)


def test_cam_methods_declare_scores_and_deeplab_declares_logits():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    sipe = _model("sipe_R18.yaml", "TEST.SIPE.SCALES", "[1.0]")
    assert model_sem_seg_kind(sipe) == "scores"
    with torch.no_grad():
        output = sipe([{"image": image, "image_labels": torch.tensor([1, 0, 1, 0, 0, 0])}])[0]
    assert output["sem_seg_kind"] == "scores" and float(output["sem_seg"].min()) >= 0

    irn = _model("irn_R18_sipe.yaml")
    assert model_sem_seg_kind(irn) == "scores"
    with torch.no_grad():
        output = irn([{"image": image, "cams": torch.rand(2, 32, 32), "cam_labels": torch.tensor([0, 2])}])[0]
    assert output["sem_seg_kind"] == "scores"

    deeplab = build_model(get_wss_cfg(MAIN_CONFIG, CPU)).eval()  # detectron2's SemanticSegmentor
    assert model_sem_seg_kind(deeplab) == "logits"

    class Wrapper(nn.Module):  # DistributedDataParallel keeps the model as .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert model_sem_seg_kind(Wrapper(sipe)) == "scores"
    bad = nn.Module()
    bad.sem_seg_kind = "softmax"
    with pytest.raises(ValueError, match=r"Module.sem_seg_kind: sem_seg kind 'softmax'"):
        model_sem_seg_kind(bad)
