import os

import numpy as np
import pytest
from PIL import Image

from wss_d2.data.datasets import load_voc_sem_seg, read_split_ids


def _voc_fixture(root, ids=("2007_000032", "2007_000039")):
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i in ids:
        Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(os.path.join(root, "JPEGImages", i + ".jpg"))
        Image.fromarray(np.zeros((8, 10), np.uint8), mode="L").save(
            os.path.join(root, "SegmentationClass", i + ".png")
        )
    with open(os.path.join(root, "ImageSets", "Segmentation", "train.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    return root


@pytest.mark.parametrize(
    "line",
    [
        "2007_000032",
        "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png",
        "2007_000032.jpg 2007_000032.png",
        "VOC2012/JPEGImages/2007_000032.jpg VOC2012/segcls/2007_000032.png VOC2012/hed/2007_000032.png",
    ],
)
def test_list_styles(tmp_path, line):
    path = tmp_path / "list.txt"
    path.write_text(line + "\n\n")
    assert read_split_ids(str(path)) == ["2007_000032"]


def test_loads_dicts(tmp_path):
    root = _voc_fixture(str(tmp_path))
    dicts = load_voc_sem_seg(root, "train")
    assert [d["image_id"] for d in dicts] == ["2007_000032", "2007_000039"]
    assert dicts[0]["sem_seg_file_name"].endswith("SegmentationClass/2007_000032.png")


def test_missing_root_is_named(tmp_path):
    missing = str(tmp_path / "VOC2012")
    with pytest.raises(FileNotFoundError, match="WSS_DATASETS") as e:
        load_voc_sem_seg(missing, "train")
    assert missing in str(e.value)


def test_missing_split_list_is_named(tmp_path):
    root = _voc_fixture(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="val.txt"):
        load_voc_sem_seg(root, "val")


def test_empty_split_list(tmp_path):
    root = _voc_fixture(str(tmp_path))
    open(os.path.join(root, "ImageSets", "Segmentation", "empty.txt"), "w").close()
    with pytest.raises(ValueError, match="empty.txt lists no images"):
        load_voc_sem_seg(root, "empty")


def test_missing_image_is_named(tmp_path):
    root = _voc_fixture(str(tmp_path))
    os.remove(os.path.join(root, "JPEGImages", "2007_000039.jpg"))
    with pytest.raises(FileNotFoundError) as e:
        load_voc_sem_seg(root, "train")
    assert "1 images" in str(e.value) and "JPEGImages/2007_000039.jpg" in str(e.value)


def test_missing_label_is_named(tmp_path):
    root = _voc_fixture(str(tmp_path))
    os.remove(os.path.join(root, "SegmentationClass", "2007_000032.png"))
    with pytest.raises(FileNotFoundError, match="SegmentationClass/2007_000032.png"):
        load_voc_sem_seg(root, "train")


# --- registrations, on a fixture in the real VOC layout ------------------------------------

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402

from wss_d2 import get_wss_cfg  # noqa: E402
from wss_d2.data import SemanticDatasetMapper  # noqa: E402
from wss_d2.data.datasets import VOC_CLASSES, find_voc_root, voc_palette  # noqa: E402

from .conftest import MAIN_CONFIG  # noqa: E402

TRAIN_IDS = ("2007_000032", "2007_000039")
VAL_IDS = ("2007_000033",)
AUG_ONLY_IDS = ("2008_000002",)  # SBD-annotated, not in VOC's train list


def _real_voc_layout(voc):
    """VOC2012 with palette SegmentationClass (255 band), grayscale SegmentationClassAug."""
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    rng = np.random.RandomState(0)
    for i, image_id in enumerate(TRAIN_IDS + VAL_IDS + AUG_ONLY_IDS):
        h, w = 30 + i, 40 + 2 * i
        Image.fromarray(rng.randint(0, 255, (h, w, 3), np.uint8)).save(
            os.path.join(voc, "JPEGImages", image_id + ".jpg")
        )
        label = np.zeros((h, w), np.uint8)
        label[5:20, 5:25] = 15  # person
        label[4, 5:25] = 255  # void band
        label[22:, 30:] = 1 + i  # aeroplane, bicycle, ...
        png = Image.fromarray(label, mode="P")
        png.putpalette(voc_palette())
        if image_id not in AUG_ONLY_IDS:
            png.save(os.path.join(voc, "SegmentationClass", image_id + ".png"))
        Image.fromarray(label, mode="L").save(os.path.join(voc, "SegmentationClassAug", image_id + ".png"))
    lists = {
        "train": TRAIN_IDS,
        "val": VAL_IDS,
        "trainval": TRAIN_IDS + VAL_IDS,
        "train_aug": TRAIN_IDS + AUG_ONLY_IDS,
    }
    for split, ids in lists.items():
        with open(os.path.join(voc, "ImageSets", "Segmentation", split + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")


@pytest.mark.parametrize("layout", ["VOC2012", "VOCdevkit/VOC2012"])
def test_voc_registrations(tmp_path, monkeypatch, layout):
    _real_voc_layout(str(tmp_path / layout))
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    assert find_voc_root() == str(tmp_path / layout)
    expected = {
        "voc_2012_train_sem_seg": (TRAIN_IDS, "SegmentationClass"),
        "voc_2012_val_sem_seg": (VAL_IDS, "SegmentationClass"),
        "voc_2012_trainval_sem_seg": (TRAIN_IDS + VAL_IDS, "SegmentationClass"),
        "voc_2012_train_aug_sem_seg": (TRAIN_IDS + AUG_ONLY_IDS, "SegmentationClassAug"),
    }
    for name, (ids, label_dir) in expected.items():
        dicts = DatasetCatalog.get(name)
        assert tuple(d["image_id"] for d in dicts) == ids
        assert all(f"/{label_dir}/" in d["sem_seg_file_name"] for d in dicts)
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes == list(VOC_CLASSES) and len(VOC_CLASSES) == 21
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"


@pytest.mark.parametrize("name", ["voc_2012_train_sem_seg", "voc_2012_train_aug_sem_seg"])
def test_voc_maps_raw_indices(tmp_path, monkeypatch, name):
    _real_voc_layout(str(tmp_path / "VOC2012"))
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    cfg = get_wss_cfg(MAIN_CONFIG, ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "21"])
    mapped = SemanticDatasetMapper(cfg, is_train=False)(DatasetCatalog.get(name)[0])
    assert set(np.unique(mapped["sem_seg"].numpy()).tolist()) == {0, 1, 15, 255}


def test_voc_missing_root_names_both_places(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get("voc_2012_val_sem_seg")
    assert str(tmp_path / "VOC2012") in str(e.value) and str(tmp_path / "VOCdevkit" / "VOC2012") in str(e.value)


def test_voc_missing_aug_list_is_named(tmp_path, monkeypatch):
    _real_voc_layout(str(tmp_path / "VOC2012"))
    os.remove(tmp_path / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt")
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="train_aug.txt"):
        DatasetCatalog.get("voc_2012_train_aug_sem_seg")
