"""
The pre-training checks of wss_d2.data.label_check: evaluation label maps (value range, size
against the image) and training sets whose every image would be skipped for an empty weak
label. Both run in Trainer.build_train_loader, before the first iteration.
"""
import logging
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from wss_d2 import get_wss_cfg
from wss_d2.data import build_dataset_mapper
from wss_d2.data.datasets.registration import register_sem_seg_dataset
from wss_d2.data.label_check import (
    check_evaluation_labels,
    check_evaluation_labels_from_config,
    check_training_sets_not_all_empty,
)
from wss_d2.engine import Trainer

from .conftest import CONFIGS, MAIN_CONFIG

K = 6  # the synthetic classes
POINTS_CONFIG = os.path.join(CONFIGS, "synthetic", "agmm_R18_points.yaml")
FAST = ["DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2"]


def _register(name, dicts, ignore_label=255, **metadata):
    """A throwaway dataset of `dicts` (registered once per name: names differ per test)."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_sem_seg_dataset(name, lambda: [dict(d) for d in dicts], [f"c{i}" for i in range(K)], None,
                             ignore_label, **metadata)
    return name


def _val_copy(synthetic_dir, tmp_path, n=10):
    """Copies of the first `n` synthetic val images and labels (the session's files stay intact)."""
    dicts = []
    for d in DatasetCatalog.get("wss_synthetic_val")[:n]:
        label = str(tmp_path / os.path.basename(d["sem_seg_file_name"]))
        shutil.copy(d["sem_seg_file_name"], label)
        dicts.append({"file_name": d["file_name"], "sem_seg_file_name": label, "image_id": d["image_id"]})
    return dicts


def _write_label(path, array):
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)


def _bad_value(dicts, index, value):
    label = np.asarray(Image.open(dicts[index]["sem_seg_file_name"])).copy()
    label[0, :3] = value
    _write_label(dicts[index]["sem_seg_file_name"], label)
    return dicts[index]["sem_seg_file_name"]


# ------------------------------------------------------------------------- evaluation labels
def test_evaluation_label_value_names_file_value_and_dataset(synthetic_dir, tmp_path):
    dicts = _val_copy(synthetic_dir, tmp_path)
    bad = _bad_value(dicts, 7, 77)
    name = _register("_test_eval_bad_value", dicts)
    with pytest.raises(ValueError) as e:
        check_evaluation_labels(name, max_files=100)
    message = str(e.value)
    assert name in message and bad in message and "[77]" in message and "0..5" in message
    assert "1 of the 10 label maps" in message


def test_evaluation_label_size_mismatch_names_both_files(synthetic_dir, tmp_path):
    dicts = _val_copy(synthetic_dir, tmp_path)
    _write_label(dicts[3]["sem_seg_file_name"], np.zeros((5, 7)))
    name = _register("_test_eval_bad_size", dicts)
    with pytest.raises(ValueError) as e:
        check_evaluation_labels(name, max_files=100)
    assert name in str(e.value) and dicts[3]["sem_seg_file_name"] in str(e.value)
    assert dicts[3]["file_name"] in str(e.value) and "7x5" in str(e.value)


def test_evaluation_label_missing_or_absent(synthetic_dir, tmp_path):
    dicts = _val_copy(synthetic_dir, tmp_path, n=3)
    os.remove(dicts[1]["sem_seg_file_name"])
    name = _register("_test_eval_missing", dicts)
    with pytest.raises(ValueError, match="Label map not found: " + dicts[1]["sem_seg_file_name"]):
        check_evaluation_labels(name, max_files=100)
    unlabelled = _register("_test_eval_unlabelled", [{"file_name": d["file_name"]} for d in dicts])
    with pytest.raises(ValueError, match="_test_eval_unlabelled.*3 of its 3 images have no label map"):
        check_evaluation_labels(unlabelled, max_files=100)


def test_evaluation_ignore_values_are_allowed(synthetic_dir, tmp_path):
    dicts = _val_copy(synthetic_dir, tmp_path, n=4)
    _bad_value(dicts, 0, 254)
    _bad_value(dicts, 1, 255)
    name = _register("_test_eval_ignore_254", dicts, ignore_label=254)
    assert check_evaluation_labels(name, max_files=100) == 4  # 255 and the dataset's ignore_label
    with pytest.raises(ValueError, match=r"\[254\]"):
        check_evaluation_labels(_register("_test_eval_ignore_255", dicts), max_files=100)


def test_evaluation_labels_beyond_the_bound_are_a_logged_sample(synthetic_dir, tmp_path, caplog):
    dicts = _val_copy(synthetic_dir, tmp_path, n=10)
    _bad_value(dicts, 0, 99)  # the sample always holds the first file
    name = _register("_test_eval_sample", dicts)
    with pytest.raises(ValueError, match=r"\[99\]"):
        check_evaluation_labels(name, max_files=4)
    _write_label(dicts[0]["sem_seg_file_name"], np.zeros(Image.open(dicts[0]["file_name"]).size[::-1]))
    logging.getLogger("wss_d2").propagate = True
    with caplog.at_level(logging.INFO, logger="wss_d2.data.label_check"):
        assert check_evaluation_labels(name, max_files=4) == 4
    assert f"{name}: 4 of its 10 label maps checked" in caplog.text and "TEST.CHECK_LABELS_MAX_FILES" in caplog.text


def test_check_labels_max_files_zero_is_off(synthetic_dir, tmp_path):
    dicts = _val_copy(synthetic_dir, tmp_path, n=2)
    _bad_value(dicts, 0, 77)
    name = _register("_test_eval_off", dicts)
    cfg = get_wss_cfg(MAIN_CONFIG, ["DATASETS.TEST", f"('{name}',)", "TEST.CHECK_LABELS_MAX_FILES", "0"])
    assert check_evaluation_labels_from_config(cfg) == {}


def test_bad_evaluation_label_fails_before_training(synthetic_dir, tmp_path):
    """The hook: Trainer.build_train_loader checks DATASETS.TEST, in seconds, before iteration 0."""
    dicts = _val_copy(synthetic_dir, tmp_path)
    bad = _bad_value(dicts, 9, 77)
    name = _register("_test_eval_trainer", dicts)
    cfg = get_wss_cfg(MAIN_CONFIG, [*FAST, "DATASETS.TEST", f"('wss_synthetic_val', '{name}')"])
    with pytest.raises(ValueError, match=f"(?s)Evaluation set '{name}'.*{bad}.*\\[77\\]"):
        Trainer.build_train_loader(cfg)


def test_synthetic_evaluation_labels_check_in_well_under_a_second(synthetic_dir):
    cfg = get_wss_cfg(MAIN_CONFIG)
    start = time.perf_counter()
    assert check_evaluation_labels_from_config(cfg) == {"wss_synthetic_val": 100}
    assert time.perf_counter() - start < 5.0  # 100 files: ~0.1 s; generous for a loaded machine


# ------------------------------------------------------------------- training sets all empty
def _train_cfg(config, dataset, *opts):
    return get_wss_cfg(config, [*FAST, "DATASETS.TRAIN", f"('{dataset}',)", *opts])


def test_every_image_without_tags_fails_before_training(synthetic_dir):
    images = [d["file_name"] for d in DatasetCatalog.get("wss_synthetic_train")[:20]]
    name = _register("_test_tags_all_empty", [{"file_name": f, "image_id": str(i), "image_labels": []}
                                               for i, f in enumerate(images)], weak_label="tags")
    cfg = _train_cfg(MAIN_CONFIG, name)
    with pytest.raises(ValueError) as e:
        Trainer.build_train_loader(cfg)
    message = str(e.value)
    assert f"Dataset '{name}': all 20 of its training images have an empty weak label" in message
    assert "20 with no image tags" in message and any(f in message for f in images)
    assert "INPUT.WEAK.ON_EMPTY" in message


def test_every_sparse_file_empty_fails_naming_dataset_count_and_reason(synthetic_dir, tmp_path):
    dicts = []
    for d in DatasetCatalog.get("wss_synthetic_train_points")[:12]:
        empty = str(tmp_path / os.path.basename(d["sparse_sem_seg_file_name"]))
        height, width = np.asarray(Image.open(d["sparse_sem_seg_file_name"])).shape
        _write_label(empty, np.full((height, width), K))  # every pixel unlabelled
        dicts.append({**d, "sparse_sem_seg_file_name": empty})
    name = _register("_test_points_all_empty", dicts, weak_label="points", sparse_unlabeled_value=K,
                     sparse_void_value=255)
    cfg = _train_cfg(POINTS_CONFIG, name, "INPUT.SPARSE.CHECK_FILES", "0")
    with pytest.raises(ValueError) as e:
        check_training_sets_not_all_empty(cfg, build_dataset_mapper(cfg, is_train=True))
    message = str(e.value)
    assert f"Dataset '{name}': all 12 of its training images" in message
    assert "12 with no labelled pixel in its label file" in message and str(tmp_path) in message


def test_one_usable_image_is_enough_and_a_healthy_set_reads_few_files(synthetic_dir):
    images = [d["file_name"] for d in DatasetCatalog.get("wss_synthetic_train")[:50]]
    dicts = [{"file_name": f, "image_id": str(i), "image_labels": []} for i, f in enumerate(images)]
    dicts[37]["image_labels"] = [2]
    name = _register("_test_tags_one_usable", dicts, weak_label="tags")
    cfg = _train_cfg(MAIN_CONFIG, name)
    assert check_training_sets_not_all_empty(cfg, build_dataset_mapper(cfg, is_train=True))[name] <= 50
    cfg = _train_cfg(POINTS_CONFIG, "wss_synthetic_train_points")
    examined = check_training_sets_not_all_empty(cfg, build_dataset_mapper(cfg, is_train=True))
    assert examined == {"wss_synthetic_train_points": 8}  # the first chunk, of 1000 files
