"""Evaluators (detectron2's DatasetEvaluator interface) shared by every wss_d2 method."""
from .sem_seg_evaluation import WSSSemSegEvaluator, confusion_matrix, segmentation_metrics
from .cam_evaluation import CAMEvaluator
from .build import EVALUATOR_BY_DATASET_TYPE, EVALUATOR_REGISTRY, build_evaluator
