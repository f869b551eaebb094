"""DensePose-COCO part registrations, on a fixture in SPML's layout and list format."""
import os
import re

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from wss_d2.data import read_label_map
from wss_d2.data.datasets import densepose

from .test_datasets_coco import map_dict

SPLITS = {  # list file: (image folder, stems)
    "train2014.txt": ("train2014", ("COCO_train2014_000000000036", "COCO_train2014_000000000049")),
    "valminusminival2014.txt": ("val2014", ("COCO_val2014_000000000133",)),
    "minival2014.txt": ("val2014", ("COCO_val2014_000000000139",)),
}
POINTS_LIST = "train2014_points.txt"
H, W = 24, 32
NAMES = {
    "densepose_coco_2014_train_parts_sem_seg": "train2014.txt",
    "densepose_coco_2014_valminusminival_parts_sem_seg": "valminusminival2014.txt",
    "densepose_coco_2014_minival_parts_sem_seg": "minival2014.txt",
    "densepose_coco_2014_train_parts_points": POINTS_LIST,
}


def _parts(seed):
    label = np.zeros((H, W), np.uint8)  # background
    label[2:10, 3:12] = 1  # torso
    label[12:20, 15:30] = 14  # head, the largest id
    label[10, :] = 255  # person without DensePose annotation
    label[20:, :5] = 2 + seed  # right hand, left hand, ...
    return label


def _points(seed):
    """SPML convention: 15 = unlabelled, parts on points, 255 void."""
    points = np.full((H, W), 15, np.uint8)
    points[10, :] = 255
    for r, c in ((5, 5), (15, 20), (22, 2), (0, 0)):
        points[r, c] = _parts(seed)[r, c]
    return points


def _densepose_layout(datasets_root, leading_slash=False):
    root = os.path.join(datasets_root, "densepose")
    for sub in ("images/train2014", "images/val2014", "segcls/densepose/gray", "segcls/densepose_points/gray"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.RandomState(0)
    slash = "/" if leading_slash else ""
    seed = 0
    for list_name, (folder, stems) in SPLITS.items():
        lines = []
        for stem in stems:
            image = Image.fromarray(rng.randint(0, 255, (H, W, 3), np.uint8))
            image.save(os.path.join(root, "images", folder, stem + ".jpg"))
            Image.fromarray(_parts(seed), mode="L").save(os.path.join(root, "segcls/densepose/gray", stem + ".png"))
            points = Image.fromarray(_points(seed), mode="L")
            points.save(os.path.join(root, "segcls/densepose_points/gray", stem + ".png"))
            label = f"{slash}segcls/densepose/gray/{stem}.png"
            lines.append(f"{slash}images/{folder}/{stem}.jpg {label} {label}")  # SPML: 3 columns
            seed += 1
        with open(os.path.join(root, list_name), "w") as f:
            f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, POINTS_LIST), "w") as f:
        for stem in SPLITS["train2014.txt"][1]:
            f.write(f"{slash}images/train2014/{stem}.jpg {slash}segcls/densepose_points/gray/{stem}.png\n")
    return root


@pytest.fixture
def dp_root(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    return _densepose_layout(str(tmp_path))


def test_names_registered_once():
    registered = DatasetCatalog.list()
    assert set(densepose.DENSEPOSE_DATASET_NAMES) == set(NAMES)
    for name in NAMES:
        assert registered.count(name) == 1
    with pytest.raises(AssertionError, match="already registered"):
        densepose.register_densepose()


def test_metadata():
    for name in NAMES:
        meta = MetadataCatalog.get(name)
        assert len(meta.stuff_classes) == 15 and meta.stuff_classes[0] == "background"
        assert meta.stuff_classes[2] == "right hand" and meta.stuff_classes[14] == "head"
        assert len({tuple(c) for c in meta.stuff_colors}) == 15
        assert meta.flip_label_map == [0, 1, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 14]
        assert meta.background_class == 0 and meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
        if name.endswith("points"):
            assert meta.weak_label == "points"
            assert (meta.sparse_unlabeled_value, meta.sparse_void_value) == (15, 255)
        else:
            assert meta.weak_label == "full"


@pytest.mark.parametrize("leading_slash", [False, True])
def test_dicts(tmp_path, monkeypatch, leading_slash):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    root = _densepose_layout(str(tmp_path), leading_slash)
    for name, list_name in NAMES.items():
        folder, stems = SPLITS["train2014.txt" if list_name == POINTS_LIST else list_name]
        if list_name == POINTS_LIST:
            key, label_dir = "sparse_sem_seg_file_name", "densepose_points"
        else:
            key, label_dir = "sem_seg_file_name", "densepose"
        expected = [
            {
                "file_name": os.path.join(root, "images", folder, stem + ".jpg"),
                "image_id": stem,
                key: os.path.join(root, "segcls", label_dir, "gray", stem + ".png"),
            }
            for stem in stems
        ]
        if list_name == POINTS_LIST:  # two-column list: the default PMI-owt-ucm place
            for record, stem in zip(expected, stems):
                record["overseg_file_name"] = os.path.join(root, "seginst", "pmi_0.1_256", stem + ".png")
        assert DatasetCatalog.get(name) == expected
        meta = MetadataCatalog.get(name)
        assert meta.image_root == os.path.join(root, "images")
        root_key = "sparse_sem_seg_root" if key.startswith("sparse") else "sem_seg_root"
        assert getattr(meta, root_key) == os.path.join(root, "segcls", label_dir, "gray")


def test_mapper_reads_raw_parts(dp_root):
    for name in ("densepose_coco_2014_train_parts_sem_seg", "densepose_coco_2014_minival_parts_sem_seg"):
        for d in DatasetCatalog.get(name):
            seed = [s for _, stems in SPLITS.values() for s in stems].index(d["image_id"])
            np.testing.assert_array_equal(map_dict(name, d)["sem_seg"].numpy(), _parts(seed))


def test_mapper_reads_points(dp_root):
    name = "densepose_coco_2014_train_parts_points"
    for seed, d in enumerate(DatasetCatalog.get(name)):
        raw = read_label_map(d["sparse_sem_seg_file_name"])
        np.testing.assert_array_equal(raw, _points(seed))
        assert {0, 1, 14, 15, 255} <= set(np.unique(raw).tolist())
        # SPML's raw convention is the mapper's internal one: 0..14, 15 unlabelled, 255 void
        np.testing.assert_array_equal(map_dict(name, d)["sparse_sem_seg"].numpy(), raw)


def test_malformed_list_line_is_named(dp_root):
    with open(os.path.join(dp_root, "minival2014.txt"), "a") as f:
        f.write("images/val2014/COCO_val2014_000000000785.jpg\n")
    with pytest.raises(ValueError, match=r"minival2014.txt, line 2"):
        DatasetCatalog.get("densepose_coco_2014_minival_parts_sem_seg")


def test_missing_files_are_named(dp_root):
    stem = SPLITS["train2014.txt"][1][1]
    os.remove(os.path.join(dp_root, "segcls/densepose_points/gray", stem + ".png"))
    missing = os.path.join(dp_root, "segcls/densepose_points/gray", stem + ".png")
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        DatasetCatalog.get("densepose_coco_2014_train_parts_points")
    assert len(DatasetCatalog.get("densepose_coco_2014_train_parts_sem_seg")) == 2
    os.remove(os.path.join(dp_root, "images", "train2014", stem + ".jpg"))
    with pytest.raises(FileNotFoundError, match=re.escape(os.path.join("images", "train2014", stem + ".jpg"))):
        DatasetCatalog.get("densepose_coco_2014_train_parts_sem_seg")
    os.remove(os.path.join(dp_root, "valminusminival2014.txt"))
    with pytest.raises(FileNotFoundError, match="valminusminival2014.txt"):
        DatasetCatalog.get("densepose_coco_2014_valminusminival_parts_sem_seg")


def test_missing_root_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="WSS_DATASETS") as e:
        DatasetCatalog.get("densepose_coco_2014_minival_parts_sem_seg")
    assert str(tmp_path / "densepose") in str(e.value)
