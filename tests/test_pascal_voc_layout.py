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
