"""
EVALUATOR_REGISTRY: the evaluators `TEST.EVALUATORS` may name, and `build_evaluator`, which
builds them (or the one a dataset's `evaluator_type` implies when TEST.EVALUATORS is empty).
"""
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluators
from detectron2.utils.registry import Registry

from ..inference import DenseCRFPool
from .cam_evaluation import CAMEvaluator
from .sem_seg_evaluation import WSSSemSegEvaluator

__all__ = ["EVALUATOR_REGISTRY", "EVALUATOR_BY_DATASET_TYPE", "build_evaluator"]

EVALUATOR_REGISTRY = Registry("WSS_EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = """
Evaluators by the name TEST.EVALUATORS uses. Each entry is called as
`fn(cfg, dataset_name, output_dir)` and returns a detectron2 DatasetEvaluator; the function's
name is the evaluator's name.
"""

# a dataset's metadata `evaluator_type` -> the evaluator used when TEST.EVALUATORS is empty;
# Cityscapes labels are trainIds, so plain mIoU applies to them too
EVALUATOR_BY_DATASET_TYPE = {"sem_seg": "sem_seg", "cityscapes_sem_seg": "sem_seg"}


@EVALUATOR_REGISTRY.register()
def sem_seg(cfg, dataset_name, output_dir):
    """mIoU of the predictions; TEST.CRF.ENABLED runs dense CRF on a worker pool alongside the model."""
    crf = (lambda: DenseCRFPool(cfg)) if cfg.TEST.CRF.ENABLED else None
    return WSSSemSegEvaluator(dataset_name, distributed=True, output_dir=output_dir, crf=crf,
                              save_predictions=cfg.TEST.SAVE_PREDICTIONS)


@EVALUATOR_REGISTRY.register()
def cam(cfg, dataset_name, output_dir):
    """Localisation mIoU of CAMs (TEST.CAM_EVAL.*)."""
    return CAMEvaluator(cfg, dataset_name, output_dir=output_dir)


def evaluator_names(cfg, dataset_name):
    """TEST.EVALUATORS, or the evaluator the dataset's evaluator_type implies when it is empty."""
    names = list(cfg.TEST.EVALUATORS)
    if names:
        return names
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
    if evaluator_type not in EVALUATOR_BY_DATASET_TYPE:
        raise ValueError(f"No wss_d2 evaluator for dataset {dataset_name!r} with evaluator_type={evaluator_type!r}")
    return [EVALUATOR_BY_DATASET_TYPE[evaluator_type]]


def build_evaluator(cfg, dataset_name, output_dir):
    """The evaluators of `evaluator_names`, one DatasetEvaluator (DatasetEvaluators if several)."""
    evaluators = []
    for name in evaluator_names(cfg, dataset_name):
        if name not in EVALUATOR_REGISTRY:
            known = " and/or ".join(repr(known) for known, _ in EVALUATOR_REGISTRY)
            raise ValueError(f"TEST.EVALUATORS: unknown evaluator {name!r}; use {known}")
        evaluators.append(EVALUATOR_REGISTRY.get(name)(cfg, dataset_name, output_dir))
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
