"""EVALUATOR_REGISTRY and build_evaluator (wss_d2.evaluation.build), through Trainer.build_evaluator."""
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluators

from wss_d2 import get_wss_cfg
from wss_d2.engine import Trainer
from wss_d2.evaluation import (
    EVALUATOR_BY_DATASET_TYPE, EVALUATOR_REGISTRY, CAMEvaluator, WSSSemSegEvaluator, build_evaluator,
)


def _register(name, evaluator_type):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(stuff_classes=["background", "thing"], ignore_label=255,
                                  evaluator_type=evaluator_type, background_class=0)
    return name


def test_registry_names_and_dataset_types():
    assert [name for name, _ in EVALUATOR_REGISTRY] == ["sem_seg", "cam"]
    assert set(EVALUATOR_BY_DATASET_TYPE.values()) <= {name for name, _ in EVALUATOR_REGISTRY}


@pytest.mark.parametrize("evaluator_type", ["sem_seg", "cityscapes_sem_seg"])
def test_dataset_evaluator_type_picks_sem_seg(tmp_path, evaluator_type):
    name = _register(f"_build_{evaluator_type}", evaluator_type)
    cfg = get_wss_cfg(opts=["OUTPUT_DIR", str(tmp_path)])
    evaluator = Trainer.build_evaluator(cfg, name)
    assert isinstance(evaluator, WSSSemSegEvaluator) and evaluator.crf is None
    assert evaluator.output_dir == str(tmp_path / "inference" / name)


def test_test_evaluators_list_and_crf(tmp_path):
    name = _register("_build_both", "sem_seg")
    cfg = get_wss_cfg(opts=["TEST.EVALUATORS", ["cam", "sem_seg"], "TEST.CRF.ENABLED", True,
                            "TEST.CRF.NUM_WORKERS", 1])
    evaluators = build_evaluator(cfg, name, str(tmp_path))
    assert isinstance(evaluators, DatasetEvaluators)
    cam, sem_seg = evaluators._evaluators
    assert isinstance(cam, CAMEvaluator) and isinstance(sem_seg, WSSSemSegEvaluator)
    assert sem_seg.crf is not None and sem_seg.crf.in_process  # TEST.CRF.ENABLED: a CRF pool
    sem_seg._close_crf()


def test_unknown_dataset_type_and_evaluator_name_raise(tmp_path):
    name = _register("_build_other", "coco")
    cfg = get_wss_cfg()
    with pytest.raises(ValueError, match=r"No wss_d2 evaluator for dataset '_build_other' with evaluator_type='coco'"):
        Trainer.build_evaluator(cfg, name, str(tmp_path))
    cfg.TEST.EVALUATORS = ["sem_seg", "boxes"]
    with pytest.raises(ValueError, match=r"TEST.EVALUATORS: unknown evaluator 'boxes'; use 'sem_seg' and/or 'cam'"):
        Trainer.build_evaluator(cfg, name, str(tmp_path))
