import glob
import os

import pytest
import torch

from detectron2.config import get_cfg

from wss_d2 import add_wss_config, get_wss_cfg
from wss_d2.config import ConfigKeyError

from .conftest import CONFIGS, MAIN_CONFIG


def test_new_keys_have_defaults():
    cfg = get_cfg()
    add_wss_config(cfg)
    assert cfg.INPUT.DATASET_MAPPER_NAME == "WeakLabelDatasetMapper"
    assert list(cfg.INPUT.RANDOM_SCALE) == [0.5, 2.0]
    assert cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE == "cross_entropy"
    assert cfg.MODEL.SEM_SEG_HEAD.ASPP_POOL_NORM is True
    assert cfg.MODEL.SEM_SEG_HEAD.ALIGN_CORNERS is False
    assert cfg.SOLVER.OPTIMIZER == "SGD"
    assert cfg.SOLVER.BACKBONE_MULTIPLIER == 1.0
    # detectron2's DeepLab keys come along
    assert cfg.MODEL.RESNETS.RES4_DILATION == 1
    assert cfg.SOLVER.POLY_LR_POWER == 0.9


def _config_functions():
    from wss_d2 import config
    from wss_d2.data import config as data_config
    from wss_d2.inference import crf
    from wss_d2.methods.agmm.config import add_agmm_config
    from wss_d2.methods.irn.config import add_irn_config
    from wss_d2.methods.mcc.config import add_mcc_config
    from wss_d2.methods.simformer.config import add_simformer_config
    from wss_d2.methods.sipe.config import add_sipe_config
    from wss_d2.methods.spml.config import add_spml_config
    from wss_d2.modeling.backbone.vit import add_vit_config
    from wss_d2.modeling.energy_loss import add_energy_loss_config
    from wss_d2.modeling.maskformer.config import add_maskformer_config
    from wss_d2.refinement.par import add_par_config

    return {f.__name__: f for f in (
        config.add_wss_config, add_sipe_config, add_irn_config, add_agmm_config, add_spml_config, add_mcc_config,
        add_vit_config, add_par_config, add_energy_loss_config, crf.add_crf_parameters,
        data_config.add_multi_view_input_config, add_maskformer_config, add_simformer_config,
    )}


@pytest.mark.parametrize(
    "function", ["add_wss_config", "add_sipe_config", "add_irn_config", "add_agmm_config", "add_spml_config",
                 "add_mcc_config", "add_vit_config", "add_par_config", "add_energy_loss_config", "add_crf_parameters",
                 "add_multi_view_input_config", "add_maskformer_config", "add_simformer_config"]
)
def test_every_new_key_has_a_comment(function):
    """Each key wss_d2 adds (besides the DeepLab project's) is preceded by a comment."""
    import inspect
    import re

    lines = inspect.getsource(_config_functions()[function]).splitlines()
    assignment = re.compile(r"^\s*[\w.]+\.[A-Z][A-Z0-9_]* = ")
    checked = 0
    for i, line in enumerate(lines):
        if assignment.match(line) and "CN()" not in line:
            assert lines[i - 1].strip().startswith("#"), f"no comment above: {line.strip()}"
            checked += 1
    assert checked > 0


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))
)
def test_every_config_loads(path):
    """Every shipped config merges and names registered components."""
    from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY

    cfg = get_wss_cfg(path)
    assert cfg.MODEL.META_ARCHITECTURE in META_ARCH_REGISTRY
    assert cfg.MODEL.BACKBONE.NAME in BACKBONE_REGISTRY
    if cfg.MODEL.META_ARCHITECTURE in ("SemanticSegmentor", "AGMM"):
        assert cfg.MODEL.SEM_SEG_HEAD.NAME in SEM_SEG_HEADS_REGISTRY
    assert all(isinstance(name, str) for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST)


def test_main_config_inherits_base():
    cfg = get_wss_cfg(MAIN_CONFIG)
    assert cfg.MODEL.RESNETS.DEPTH == 18  # set by the config
    assert cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor"  # inherited from _BASE_
    assert cfg.DATASETS.TRAIN == ("wss_synthetic_train",)


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'_BASE_: "{MAIN_CONFIG}"\nSOLVER:\n  BASE_LRR: 0.1\n')
    with pytest.raises(ConfigKeyError) as e:
        get_wss_cfg(str(bad))
    assert "SOLVER.BASE_LRR" in str(e.value) and str(bad) in str(e.value)


def test_unknown_key_on_command_line():
    with pytest.raises(ConfigKeyError) as e:
        get_wss_cfg(MAIN_CONFIG, ["MODEL.SEM_SEG_HEAD.NUM_CLASSE", "3"])
    assert "MODEL.SEM_SEG_HEAD.NUM_CLASSE" in str(e.value) and "command line" in str(e.value)


def test_wrong_type_names_key():
    with pytest.raises(ConfigKeyError) as e:
        get_wss_cfg(MAIN_CONFIG, ["SOLVER.MAX_ITER", "many"])
    assert "SOLVER.MAX_ITER" in str(e.value)


def test_device_falls_back_to_cpu():
    cfg = get_wss_cfg(MAIN_CONFIG)
    assert cfg.MODEL.DEVICE == ("cuda" if torch.cuda.is_available() else "cpu")
