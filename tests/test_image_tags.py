import numpy as np
import pytest

from wss_d2.data.weak_labels import load_image_tags, normalize_voc_image_id


def _vector(*positions, length=20):
    v = np.zeros(length, np.float32)
    v[list(positions)] = 1.0
    return v


# docs/datasets.md §3.1: 2007_000032 -> aeroplane + person, 2007_000033 -> aeroplane,
# 2007_000039 -> tvmonitor
EXPECTED = {"2007_000032": [1, 15], "2007_000033": [1], "2007_000039": [20]}


def _save(path, table):
    np.save(path, table)
    return str(path)


def test_str_keys(tmp_path):
    path = _save(tmp_path / "cls_labels_voc.npy", {
        "2007_000032": _vector(0, 14), "2007_000033": _vector(0), "2007_000039": _vector(19),
    })
    assert load_image_tags(path, 20) == EXPECTED


def test_irn_int32_keys(tmp_path):
    path = _save(tmp_path / "cls_labels.npy", {
        np.int32(2007000032): _vector(0, 14), np.int32(2007000033): _vector(0),
        np.int32(2007000039): _vector(19),
    })
    assert load_image_tags(path, 20) == EXPECTED


def test_image_without_tags_gives_empty_list(tmp_path):
    path = _save(tmp_path / "t.npy", {"2007_000032": _vector()})
    assert load_image_tags(path, 20) == {"2007_000032": []}


def test_wrong_length_names_file_and_image(tmp_path):
    path = _save(tmp_path / "t.npy", {"2007_000032": _vector(0, length=21)})
    with pytest.raises(ValueError, match=r"t.npy: the vector of 2007_000032 has length 21, expected 20"):
        load_image_tags(path, 20)


def test_not_multi_hot(tmp_path):
    path = _save(tmp_path / "t.npy", {"2007_000032": _vector(0) * 0.5})
    with pytest.raises(ValueError, match="not multi-hot"):
        load_image_tags(path, 20)


def test_missing_and_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_image_tags(str(tmp_path / "nope.npy"), 20)
    array_file = _save(tmp_path / "array.npy", np.zeros((3, 20), np.float32))
    with pytest.raises(ValueError, match="does not hold a dict"):
        load_image_tags(array_file, 20)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="Cannot read image-tag file"):
        load_image_tags(str(garbage), 20)


def test_normalize_voc_image_id():
    assert normalize_voc_image_id("2011_003276") == "2011_003276"
    assert normalize_voc_image_id(np.int32(2011003276)) == "2011_003276"
    assert normalize_voc_image_id(np.int64(42)) == "42"  # a COCO image id
