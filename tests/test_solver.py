"""Optimizer parameter groups chosen by SOLVER.PARAM_GROUPS (wss_d2.solver.param_groups)."""
import pytest
import torch

from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.solver import PARAM_GROUPS_REGISTRY, build_optimizer, default_param_groups

from .conftest import MAIN_CONFIG

CPU = ["MODEL.WEIGHTS", "", "MODEL.RESNETS.NORM", "BN", "MODEL.SEM_SEG_HEAD.NORM", "BN"]


@PARAM_GROUPS_REGISTRY.register()
def head_only_test_param_groups(cfg, model):
    """A method's own rule: train the head alone, at 3x the base LR, without weight decay."""
    return [{"params": list(model.sem_seg_head.parameters()), "lr": cfg.SOLVER.BASE_LR * 3, "weight_decay": 0.0}]


def test_default_builder_is_the_configured_one():
    cfg = get_wss_cfg(MAIN_CONFIG, CPU + ["SOLVER.BACKBONE_MULTIPLIER", "0.1"])
    assert cfg.SOLVER.PARAM_GROUPS == "default_param_groups"
    model = build_model(cfg)
    expected = default_param_groups(cfg, model)
    groups = build_optimizer(cfg, model).param_groups
    assert [[id(p) for p in g["params"]] for g in groups] == [[id(p) for p in g["params"]] for g in expected]
    assert [g["lr"] for g in groups] == [g["lr"] for g in expected]
    assert {g["lr"] for g in groups} == {cfg.SOLVER.BASE_LR, cfg.SOLVER.BASE_LR * 0.1}


def test_a_registered_builder_is_selected_by_the_config():
    cfg = get_wss_cfg(MAIN_CONFIG, CPU + ["SOLVER.PARAM_GROUPS", "head_only_test_param_groups"])
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.SGD) and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert [id(p) for p in group["params"]] == [id(p) for p in model.sem_seg_head.parameters()]
    assert group["lr"] == cfg.SOLVER.BASE_LR * 3 and group["weight_decay"] == 0.0
    assert group["momentum"] == cfg.SOLVER.MOMENTUM  # unset values: the SOLVER defaults


def test_an_unknown_builder_names_the_registry():
    cfg = get_wss_cfg(MAIN_CONFIG, CPU + ["SOLVER.PARAM_GROUPS", "no_such_param_groups"])
    with pytest.raises(KeyError, match="no_such_param_groups.*PARAM_GROUPS"):
        build_optimizer(cfg, build_model(cfg))
