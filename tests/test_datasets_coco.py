"""COCO 2014 VOC-style registrations, on a fixture in MCC's / detectron2's real layout."""
import os
import re

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from wss_d2.data import WeakLabelDatasetMapper, read_label_map
from wss_d2.data.dataset_mapper import resolve_weak_label_metadata
from wss_d2.data.datasets import coco

TRAIN = ("COCO_train2014_000000000009", "COCO_train2014_000000000025")
UNLISTED = "COCO_train2014_000000000030"  # on disk, not in the list: must not be loaded
VAL = ("COCO_val2014_000000000042",)
TAGS = {TRAIN[0]: [1, 80], TRAIN[1]: [17]}


def _label(seed, h=24, w=32):
    label = np.zeros((h, w), np.uint8)
    label[2:10, 3:12] = 1  # person
    label[12:20, 15:30] = 80  # toothbrush, the largest id
    label[0, :] = 255
    label[20:, :5] = 17 + seed
    return label


def _coco_layout(root, images="detectron2"):
    """<root>/coco with images in train2014/ (detectron2) or JPEGImages/train2014/ (MCC)."""
    coco_root = os.path.join(root, "coco")
    rng = np.random.RandomState(0)
    for year_split, stems in (("train2014", TRAIN + (UNLISTED,)), ("val2014", VAL)):
        image_dir = os.path.join(coco_root, year_split) if images == "detectron2" else os.path.join(
            coco_root, "JPEGImages", year_split
        )
        label_dir = os.path.join(coco_root, "SegmentationClass", year_split)
        os.makedirs(image_dir)
        os.makedirs(label_dir)
        for i, stem in enumerate(stems):
            Image.fromarray(rng.randint(0, 255, (24, 32, 3), np.uint8)).save(os.path.join(image_dir, stem + ".jpg"))
            Image.fromarray(_label(i), mode="L").save(os.path.join(label_dir, stem + ".png"))
    os.makedirs(os.path.join(coco_root, "ImageSets"))
    for split, stems in (("train", TRAIN), ("val", VAL)):
        with open(os.path.join(coco_root, "ImageSets", split + ".txt"), "w") as f:
            f.write("\n".join(stems) + "\n")
    table = {}
    for stem, labels in TAGS.items():
        vector = np.zeros(80, np.float32)
        vector[np.array(labels) - 1] = 1
        table[stem] = vector
    np.save(os.path.join(coco_root, "cls_labels_coco.npy"), table)
    os.makedirs(os.path.join(coco_root, "pseudo_labels"))
    for i, stem in enumerate(TRAIN):
        Image.fromarray(_label(i + 5), mode="L").save(os.path.join(coco_root, "pseudo_labels", stem + ".png"))
    return coco_root


@pytest.fixture
def coco_root(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    return _coco_layout(str(tmp_path))


def test_names_registered_once():
    registered = DatasetCatalog.list()
    for name in coco.COCO_VOC_DATASET_NAMES:
        assert registered.count(name) == 1
    with pytest.raises(AssertionError, match="already registered"):
        coco.register_coco_voc()


def test_metadata():
    thing_classes = [c["name"] for c in COCO_CATEGORIES if c["isthing"] == 1]
    for name in coco.COCO_VOC_DATASET_NAMES:
        meta = MetadataCatalog.get(name)
        assert len(meta.stuff_classes) == 81
        assert meta.stuff_classes[0] == "background" and meta.stuff_classes[1:] == thing_classes
        assert meta.stuff_classes[12] == "stop sign" and meta.stuff_classes[80] == "toothbrush"
        assert len({tuple(c) for c in meta.stuff_colors}) == 81
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg" and meta.background_class == 0
    weak = {name: MetadataCatalog.get(name).weak_label for name in coco.COCO_VOC_DATASET_NAMES}
    assert weak == {
        "coco_2014_train_voc_sem_seg": "full",
        "coco_2014_val_voc_sem_seg": "full",
        "coco_2014_val_part_voc_sem_seg": "full",
        "coco_2014_train_voc_tags": "tags",
        "coco_2014_train_voc_pseudo": "pseudo",
    }


@pytest.mark.parametrize("images", ["detectron2", "mcc"])
def test_full_dicts(tmp_path, monkeypatch, images):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    coco_root = _coco_layout(str(tmp_path), images)
    image_dir = "train2014" if images == "detectron2" else os.path.join("JPEGImages", "train2014")
    dicts = DatasetCatalog.get("coco_2014_train_voc_sem_seg")
    assert dicts == [
        {
            "file_name": os.path.join(coco_root, image_dir, stem + ".jpg"),
            "image_id": stem,
            "sem_seg_file_name": os.path.join(coco_root, "SegmentationClass", "train2014", stem + ".png"),
        }
        for stem in TRAIN
    ]
    assert [d["image_id"] for d in DatasetCatalog.get("coco_2014_val_voc_sem_seg")] == list(VAL)
    # val_part: the first VAL_PART_SIZE names of the val list, in list order
    monkeypatch.setattr(coco, "VAL_PART_SIZE", 1)
    assert [d["image_id"] for d in DatasetCatalog.get("coco_2014_val_part_voc_sem_seg")] == list(VAL)[:1]
    meta = MetadataCatalog.get("coco_2014_train_voc_sem_seg")
    assert meta.image_root == os.path.join(coco_root, image_dir)
    assert meta.sem_seg_root == os.path.join(coco_root, "SegmentationClass", "train2014")


def map_dict(name, dataset_dict):
    """Map with the test-time mapper configured from the dataset's metadata."""
    meta = resolve_weak_label_metadata([name])
    if meta["weak_label"] != "weak_shot":
        meta["novel_classes"] = ()  # evaluation sets carry them for the evaluator, not the mapper
    mapper = WeakLabelDatasetMapper(
        is_train=False,
        augmentations=[],
        image_format="RGB",
        num_classes=len(MetadataCatalog.get(name).stuff_classes),
        ignore_label=255,
        **{k: v for k, v in meta.items() if v is not None or k == "background_class"},
    )
    return mapper(dataset_dict)


@pytest.mark.parametrize("name", ["coco_2014_train_voc_sem_seg", "coco_2014_train_voc_pseudo"])
def test_mapper_reads_raw_values(coco_root, name):
    offset = 5 if name.endswith("pseudo") else 0
    for i, d in enumerate(DatasetCatalog.get(name)):
        mapped = map_dict(name, d)
        np.testing.assert_array_equal(mapped["sem_seg"].numpy(), _label(i + offset))
        assert mapped["image"].shape == (3, 24, 32)


def test_mapper_reads_tags(coco_root):
    mapped = map_dict("coco_2014_train_voc_tags", DatasetCatalog.get("coco_2014_train_voc_tags")[0])
    assert "sem_seg" not in mapped
    assert np.flatnonzero(mapped["image_labels"].numpy()).tolist() == [0, 1, 80]  # background counts


def test_tag_dicts(coco_root):
    dicts = DatasetCatalog.get("coco_2014_train_voc_tags")
    assert [d["image_id"] for d in dicts] == list(TRAIN)
    assert [d["image_labels"] for d in dicts] == [TAGS[s] for s in TRAIN]
    assert all("sem_seg_file_name" not in d for d in dicts)
    assert MetadataCatalog.get("coco_2014_train_voc_tags").image_tags_file == os.path.join(
        coco_root, "cls_labels_coco.npy"
    )


def test_tags_do_not_need_label_maps(coco_root):
    os.remove(os.path.join(coco_root, "SegmentationClass", "train2014", TRAIN[0] + ".png"))
    assert len(DatasetCatalog.get("coco_2014_train_voc_tags")) == 2
    with pytest.raises(FileNotFoundError, match=TRAIN[0] + ".png"):
        DatasetCatalog.get("coco_2014_train_voc_sem_seg")


def test_tags_missing_entry_is_named(coco_root):
    table = np.load(os.path.join(coco_root, "cls_labels_coco.npy"), allow_pickle=True).item()
    del table[TRAIN[1]]
    np.save(os.path.join(coco_root, "cls_labels_coco.npy"), table)
    with pytest.raises(KeyError, match=TRAIN[1]) as e:
        DatasetCatalog.get("coco_2014_train_voc_tags")
    assert "cls_labels_coco.npy" in str(e.value)


def test_tags_wrong_length_is_named(coco_root):
    np.save(os.path.join(coco_root, "cls_labels_coco.npy"), {TRAIN[0]: np.zeros(20, np.float32)})
    with pytest.raises(ValueError, match="cls_labels_coco.npy.*expected 80"):
        DatasetCatalog.get("coco_2014_train_voc_tags")


def test_tags_keyed_by_integer_coco_id(coco_root):
    """Some repositories key COCO tags by the integer image id (the file stem's 12 digits)."""
    vectors = {}
    for stem in TRAIN:
        vector = np.zeros(80, np.float32)
        vector[[0, 79]] = 1
        vectors[np.int64(int(stem[-12:]))] = vector
    np.save(os.path.join(coco_root, "cls_labels_coco.npy"), vectors)
    dicts = DatasetCatalog.get("coco_2014_train_voc_tags")
    assert [d["image_labels"] for d in dicts] == [[1, 80]] * len(TRAIN)


def test_pseudo_dicts(coco_root):
    dicts = DatasetCatalog.get("coco_2014_train_voc_pseudo")
    assert [d["pseudo_sem_seg_file_name"] for d in dicts] == [
        os.path.join(coco_root, "pseudo_labels", s + ".png") for s in TRAIN
    ]
    assert all("sem_seg_file_name" not in d for d in dicts)
    np.testing.assert_array_equal(read_label_map(dicts[1]["pseudo_sem_seg_file_name"]), _label(6))


def test_pseudo_from_another_folder(coco_root, tmp_path):
    other = tmp_path / "irn_sem_seg"
    other.mkdir()
    Image.fromarray(_label(0), mode="L").save(other / (TRAIN[0] + ".png"))
    coco.register_coco_voc_pseudo("test_coco_2014_train_voc_pseudo_irn", str(other))
    yield_cleanup = DatasetCatalog.remove, MetadataCatalog.remove
    try:
        _check_other_pseudo_folder(other)
    finally:
        for remove in yield_cleanup:
            remove("test_coco_2014_train_voc_pseudo_irn")


def _check_other_pseudo_folder(other):
    with pytest.raises(FileNotFoundError, match=re.escape(str(other / (TRAIN[1] + ".png")))):
        DatasetCatalog.get("test_coco_2014_train_voc_pseudo_irn")
    Image.fromarray(_label(1), mode="L").save(other / (TRAIN[1] + ".png"))
    dicts = DatasetCatalog.get("test_coco_2014_train_voc_pseudo_irn")
    assert dicts[1]["pseudo_sem_seg_file_name"] == str(other / (TRAIN[1] + ".png"))
    assert MetadataCatalog.get("test_coco_2014_train_voc_pseudo_irn").weak_label == "pseudo"


def test_missing_pseudo_folder_is_named(coco_root):
    os.rename(os.path.join(coco_root, "pseudo_labels"), os.path.join(coco_root, "elsewhere"))
    with pytest.raises(FileNotFoundError, match=re.escape(os.path.join(coco_root, "pseudo_labels"))):
        DatasetCatalog.get("coco_2014_train_voc_pseudo")


def test_missing_root_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="WSS_DATASETS") as e:
        DatasetCatalog.get("coco_2014_val_voc_sem_seg")
    assert os.path.join(str(tmp_path), "coco") in str(e.value)


def test_missing_image_folder_names_both_layouts(coco_root):
    os.rename(os.path.join(coco_root, "val2014"), os.path.join(coco_root, "val"))
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("coco_2014_val_voc_sem_seg")
    assert os.path.join(coco_root, "val2014") in str(e.value)
    assert os.path.join(coco_root, "JPEGImages", "val2014") in str(e.value)


def test_missing_image_and_list_are_named(coco_root):
    os.remove(os.path.join(coco_root, "train2014", TRAIN[1] + ".jpg"))
    with pytest.raises(FileNotFoundError, match=os.path.join("train2014", TRAIN[1] + ".jpg")):
        DatasetCatalog.get("coco_2014_train_voc_sem_seg")
    os.remove(os.path.join(coco_root, "ImageSets", "val.txt"))
    with pytest.raises(FileNotFoundError, match=os.path.join("ImageSets", "val.txt")):
        DatasetCatalog.get("coco_2014_val_voc_sem_seg")
