"""ADE20K weak-shot registrations, on fixtures in detectron2's and SimFormer's layouts."""
import logging
import os
import re

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES

from wss_d2.data.datasets import ade20k

from .test_datasets_coco import map_dict

TRAIN = ("ADE_train_00000001", "ADE_train_00005149")  # the second is all-void, skipped by SimFormer
VAL = ("ADE_val_00000001",)
# split: (image folder, label folder) per layout
LAYOUTS = {
    "detectron2": {"train": ("images/training", "annotations_detectron2/training"),
                   "val": ("images/validation", "annotations_detectron2/validation")},
    "simformer": {"train": ("images_detectron2/train", "annotations_detectron2/train"),
                  "val": ("images_detectron2/test", "annotations_detectron2/test")},
}


def _label(seed, h=24, w=32):
    """After detectron2's shift: 0..149, 255 = other."""
    label = np.zeros((h, w), np.uint8)  # wall
    label[2:10, 3:12] = 149  # flag, the largest id
    label[12:20, 15:30] = 255
    label[20:, :5] = 1 + seed  # building (novel in split1), ...
    return label


def _ade_layout(datasets_root, layout):
    root = os.path.join(datasets_root, "ADEChallengeData2016")
    rng = np.random.RandomState(0)
    for split, stems in (("train", TRAIN), ("val", VAL)):
        image_dir, label_dir = (os.path.join(root, d) for d in LAYOUTS[layout][split])
        os.makedirs(image_dir)
        os.makedirs(label_dir)
        for i, stem in enumerate(stems):
            Image.fromarray(rng.randint(0, 255, (24, 32, 3), np.uint8)).save(os.path.join(image_dir, stem + ".jpg"))
            Image.fromarray(_label(i), mode="L").save(os.path.join(label_dir, stem + ".png"))
    return root


def test_names_registered_once():
    registered = DatasetCatalog.list()
    assert len(ade20k.ADE20K_DATASET_NAMES) == 10
    assert {"ade20k_wss_sem_seg_train", "ade20k_wss_sem_seg_val"} <= set(ade20k.ADE20K_DATASET_NAMES)
    for name in ade20k.ADE20K_DATASET_NAMES:
        assert registered.count(name) == 1
    with pytest.raises(AssertionError, match="already registered"):
        ade20k.register_ade20k_weak_shot()
    with pytest.raises(AssertionError, match="already registered"):
        ade20k.register_ade20k_sem_seg()
    # detectron2's full-label sets stay as detectron2 made them
    builtin = MetadataCatalog.get("ade20k_sem_seg_train")
    assert "ade20k_sem_seg_train" in registered and not hasattr(builtin, "weak_label")


def test_classes():
    assert ade20k.ADE20K_CLASSES == tuple(ADE20K_SEM_SEG_CATEGORIES)
    assert ade20k._ADE20K_FALLBACK == tuple(ADE20K_SEM_SEG_CATEGORIES)  # Appendix D matches detectron2
    assert len(ade20k.ADE20K_CLASSES) == 150 and ade20k.ADE20K_CLASSES[8] == "window "
    assert ade20k.ADE20K_CLASSES[6] == "road, route" and ade20k.ADE20K_CLASSES[149] == "flag"
    assert len({tuple(c) for c in ade20k.ADE20K_COLORS}) == 150


@pytest.mark.parametrize("k", range(1, 5))
def test_weak_shot_metadata(k):
    for split in ("train", "val"):
        meta = MetadataCatalog.get(f"ade20k_{split}_ws_split{k}")
        base, novel = meta.base_classes, meta.novel_classes
        assert len(novel) == 38 and len(base) == 112
        assert sorted(base + novel) == list(range(150)) and not set(base) & set(novel)
        assert novel == meta.c_novel_dids == list(ade20k.ADE20K_NOVEL_SPLITS[k]) and base == meta.c_base_dids
        assert meta.weak_label == ("weak_shot" if split == "train" else "full")
        assert meta.background_class is None and len(meta.stuff_classes) == 150
    assert ade20k.ADE20K_NOVEL_SPLITS[1][:3] == (1, 3, 6) and ade20k.ADE20K_NOVEL_SPLITS[4][-1] == 143


def test_skip_list():
    assert len(ade20k.ADE20K_SKIPPED_IMAGES) == 16
    assert {"ADE_train_00005149", "ADE_train_00019873", "ADE_train_00013298"} <= ade20k.ADE20K_SKIPPED_IMAGES


def test_full_label_sets_metadata():
    for split in ("train", "val"):
        meta = MetadataCatalog.get(f"ade20k_wss_sem_seg_{split}")
        assert meta.weak_label == "full" and meta.evaluator_type == "sem_seg" and meta.ignore_label == 255
        assert meta.stuff_classes == list(ade20k.ADE20K_CLASSES) and meta.background_class is None
        assert not hasattr(meta, "novel_classes")


@pytest.mark.parametrize("layout", ["detectron2", "simformer"])
def test_one_root_for_full_and_weak_shot_sets(tmp_path, monkeypatch, layout):
    """With $WSS_DATASETS and $DETECTRON2_DATASETS at different folders, wss_d2's full-label
    and weak-shot ADE20K sets both read $WSS_DATASETS."""
    wss_root, d2_root = str(tmp_path / "wss"), str(tmp_path / "d2")
    monkeypatch.setenv("WSS_DATASETS", wss_root)
    monkeypatch.setenv("DETECTRON2_DATASETS", d2_root)
    root = _ade_layout(wss_root, layout)
    _ade_layout(d2_root, layout)
    for split, stems in (("train", TRAIN), ("val", VAL)):
        image_dir, label_dir = LAYOUTS[layout][split]
        full = DatasetCatalog.get(f"ade20k_wss_sem_seg_{split}")
        assert full == [
            {
                "file_name": os.path.join(root, image_dir, stem + ".jpg"),
                "sem_seg_file_name": os.path.join(root, label_dir, stem + ".png"),
                "image_id": stem,
            }
            for stem in stems  # the full-label set keeps SimFormer's all-void images
        ]
        weak_shot = DatasetCatalog.get(f"ade20k_{split}_ws_split1")
        assert {d["file_name"] for d in weak_shot} <= {d["file_name"] for d in full}
        meta = MetadataCatalog.get(f"ade20k_wss_sem_seg_{split}")
        assert meta.image_root == os.path.join(root, image_dir) and meta.sem_seg_root == os.path.join(root, label_dir)


@pytest.mark.parametrize("layout", ["detectron2", "simformer"])
def test_dicts(tmp_path, monkeypatch, caplog, layout):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    monkeypatch.setattr(logging.getLogger("wss_d2"), "propagate", True)
    root = _ade_layout(str(tmp_path), layout)
    with caplog.at_level(logging.INFO, logger="wss_d2.data.datasets.registration"):
        train = DatasetCatalog.get("ade20k_train_ws_split3")
    image_dir, label_dir = LAYOUTS[layout]["train"]
    assert train == [
        {
            "file_name": os.path.join(root, image_dir, TRAIN[0] + ".jpg"),
            "sem_seg_file_name": os.path.join(root, label_dir, TRAIN[0] + ".png"),
            "image_id": TRAIN[0],
        }
    ]
    assert "ade20k_train_ws_split3: skipping 1 images" in caplog.text and TRAIN[1] in caplog.text
    val = DatasetCatalog.get("ade20k_val_ws_split3")
    assert [d["image_id"] for d in val] == list(VAL)
    meta = MetadataCatalog.get("ade20k_val_ws_split3")
    assert meta.image_root == os.path.join(root, LAYOUTS[layout]["val"][0])
    assert meta.sem_seg_root == os.path.join(root, LAYOUTS[layout]["val"][1])
    np.testing.assert_array_equal(map_dict("ade20k_val_ws_split3", val[0])["sem_seg"].numpy(), _label(0))


def test_mapper_weak_shot(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    _ade_layout(str(tmp_path), "detectron2")
    d = DatasetCatalog.get("ade20k_train_ws_split1")[0]
    mapped = map_dict("ade20k_train_ws_split1", d)
    expected = _label(0)
    expected[(expected == 1) | (expected == 149)] = 255  # building and flag are novel in split1, wall base
    np.testing.assert_array_equal(mapped["sem_seg"].numpy(), expected)
    assert np.flatnonzero(mapped["image_labels"].numpy()).tolist() == [0, 1, 149]


def test_missing_dirs_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="WSS_DATASETS") as e:
        DatasetCatalog.get("ade20k_val_ws_split1")
    assert str(tmp_path / "ADEChallengeData2016") in str(e.value)
    os.makedirs(tmp_path / "ADEChallengeData2016" / "images" / "training")
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("ade20k_val_ws_split1")
    assert str(tmp_path / "ADEChallengeData2016" / "images" / "validation") in str(e.value)
    assert str(tmp_path / "ADEChallengeData2016" / "images_detectron2" / "test") in str(e.value)
    labels = tmp_path / "ADEChallengeData2016" / "annotations_detectron2" / "training"
    with pytest.raises(FileNotFoundError, match=re.escape(str(labels))):
        DatasetCatalog.get("ade20k_train_ws_split1")


def test_unpaired_label_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    root = _ade_layout(str(tmp_path), "detectron2")
    os.remove(os.path.join(root, "images", "validation", VAL[0] + ".jpg"))
    orphan = os.path.join(root, "images", "validation", "ADE_val_00000002.jpg")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(orphan)
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("ade20k_val_ws_split2")
    assert os.path.join(root, "annotations_detectron2", "validation", VAL[0] + ".png") in str(e.value)
    assert orphan in str(e.value)
