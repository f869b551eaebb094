"""COCO-Stuff-10K registrations and weak-shot splits, on a fixture in MaskFormer's layout."""
import logging
import os
import re

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from wss_d2.data.datasets import coco_stuff_10k as cs
from wss_d2.data.datasets import registration

from .test_datasets_coco import map_dict

TRAIN = ("COCO_train2014_000000000077", "COCO_train2014_000000016680")  # the second is on SimFormer's skip list
TEST = ("COCO_train2014_000000000139", "COCO_train2014_000000058075")  # skip-listed too: kept for evaluation
SPLIT4 = (  # SimFormer's split 4 (the first 43 of its permutation), sorted
    3, 12, 13, 14, 17, 24, 25, 26, 27, 33, 37, 40, 46, 50, 57, 58, 61, 69, 76, 83, 87, 89, 92, 100,
    102, 106, 109, 110, 112, 113, 114, 121, 128, 133, 134, 137, 144, 149, 151, 161, 162, 164, 170,
)
ADDED = {  # SimFormer's prefix splits: split k = split k-1 + these
    5: {0, 31, 47, 66, 82, 91, 111, 120},
    6: {9, 28, 39, 45, 131, 136, 157, 163},
    7: {1, 4, 19, 42, 49, 68, 130, 150, 155},
    8: {7, 48, 71, 75, 85, 96, 116, 132},
    9: {54, 78, 93, 95, 105, 115, 139, 156, 159},
}


def _label(seed, h=24, w=32):
    label = np.full((h, w), 84, np.uint8)  # building-other
    label[2:10, 3:12] = 0  # person
    label[12:20, 15:30] = 170  # wood, the largest id
    label[0, :] = 255  # unlabeled
    label[20:, :5] = 3 + seed  # motorcycle (novel in split1), ...
    return label


def _stuff_layout(datasets_root):
    root = os.path.join(datasets_root, "coco", "coco_stuff_10k")
    rng = np.random.RandomState(0)
    for split, stems in (("train", TRAIN), ("test", TEST)):
        os.makedirs(os.path.join(root, "images_detectron2", split))
        os.makedirs(os.path.join(root, "annotations_detectron2", split))
        for i, stem in enumerate(stems):
            Image.fromarray(rng.randint(0, 255, (24, 32, 3), np.uint8)).save(
                os.path.join(root, "images_detectron2", split, stem + ".jpg")
            )
            Image.fromarray(_label(i), mode="L").save(os.path.join(root, "annotations_detectron2", split, stem + ".png"))
    return root


@pytest.fixture
def stuff_root(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    return _stuff_layout(str(tmp_path))


def test_names_registered_once():
    registered = DatasetCatalog.list()
    assert len(cs.COCO_STUFF_DATASET_NAMES) == 2 + 18
    for name in cs.COCO_STUFF_DATASET_NAMES:
        assert registered.count(name) == 1
    for name in ("coco_2017_train_stuff_10k_sem_seg", "coco_2017_test_stuff_10k_sem_seg"):
        assert name not in cs.COCO_STUFF_DATASET_NAMES  # MaskFormer's
    with pytest.raises(AssertionError, match="already registered"):
        cs.register_coco_stuff_10k()


def test_classes():
    assert len(cs.COCO_STUFF_CLASSES) == 171 and len(set(cs.COCO_STUFF_CLASSES)) == 171
    assert list(cs.COCO_STUFF_CLASSES[:80]) == [c["name"] for c in COCO_CATEGORIES if c["isthing"] == 1]
    assert (cs.COCO_STUFF_CLASSES[80], cs.COCO_STUFF_CLASSES[170]) == ("banner", "wood")
    assert cs.COCO_STUFF_CLASSES[5] == "bus" and cs.COCO_STUFF_ID_TO_CONTIGUOUS[6] == 5
    assert cs.COCO_STUFF_ID_TO_CONTIGUOUS[92] == 80 and cs.COCO_STUFF_ID_TO_CONTIGUOUS[182] == 170
    assert len({tuple(c) for c in cs.COCO_STUFF_COLORS}) == 171


def test_novel_splits():
    splits = cs.COCO_STUFF_NOVEL_SPLITS
    assert [len(splits[k]) for k in range(1, 10)] == [43, 43, 43, 43, 51, 59, 68, 76, 85]
    assert splits[1][:5] == (3, 6, 10, 11, 18) and splits[3][-1] == 164
    assert splits[4] == SPLIT4
    for k, added in ADDED.items():
        assert set(splits[k]) - set(splits[k - 1]) == added and set(splits[k - 1]) <= set(splits[k])


@pytest.mark.parametrize("k", range(1, 10))
def test_weak_shot_metadata(k):
    for split in ("train", "test"):
        meta = MetadataCatalog.get(f"coco_stuff_10k_{split}_ws_split{k}")
        base, novel = meta.base_classes, meta.novel_classes
        assert sorted(base + novel) == list(range(171)) and not set(base) & set(novel)
        assert novel == list(cs.COCO_STUFF_NOVEL_SPLITS[k]) == meta.c_novel_dids and base == meta.c_base_dids
        assert meta.weak_label == ("weak_shot" if split == "train" else "full")
        assert meta.background_class is None and meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
        assert len(meta.stuff_classes) == 171


def test_full_dicts(stuff_root):
    for split, stems in (("train", TRAIN), ("test", TEST)):
        name = f"coco_stuff_10k_{split}_sem_seg"
        dicts = DatasetCatalog.get(name)
        assert dicts == [
            {
                "file_name": os.path.join(stuff_root, "images_detectron2", split, stem + ".jpg"),
                "sem_seg_file_name": os.path.join(stuff_root, "annotations_detectron2", split, stem + ".png"),
                "image_id": stem,
            }
            for stem in stems
        ]
        meta = MetadataCatalog.get(name)
        assert meta.weak_label == "full" and meta.background_class is None
        assert meta.sem_seg_root == os.path.join(stuff_root, "annotations_detectron2", split)


def test_weak_shot_train_skips_simformer_images(stuff_root, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("wss_d2"), "propagate", True)
    with caplog.at_level(logging.INFO, logger=registration.__name__):
        dicts = DatasetCatalog.get("coco_stuff_10k_train_ws_split1")
    assert [d["image_id"] for d in dicts] == [TRAIN[0]]
    assert dicts[0]["sem_seg_file_name"].endswith(os.path.join("annotations_detectron2", "train", TRAIN[0] + ".png"))
    assert f"coco_stuff_10k_train_ws_split1: skipping 1 images that SimFormer skips: ['{TRAIN[1]}']" in caplog.text
    test_dicts = DatasetCatalog.get("coco_stuff_10k_test_ws_split1")
    assert [d["image_id"] for d in test_dicts] == list(TEST)


def test_mapper(stuff_root):
    d = DatasetCatalog.get("coco_stuff_10k_test_sem_seg")[0]
    np.testing.assert_array_equal(map_dict("coco_stuff_10k_test_sem_seg", d)["sem_seg"].numpy(), _label(0))
    # weak-shot training dict: the mapper hides novel pixels and lists novel classes as tags
    d = DatasetCatalog.get("coco_stuff_10k_train_ws_split1")[0]
    mapped = map_dict("coco_stuff_10k_train_ws_split1", d)
    expected = _label(0)
    expected[expected == 3] = 255  # motorcycle is novel in split1
    np.testing.assert_array_equal(mapped["sem_seg"].numpy(), expected)
    assert 3 in np.flatnonzero(mapped["image_labels"].numpy()).tolist()


def test_unpaired_files_are_named(stuff_root):
    os.remove(os.path.join(stuff_root, "annotations_detectron2", "train", TRAIN[0] + ".png"))
    orphan = os.path.join(stuff_root, "annotations_detectron2", "train", "COCO_train2014_000000000999.png")
    Image.fromarray(_label(0), mode="L").save(orphan)
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("coco_stuff_10k_train_sem_seg")
    assert os.path.join(stuff_root, "images_detectron2", "train", TRAIN[0] + ".jpg") in str(e.value)
    assert orphan in str(e.value)


def test_missing_folders_are_named(stuff_root, tmp_path, monkeypatch):
    os.rename(
        os.path.join(stuff_root, "annotations_detectron2", "test"),
        os.path.join(stuff_root, "annotations_detectron2", "val"),
    )
    with pytest.raises(FileNotFoundError, match=re.escape(os.path.join(stuff_root, "annotations_detectron2", "test"))):
        DatasetCatalog.get("coco_stuff_10k_test_ws_split2")
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="WSS_DATASETS") as e:
        DatasetCatalog.get("coco_stuff_10k_train_sem_seg")
    assert str(tmp_path / "nowhere" / "coco" / "coco_stuff_10k") in str(e.value)


def test_weak_shot_metadata_rejects_bad_ids():
    with pytest.raises(ValueError, match="distinct"):
        registration.weak_shot_metadata([1, 1], 171)
    with pytest.raises(ValueError, match="0..170"):
        registration.weak_shot_metadata([171], 171)
