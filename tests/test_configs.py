"""
Every config in configs/ (the Base-*.yaml bases included) names datasets that wss_d2 registers,
of the kind the config expects, with evaluators that build: a wrong set fails here, not at the
first evaluation of a long training.
"""
import glob
import os

import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from wss_d2 import get_wss_cfg
from wss_d2.data import build_dataset_mapper
from wss_d2.data.dataset_mapper import resolve_weak_label_metadata
from wss_d2.data.datasets import register_pseudo_labels_from_config
from wss_d2.engine import Trainer

from .conftest import CONFIGS

CONFIG_FILES = sorted(glob.glob(os.path.join(CONFIGS, "**", "*.yaml"), recursive=True))

# weak_label kinds whose mapper output each meta-architecture trains on: SemanticSegmentor and
# IRNEdge read `sem_seg`; AGMM `sparse_sem_seg` or `sem_seg`; SIPE `image_labels`, which the
# mapper gives for tags and, from the labelled classes, for sparse labels
TRAINS_ON = {
    "SemanticSegmentor": {"full", "pseudo", "weak_shot"},
    "IRNEdge": {"full", "pseudo"},
    "AGMM": {"full", "pseudo", "weak_shot", "scribbles", "points", "clicks"},
    "SIPE": {"tags", "scribbles", "points", "clicks"},
    "MCC": {"tags"},
    # SPML stage A: sparse_sem_seg (scribbles, points, the CAM-derived labels of tags and boxes) or sem_seg;
    # stage C: the stage-B pseudo labels (sem_seg), or sparse labels (its CE ignores unlabelled pixels;
    # MODEL.SPML.TRAIN_EMBEDDING: the partial-CE baseline)
    "SPMLEmbedder": {"full", "pseudo", "cam_labels", "scribbles", "points", "clicks"},
    "SPMLClassifier": {"full", "pseudo", "cam_labels", "scribbles", "points", "clicks"},
    "WSSMaskFormer": {"full", "pseudo"},
    # base masks + novel tags; its retraining stage is a WSSMaskFormer on the pseudo labels
    "SimFormer": {"weak_shot"},
}
SEMANTIC_EVALUATOR_TYPES = ("sem_seg",)


def _config_id(path):
    return os.path.relpath(path, CONFIGS)


def _dataset_files_present(name):
    """False when the dataset's files are not on this machine (a real dataset not downloaded)."""
    try:
        DatasetCatalog.get(name)
    except FileNotFoundError:
        return False
    return True


def test_every_config_is_covered():
    names = {_config_id(p) for p in CONFIG_FILES}
    assert {"Base-AGMM.yaml", "Base-SIPE-R50.yaml", "voc/agmm_R101_point.yaml", "synthetic/irn_R18_sipe.yaml"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=_config_id)
def test_config_datasets_are_registered_semantic_sets(path):
    cfg = get_wss_cfg(path)
    register_pseudo_labels_from_config(cfg)  # as train_net.py does: DATASETS.PSEUDO_LABELS / CAMS
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    for role, names in (("TRAIN", cfg.DATASETS.TRAIN), ("TEST", cfg.DATASETS.TEST)):
        for name in names:
            where = f"{_config_id(path)}: DATASETS.{role} {name!r}"
            assert name in DatasetCatalog.list(), f"{where} is not registered"
            meta = MetadataCatalog.get(name)
            # wss_d2's registrations carry weak_label and read one root ($WSS_DATASETS, else
            # $DETECTRON2_DATASETS); detectron2's built-in sets (VOC detection, ADE20K,
            # Cityscapes) read $DETECTRON2_DATASETS only and have other evaluators
            assert meta.get("weak_label", None) is not None, (
                f"{where} is not a wss_d2 semantic registration (metadata: evaluator_type="
                f"{meta.get('evaluator_type', None)!r}); use the wss_d2 set of that dataset"
            )
            assert meta.get("evaluator_type", None) in SEMANTIC_EVALUATOR_TYPES, where
            assert len(meta.stuff_classes) == num_classes, (
                f"{where} has {len(meta.stuff_classes)} classes, MODEL.SEM_SEG_HEAD.NUM_CLASSES={num_classes}"
            )
            if role == "TEST":
                assert meta.weak_label == "full", f"{where} is a {meta.weak_label!r} set: evaluation needs full labels"
    if cfg.DATASETS.TRAIN:
        kinds = {MetadataCatalog.get(name).weak_label for name in cfg.DATASETS.TRAIN}
        arch = cfg.MODEL.META_ARCHITECTURE
        assert arch in TRAINS_ON, f"add {arch} to TRAINS_ON"
        unusable = kinds - TRAINS_ON[arch]
        assert not unusable, f"{_config_id(path)}: {arch} cannot train on weak_label {unusable}"
        resolve_weak_label_metadata(cfg.DATASETS.TRAIN)  # one mapper reads every training set
        build_dataset_mapper(cfg, is_train=True)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=_config_id)
def test_config_evaluators_build(path, tmp_path):
    cfg = get_wss_cfg(path, ["TEST.CRF.ENABLED", "False", "OUTPUT_DIR", str(tmp_path)])  # no CRF worker pool
    register_pseudo_labels_from_config(cfg)
    for name in cfg.DATASETS.TEST:
        build_dataset_mapper(cfg, is_train=False, dataset_names=[name])
        if _dataset_files_present(name):
            Trainer.build_evaluator(cfg, name)
        else:
            # the evaluators read the dataset dicts; what precedes that (the evaluator kind, the
            # class list, a CAM evaluator's background class) is still checked
            with pytest.raises(FileNotFoundError):
                Trainer.build_evaluator(cfg, name)
        if os.path.basename(os.path.dirname(path)) == "synthetic":
            assert _dataset_files_present(name), f"{name}: the synthetic data is generated, never absent"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=_config_id)
def test_config_datasets_read_one_root(path, datasets_root, tmp_path, monkeypatch):
    """With $DETECTRON2_DATASETS elsewhere, every set a config names reads $WSS_DATASETS (where
    the files are present; pseudo-label sets also read their own folder)."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "detectron2_datasets"))
    cfg = get_wss_cfg(path)
    register_pseudo_labels_from_config(cfg)
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        if _dataset_files_present(name):
            outside = [d["file_name"] for d in DatasetCatalog.get(name) if not d["file_name"].startswith(datasets_root)]
            assert not outside, f"{_config_id(path)}: {name} reads {outside[0]}, outside $WSS_DATASETS {datasets_root}"
