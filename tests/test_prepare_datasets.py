"""
The dataset preparation scripts in datasets/ (COCO 2014 VOC-style, COCO-Stuff-10K, ADE20K,
Cityscapes trainIds and clicks, DensePose parts and points), run on tiny fixtures written in
the raw formats of the real releases.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image

from wss_d2.data.datasets.densepose_parts import (
    DENSEPOSE_PART_CLASSES,
    FINE_TO_COARSE,
    FLIP_PART_MAP,
    flip_part_labels,
)

from .conftest import REPO, load_script


def read_png(path):
    with Image.open(path) as image:
        assert image.mode == "L", f"{path} is {image.mode}"
        return np.asarray(image).copy()


def write_jpg(path, width, height, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f)


def uncompressed_rle(mask):
    """COCO's uncompressed (crowd) RLE: column-major run lengths, starting with a run of zeros."""
    flat = np.asarray(mask, dtype=np.uint8).reshape(-1, order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": list(mask.shape)}


def compressed_rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": list(rle["size"])}


# ------------------------------------------------------------------------------------------
# COCO 2014 -> VOC-style
# ------------------------------------------------------------------------------------------
TRAIN_WITH_ANNS = "COCO_train2014_000000000009"
TRAIN_WITHOUT_ANNS = "COCO_train2014_000000000025"
VAL_STEM = "COCO_val2014_000000000042"


def coco_categories():
    from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

    things = [{"id": c["id"], "name": c["name"], "supercategory": "x"} for c in COCO_CATEGORIES if c["isthing"]]
    return things[::-1]  # file order must not matter: classes follow sorted category ids


def write_coco_fixture(root):
    coco = os.path.join(root, "coco")
    crowd = np.zeros((30, 40), dtype=np.uint8)
    crowd[24:30, 0:11] = 1
    train = {
        "images": [
            {"id": 9, "file_name": TRAIN_WITH_ANNS + ".jpg", "height": 30, "width": 40},
            {"id": 25, "file_name": TRAIN_WITHOUT_ANNS + ".jpg", "height": 16, "width": 20},
        ],
        "annotations": [  # JSON order decides overlaps, not the annotation id
            {"id": 900, "image_id": 9, "category_id": 18, "iscrowd": 0,  # dog -> 17
             "segmentation": [[5, 5, 25, 5, 25, 20, 5, 20]], "bbox": [5, 5, 20, 15], "area": 300},
            {"id": 100, "image_id": 9, "category_id": 1, "iscrowd": 0,  # person -> 1
             "segmentation": [[15, 10, 35, 10, 35, 25, 15, 25]], "bbox": [15, 10, 20, 15], "area": 300},
            {"id": 500, "image_id": 9, "category_id": 3, "iscrowd": 1,  # car crowd -> 3
             "segmentation": uncompressed_rle(crowd), "bbox": [0, 24, 11, 6], "area": 66},
        ],
        "categories": coco_categories(),
    }
    val = {
        "images": [{"id": 42, "file_name": VAL_STEM + ".jpg", "height": 18, "width": 24}],
        "annotations": [
            {"id": 7, "image_id": 42, "category_id": 90, "iscrowd": 0,  # toothbrush -> 80
             "segmentation": [[2, 3, 12, 3, 12, 9, 2, 9]], "bbox": [2, 3, 10, 6], "area": 60},
        ],
        "categories": coco_categories(),
    }
    write_json(os.path.join(coco, "annotations", "instances_train2014.json"), train)
    write_json(os.path.join(coco, "annotations", "instances_val2014.json"), val)
    for split, data in (("train2014", train), ("val2014", val)):
        for img in data["images"]:
            write_jpg(os.path.join(coco, split, img["file_name"]), img["width"], img["height"])
    return coco


def reference_coco_labels(json_file):
    """Labels composed from pycocotools' COCO.annToMask, first annotation wins (the MCC recipe)."""
    from pycocotools.coco import COCO

    api = COCO(json_file)
    cat_ids = sorted(api.getCatIds())  # the real file lists them sorted; the fixture does not
    labels = {}
    for img in api.loadImgs(api.getImgIds()):
        label = np.zeros((img["height"], img["width"]), dtype=np.uint8)
        for ann in api.loadAnns(api.getAnnIds(imgIds=img["id"])):
            mask = api.annToMask(ann) > 0
            label[mask & (label == 0)] = cat_ids.index(ann["category_id"]) + 1
        labels[os.path.splitext(img["file_name"])[0]] = label
    return labels


def test_coco_voc_style_labels_lists_and_tags(tmp_path, capsys):
    script = load_script("datasets/prepare_coco_voc_style.py")
    coco = write_coco_fixture(str(tmp_path))
    script.main(["--root", str(tmp_path), "--split", "train", "--workers", "1"])

    label_dir = os.path.join(coco, "SegmentationClass", "train2014")
    label = read_png(os.path.join(label_dir, TRAIN_WITH_ANNS + ".png"))
    assert label.shape == (30, 40)
    assert label[15, 20] == 17  # dog and person overlap: the dog comes first in the JSON
    assert label[22, 30] == 1  # person only
    assert label[7, 7] == 17
    assert label[27, 3] == 3  # crowd RLE painted with its class
    assert label[0, 0] == 0 and label[0, 39] == 0
    assert set(np.unique(label).tolist()) == {0, 1, 3, 17}
    reference = reference_coco_labels(os.path.join(coco, "annotations", "instances_train2014.json"))
    np.testing.assert_array_equal(label, reference[TRAIN_WITH_ANNS])

    empty = read_png(os.path.join(label_dir, TRAIN_WITHOUT_ANNS + ".png"))
    assert empty.shape == (16, 20) and not empty.any()
    with open(os.path.join(coco, "ImageSets", "train.txt")) as f:
        assert f.read().split() == [TRAIN_WITH_ANNS]

    stored = np.load(os.path.join(coco, "cls_labels_coco.npy"), allow_pickle=True)
    assert stored.shape == () and stored.dtype == object
    tags = stored.item()
    assert set(tags) == {TRAIN_WITH_ANNS}
    assert tags[TRAIN_WITH_ANNS].dtype == np.float32 and tags[TRAIN_WITH_ANNS].shape == (80,)
    assert np.flatnonzero(tags[TRAIN_WITH_ANNS]).tolist() == [0, 2, 16]  # person, car, dog
    assert "(real COCO train2014: 82,783)" in capsys.readouterr().out

    # the val split adds its tags to the same file; the toothbrush is the last class (80)
    script.main(["--root", str(tmp_path), "--split", "val", "--workers", "1"])
    val_label = read_png(os.path.join(coco, "SegmentationClass", "val2014", VAL_STEM + ".png"))
    assert val_label[5, 5] == 80 and set(np.unique(val_label).tolist()) == {0, 80}
    tags = np.load(os.path.join(coco, "cls_labels_coco.npy"), allow_pickle=True).item()
    assert set(tags) == {TRAIN_WITH_ANNS, VAL_STEM}
    assert np.flatnonzero(tags[VAL_STEM]).tolist() == [79]
    with open(os.path.join(coco, "ImageSets", "val.txt")) as f:
        assert f.read().split() == [VAL_STEM]


def test_coco_voc_style_is_idempotent_with_a_pool(tmp_path):
    script = load_script("datasets/prepare_coco_voc_style.py")
    coco = write_coco_fixture(str(tmp_path))
    script.main(["--root", str(tmp_path), "--workers", "1"])
    label_file = os.path.join(coco, "SegmentationClass", "train2014", TRAIN_WITH_ANNS + ".png")
    first = read_png(label_file)
    first_tags = np.load(os.path.join(coco, "cls_labels_coco.npy"), allow_pickle=True).item()

    script.main(["--root", str(tmp_path), "--workers", "2"])
    np.testing.assert_array_equal(read_png(label_file), first)
    tags = np.load(os.path.join(coco, "cls_labels_coco.npy"), allow_pickle=True).item()
    assert set(tags) == set(first_tags) == {TRAIN_WITH_ANNS, VAL_STEM}
    for stem in tags:
        np.testing.assert_array_equal(tags[stem], first_tags[stem])

    # --skip-existing keeps a written PNG and reads its tags back from it
    edited = first.copy()
    edited[0, 0] = 5
    Image.fromarray(edited, mode="L").save(label_file)
    script.main(["--root", str(tmp_path), "--split", "train", "--workers", "1", "--skip-existing"])
    assert read_png(label_file)[0, 0] == 5
    tags = np.load(os.path.join(coco, "cls_labels_coco.npy"), allow_pickle=True).item()
    assert np.flatnonzero(tags[TRAIN_WITH_ANNS]).tolist() == [0, 2, 4, 16]


def test_coco_voc_style_reads_mcc_image_layout(tmp_path):
    script = load_script("datasets/prepare_coco_voc_style.py")
    coco = write_coco_fixture(str(tmp_path))
    os.makedirs(os.path.join(coco, "JPEGImages"))
    os.rename(os.path.join(coco, "val2014"), os.path.join(coco, "JPEGImages", "val2014"))
    script.main(["--root", str(tmp_path), "--split", "val", "--workers", "1"])
    assert read_png(os.path.join(coco, "SegmentationClass", "val2014", VAL_STEM + ".png"))[5, 5] == 80


def test_coco_voc_style_errors(tmp_path):
    script = load_script("datasets/prepare_coco_voc_style.py")
    with pytest.raises(FileNotFoundError, match="coco.train2014"):
        script.main(["--root", str(tmp_path), "--split", "train", "--workers", "1"])

    coco = write_coco_fixture(str(tmp_path))
    json_file = os.path.join(coco, "annotations", "instances_train2014.json")
    os.remove(json_file)
    with pytest.raises(FileNotFoundError, match="instances_train2014.json"):
        script.main(["--root", str(tmp_path), "--split", "train", "--workers", "1"])

    write_coco_fixture(str(tmp_path))
    with open(json_file) as f:
        data = json.load(f)
    data["annotations"][1]["category_id"] = 12  # an unused COCO id
    write_json(json_file, data)
    with pytest.raises(ValueError, match=r"instances_train2014.json.*annotation id 100.*12"):
        script.main(["--root", str(tmp_path), "--split", "train", "--workers", "1"])

    write_coco_fixture(str(tmp_path))
    os.remove(os.path.join(coco, "train2014", TRAIN_WITHOUT_ANNS + ".jpg"))
    with pytest.raises(FileNotFoundError, match=TRAIN_WITHOUT_ANNS):
        script.main(["--root", str(tmp_path), "--split", "train", "--workers", "1"])


# ------------------------------------------------------------------------------------------
# COCO-Stuff-10K v1.0
# ------------------------------------------------------------------------------------------
def write_v73_mat(path, label, transpose=True):
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 behind a 512-byte header, `S` column-major."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as mat:
        stored = mat.create_dataset("S", data=(label.T if transpose else label).astype(np.float64))
        stored.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


STUFF_TRAIN = "COCO_train2014_000000000077"
STUFF_TEST = "COCO_train2014_000000000154"


def write_stuff_fixture(root):
    stuff = os.path.join(root, "coco", "coco_stuff_10k")
    rng = np.random.default_rng(0)
    labels = {}
    for split, stem in (("train", STUFF_TRAIN), ("test", STUFF_TEST)):
        label = rng.integers(1, 173, (8, 12))
        label[0, :3] = [1, 2, 172]
        labels[stem] = label
        write_v73_mat(os.path.join(stuff, "annotations", stem + ".mat"), label)
        write_jpg(os.path.join(stuff, "images", stem + ".jpg"), 12, 8)
        os.makedirs(os.path.join(stuff, "imageLists"), exist_ok=True)
        with open(os.path.join(stuff, "imageLists", f"{split}.txt"), "w") as f:
            f.write(stem + "\n")
    return stuff, labels


def test_coco_stuff_10k_conversion(tmp_path):
    script = load_script("datasets/prepare_coco_stuff_10k.py")
    stuff, labels = write_stuff_fixture(str(tmp_path))
    for _ in range(2):  # idempotent
        script.main(["--root", str(tmp_path)])
    for split, stem in (("train", STUFF_TRAIN), ("test", STUFF_TEST)):
        converted = read_png(os.path.join(stuff, "annotations_detectron2", split, stem + ".png"))
        expected = np.where(labels[stem] == 1, 255, labels[stem] - 2)
        np.testing.assert_array_equal(converted, expected)
        with open(os.path.join(stuff, "images", stem + ".jpg"), "rb") as a, open(
            os.path.join(stuff, "images_detectron2", split, stem + ".jpg"), "rb"
        ) as b:
            assert a.read() == b.read()
    train = read_png(os.path.join(stuff, "annotations_detectron2", "train", STUFF_TRAIN + ".png"))
    assert train[0, :3].tolist() == [255, 0, 170]


def test_coco_stuff_10k_errors(tmp_path):
    script = load_script("datasets/prepare_coco_stuff_10k.py")
    with pytest.raises(FileNotFoundError, match="coco_stuff_10k"):
        script.main(["--root", str(tmp_path)])

    stuff, labels = write_stuff_fixture(str(tmp_path))
    mat_file = os.path.join(stuff, "annotations", STUFF_TRAIN + ".mat")
    write_v73_mat(mat_file, labels[STUFF_TRAIN], transpose=False)  # S not column-major: 8x12 read as 12x8
    with pytest.raises(ValueError, match=rf"{STUFF_TRAIN}\.mat.*{STUFF_TRAIN}\.jpg"):
        script.main(["--root", str(tmp_path), "--split", "train"])

    bad = labels[STUFF_TRAIN].copy()
    bad[3, 3] = 0
    write_v73_mat(mat_file, bad)
    with pytest.raises(ValueError, match=rf"{STUFF_TRAIN}\.mat.*values \[0(\.0)?\]"):
        script.main(["--root", str(tmp_path), "--split", "train"])

    from scipy.io import savemat

    savemat(mat_file, {"S": labels[STUFF_TRAIN]})  # MATLAB v5, e.g. a re-saved v1.1 file
    with pytest.raises(ValueError, match=rf"{STUFF_TRAIN}\.mat.*v7\.3"):
        script.main(["--root", str(tmp_path), "--split", "train"])


# ------------------------------------------------------------------------------------------
# ADE20K
# ------------------------------------------------------------------------------------------
def write_ade_fixture(root):
    ade = os.path.join(root, "ADEChallengeData2016")
    labels = {}
    for split, name in (("training", "ADE_train_00000001.png"), ("validation", "ADE_val_00000001.png")):
        label = np.random.default_rng(1).integers(0, 151, (6, 9)).astype(np.uint8)
        label[0, :3] = [0, 1, 150]
        labels[split] = label
        os.makedirs(os.path.join(ade, "annotations", split), exist_ok=True)
        Image.fromarray(label, mode="L").save(os.path.join(ade, "annotations", split, name))
    return ade, labels


def test_ade20k_shift(tmp_path, monkeypatch):
    script = load_script("datasets/prepare_ade20k.py")
    ade, labels = write_ade_fixture(str(tmp_path))
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))  # default root
    script.main([])
    for split, name in (("training", "ADE_train_00000001.png"), ("validation", "ADE_val_00000001.png")):
        shifted = read_png(os.path.join(ade, "annotations_detectron2", split, name))
        np.testing.assert_array_equal(shifted, np.where(labels[split] == 0, 255, labels[split].astype(int) - 1))
        assert shifted[0, :3].tolist() == [255, 0, 149]


def test_ade20k_command_line(tmp_path):
    ade, labels = write_ade_fixture(str(tmp_path))
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "datasets", "prepare_ade20k.py"), "--root", str(tmp_path),
         "--split", "training"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 label PNGs (real ADE20K training: 20,210)" in result.stdout
    assert os.path.isfile(os.path.join(ade, "annotations_detectron2", "training", "ADE_train_00000001.png"))
    assert not os.path.exists(os.path.join(ade, "annotations_detectron2", "validation"))


def test_ade20k_errors(tmp_path):
    script = load_script("datasets/prepare_ade20k.py")
    with pytest.raises(FileNotFoundError, match=r"annotations.training"):
        script.main(["--root", str(tmp_path)])
    ade, _ = write_ade_fixture(str(tmp_path))
    bad_file = os.path.join(ade, "annotations", "training", "ADE_train_00000002.png")
    Image.new("RGB", (9, 6)).save(bad_file)
    with pytest.raises(ValueError, match="ADE_train_00000002.png.*single-channel uint8"):
        script.main(["--root", str(tmp_path)])
    Image.fromarray(np.full((6, 9), 300, dtype=np.uint16)).save(bad_file)  # 16-bit grayscale
    with pytest.raises(ValueError, match="ADE_train_00000002.png.*single-channel uint8"):
        script.main(["--root", str(tmp_path)])
    Image.fromarray(np.full((6, 9), 151, dtype=np.uint8), mode="L").save(bad_file)
    with pytest.raises(ValueError, match=r"ADE_train_00000002.png.*\[151\]"):
        script.main(["--root", str(tmp_path)])


# ------------------------------------------------------------------------------------------
# Cityscapes trainIds and clicks
# ------------------------------------------------------------------------------------------
AACHEN = "aachen_000000_000019"
BOCHUM = "bochum_000000_000313"


def rectangle(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def write_polygons(root, split, name, objects, width=64, height=32):
    city = name.split("_")[0]
    path = os.path.join(root, "cityscapes", "gtFine", split, city, name + "_gtFine_polygons.json")
    write_json(path, {"imgHeight": height, "imgWidth": width, "objects": objects})
    return path


def write_cityscapes_fixture(root, with_bochum=True):
    write_polygons(root, "train", AACHEN, [
        {"label": "road", "polygon": rectangle(0, 16, 63, 31)},
        {"label": "sky", "polygon": rectangle(0, 0, 63, 7)},
        {"label": "car", "polygon": rectangle(10, 12, 30, 24)},
        {"label": "cargroup", "polygon": rectangle(40, 20, 50, 28)},
        {"label": "license plate", "polygon": rectangle(12, 14, 16, 16)},
        {"label": "person", "polygon": rectangle(0, 0, 5, 5), "deleted": 1},
        {"label": "ego vehicle", "polygon": rectangle(55, 28, 63, 31)},
    ])
    if with_bochum:  # 6 valid pixels: fewer than the clicks asked for
        write_polygons(root, "train", BOCHUM, [{"label": "pole", "polygon": rectangle(2, 2, 4, 3)}])
    write_polygons(root, "val", "frankfurt_000000_000294", [{"label": "building", "polygon": rectangle(0, 0, 63, 31)}])
    return os.path.join(root, "cityscapes")


def expected_aachen_train_ids():
    """PIL fills polygons including their border pixels; rows/cols below are inclusive bounds + 1."""
    label = np.full((32, 64), 255, dtype=np.uint8)
    label[16:32, :] = 0  # road
    label[0:8, :] = 10  # sky (the deleted person is not drawn)
    label[12:25, 10:31] = 13  # car (license plate, id -1, never drawn)
    label[20:29, 40:51] = 13  # cargroup -> car
    label[28:32, 55:64] = 255  # ego vehicle: not evaluated
    return label


def test_cityscapes_train_ids(tmp_path):
    script = load_script("datasets/prepare_cityscapes.py")
    cityscapes = write_cityscapes_fixture(str(tmp_path))
    script.main(["--root", str(tmp_path), "--workers", "1"])
    aachen = read_png(os.path.join(cityscapes, "gtFine", "train", "aachen", AACHEN + "_gtFine_labelTrainIds.png"))
    np.testing.assert_array_equal(aachen, expected_aachen_train_ids())
    bochum = read_png(os.path.join(cityscapes, "gtFine", "train", "bochum", BOCHUM + "_gtFine_labelTrainIds.png"))
    assert np.argwhere(bochum == 5).tolist() == [[r, c] for r in (2, 3) for c in (2, 3, 4)]
    frankfurt = read_png(
        os.path.join(cityscapes, "gtFine", "val", "frankfurt", "frankfurt_000000_000294_gtFine_labelTrainIds.png")
    )
    assert (frankfurt == 2).all()
    assert not os.path.exists(os.path.join(cityscapes, "20clicks"))


def read_clicks(cityscapes, num_clicks, name):
    return read_png(os.path.join(cityscapes, f"{num_clicks}clicks", name + "_gtFine_labelTrainIds.png"))


def test_cityscapes_clicks(tmp_path, capsys):
    script = load_script("datasets/prepare_cityscapes.py")
    cityscapes = write_cityscapes_fixture(str(tmp_path))
    script.main(["--root", str(tmp_path), "--clicks", "20", "50", "--seed", "3", "--workers", "1"])
    assert f"{BOCHUM}" in capsys.readouterr().err  # warned: fewer valid pixels than clicks

    train_ids = expected_aachen_train_ids()
    clicked = {}
    for num_clicks in (20, 50):
        clicks = read_clicks(cityscapes, num_clicks, AACHEN)
        positions = clicks != 19
        assert positions.sum() == num_clicks
        np.testing.assert_array_equal(clicks[positions], train_ids[positions])
        assert (train_ids[positions] < 19).all()
        assert set(np.unique(clicks).tolist()) <= set(range(20))
        clicked[num_clicks] = positions
        with open(os.path.join(cityscapes, f"{num_clicks}clicks", "clicks.json")) as f:
            sidecar = json.load(f)
        assert sidecar["num_clicks"] == num_clicks and sidecar["seed"] == 3
        assert sidecar["unlabeled_value"] == 19 and sidecar["sampler"] == script.CLICK_SAMPLER
        assert sidecar["num_images"] == 2 and sidecar["images_with_fewer_valid_pixels"] == [BOCHUM]
        bochum = read_clicks(cityscapes, num_clicks, BOCHUM)
        assert np.argwhere(bochum != 19).tolist() == [[r, c] for r in (2, 3) for c in (2, 3, 4)]
        assert (bochum[bochum != 19] == 5).all()
    assert not (clicked[20] & ~clicked[50]).any()  # nested: 20 clicks are among the 50
    # the sampler the sidecar describes reproduces the clicks
    name_key = int.from_bytes(hashlib.sha256(AACHEN.encode("utf-8")).digest()[:8], "little")
    valid = np.flatnonzero(train_ids < 19)
    chosen = valid[np.random.default_rng([3, name_key]).permutation(valid.size)[:20]]
    assert np.flatnonzero(clicked[20]).tolist() == sorted(chosen.tolist())
    assert sorted(os.listdir(os.path.join(cityscapes, "20clicks"))) == sorted(
        ["clicks.json", AACHEN + "_gtFine_labelTrainIds.png", BOCHUM + "_gtFine_labelTrainIds.png"]
    )

    # the same seed gives the same clicks with a pool and without the other image
    first = read_clicks(cityscapes, 20, AACHEN)
    other_root = tmp_path / "alone"
    alone = write_cityscapes_fixture(str(other_root), with_bochum=False)
    script.main(["--root", str(other_root), "--clicks", "20", "--seed", "3", "--workers", "2"])
    np.testing.assert_array_equal(read_clicks(alone, 20, AACHEN), first)
    script.main(["--root", str(other_root), "--split", "train", "--clicks", "20", "--seed", "4", "--workers", "1"])
    assert not np.array_equal(read_clicks(alone, 20, AACHEN), first)


def test_cityscapes_errors(tmp_path):
    script = load_script("datasets/prepare_cityscapes.py")
    with pytest.raises(FileNotFoundError, match=r"gtFine.train"):
        script.main(["--root", str(tmp_path), "--workers", "1"])
    write_cityscapes_fixture(str(tmp_path))
    with pytest.raises(ValueError, match="unlabeled-value"):
        script.main(["--root", str(tmp_path), "--clicks", "20", "--unlabeled-value", "5", "--workers", "1"])
    bad = write_polygons(
        str(tmp_path), "train", "aachen_000001_000019", [{"label": "spaceship", "polygon": rectangle(0, 0, 3, 3)}]
    )
    with pytest.raises(ValueError, match=r"aachen_000001_000019_gtFine_polygons.json.*'spaceship'"):
        script.main(["--root", str(tmp_path), "--workers", "1"])
    with open(bad, "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="aachen_000001_000019_gtFine_polygons.json"):
        script.main(["--root", str(tmp_path), "--workers", "1"])


# ------------------------------------------------------------------------------------------
# DensePose parts and points
# ------------------------------------------------------------------------------------------
DP_TRAIN = "COCO_train2014_000000000036"
DP_MINIVAL = "COCO_val2014_000000000139"


def dp_part_map_256():
    """Box-relative parts of the annotated person, on 2-pixel-aligned blocks (exact 2x nearest downscale)."""
    parts = np.zeros((256, 256), dtype=np.uint8)
    parts[64:192, 64:192] = 1  # torso, dp_masks[0]
    parts[100:140, 60:100] = 2  # right hand, dp_masks[1]: a later part overwrites the torso
    parts[0:64, 96:160] = 14  # head, dp_masks[13]
    return parts


def write_densepose_fixture(root, fine_parts=None):
    coco = os.path.join(root, "coco")
    dp_masks = [[] for _ in range(14)]  # absent parts are empty entries, as in the release
    boxes = {0: ((64, 192), (64, 192)), 1: ((100, 140), (60, 100)), 13: ((0, 64), (96, 160))}  # torso, hand, head
    for index, (rows, cols) in boxes.items():
        mask = np.zeros((256, 256), dtype=np.uint8)
        mask[slice(*rows), slice(*cols)] = 1
        dp_masks[index] = compressed_rle(mask)  # the hand (index 1) overlaps the torso (index 0)
    annotated = {
        "id": 11, "image_id": 36, "category_id": 1, "iscrowd": 0, "area": 9000.0,
        "bbox": [30.4, 20.0, 128.0, 128.0], "segmentation": [[31, 21, 150, 21, 150, 140, 31, 140]],
        "dp_masks": dp_masks,
        # points: (63, 52) torso; (95, 20) head, then a later point at the same pixel (torso);
        # (131, 148) fine 9 -> right thigh
        "dp_x": [64.0, 128.0, 200.0, 128.0], "dp_y": [64.0, 0.0, 255.0, 0.0],
        "dp_I": fine_parts or [1.0, 23.0, 9.0, 2.0],
        "dp_U": [0.1, 0.2, 0.3, 0.4], "dp_V": [0.5, 0.6, 0.7, 0.8],
    }
    at_border = {  # box touching the right image border: its dp_x = 255 point falls outside
        "id": 12, "image_id": 36, "category_id": 1, "iscrowd": 0, "area": 2000.0,
        "bbox": [150.0, 100.0, 50.0, 60.0], "segmentation": [[150, 100, 199, 100, 199, 159, 150, 159]],
        "dp_masks": [[] for _ in range(14)],
        "dp_x": [51.0, 255.0], "dp_y": [51.0, 100.0], "dp_I": [16.0, 3.0], "dp_U": [0.1, 0.1], "dp_V": [0.1, 0.1],
    }
    not_annotated = {
        "id": 13, "image_id": 36, "category_id": 1, "iscrowd": 0, "area": 600.0,
        "bbox": [170.0, 10.0, 20.0, 30.0], "segmentation": [[170, 10, 190, 10, 190, 40, 170, 40]],
    }
    crowd = np.zeros((40, 50), dtype=np.uint8)
    crowd[5:30, 5:20] = 1
    minival_crowd = {
        "id": 14, "image_id": 139, "category_id": 1, "iscrowd": 1, "area": 375.0,
        "bbox": [5.0, 5.0, 15.0, 25.0], "segmentation": uncompressed_rle(crowd),
    }
    categories = [{"id": 1, "name": "person", "supercategory": "person"}]
    train = {
        "images": [{"id": 36, "file_name": DP_TRAIN + ".jpg", "height": 160, "width": 200}],
        "annotations": [annotated, at_border, not_annotated],
        "categories": categories,
    }
    minival = {
        "images": [{"id": 139, "file_name": DP_MINIVAL + ".jpg", "height": 40, "width": 50}],
        "annotations": [minival_crowd],
        "categories": categories,
    }
    write_json(os.path.join(coco, "annotations", "densepose_train2014.json"), train)
    write_json(os.path.join(coco, "annotations", "densepose_minival2014.json"), minival)
    write_jpg(os.path.join(coco, "train2014", DP_TRAIN + ".jpg"), 200, 160)
    write_jpg(os.path.join(coco, "val2014", DP_MINIVAL + ".jpg"), 50, 40)
    return os.path.join(root, "densepose")


def test_densepose_part_tables():
    assert len(DENSEPOSE_PART_CLASSES) == 15 and DENSEPOSE_PART_CLASSES[14] == "head"
    assert sorted(FINE_TO_COARSE) == list(range(1, 25)) and set(FINE_TO_COARSE.values()) == set(range(1, 15))
    assert [FINE_TO_COARSE[i] for i in (1, 3, 4, 9, 16, 21, 24)] == [1, 2, 3, 6, 11, 12, 14]
    assert all(FLIP_PART_MAP[FLIP_PART_MAP[v]] == v for v in range(15))
    flipped = flip_part_labels(np.array([[0, 2, 3, 6, 13, 14, 15, 255]], dtype=np.uint8))
    assert flipped.tolist() == [[0, 3, 2, 7, 12, 14, 15, 255]] and flipped.dtype == np.uint8


def test_densepose_parts_points_and_lists(tmp_path):
    script = load_script("datasets/prepare_densepose.py")
    densepose = write_densepose_fixture(str(tmp_path))
    for _ in range(2):  # idempotent, links made once
        script.main(["--root", str(tmp_path), "--split", "train2014", "minival2014", "--workers", "1"])

    dense = read_png(os.path.join(densepose, "segcls", "densepose", "gray", DP_TRAIN + ".png"))
    expected = np.zeros((160, 200), dtype=np.uint8)
    expected[10:40, 170:190] = 255  # person without DensePose (pycocotools polygon fill is half-open)
    box = expected[20:148, 30:158]  # bbox [30.4, 20, 128, 128] rounded
    parts = dp_part_map_256()[::2, ::2]
    box[parts > 0] = parts[parts > 0]
    np.testing.assert_array_equal(dense, expected)
    assert dense[20 + 40, 30 + 40] == 1 and dense[20 + 60, 30 + 40] == 2 and dense[20 + 10, 30 + 60] == 14

    points = read_png(os.path.join(densepose, "segcls", "densepose_points", "gray", DP_TRAIN + ".png"))
    expected_points = np.full((160, 200), 15, dtype=np.uint8)
    for x, y, part in ((63, 52, 1), (95, 20, 1), (131, 148, 6), (160, 112, 11)):
        expected_points[y, x] = part
    np.testing.assert_array_equal(points, expected_points)

    minival = read_png(os.path.join(densepose, "segcls", "densepose", "gray", DP_MINIVAL + ".png"))
    assert (minival[5:30, 5:20] == 255).all() and minival.sum() == 255 * 25 * 15
    assert (read_png(os.path.join(densepose, "segcls", "densepose_points", "gray", DP_MINIVAL + ".png")) == 15).all()

    def read_lines(name):
        with open(os.path.join(densepose, name)) as f:
            return f.read().splitlines()

    assert read_lines("train2014.txt") == [f"images/train2014/{DP_TRAIN}.jpg segcls/densepose/gray/{DP_TRAIN}.png"]
    assert read_lines("train2014_points.txt") == [
        f"images/train2014/{DP_TRAIN}.jpg segcls/densepose_points/gray/{DP_TRAIN}.png"
    ]
    assert read_lines("minival2014.txt") == [f"images/val2014/{DP_MINIVAL}.jpg segcls/densepose/gray/{DP_MINIVAL}.png"]
    for folder in ("train2014", "val2014"):
        link = os.path.join(densepose, "images", folder)
        assert os.path.islink(link)
        assert os.path.realpath(link) == os.path.realpath(os.path.join(str(tmp_path), "coco", folder))
    assert os.path.isfile(os.path.join(densepose, "images", "train2014", DP_TRAIN + ".jpg"))


def test_densepose_options(tmp_path):
    script = load_script("datasets/prepare_densepose.py")
    densepose = write_densepose_fixture(str(tmp_path))
    script.main(["--root", str(tmp_path), "--split", "minival2014", "train2014", "--workers", "2",
                 "--no-ignore-unannotated", "--point-radius", "1"])
    assert not read_png(os.path.join(densepose, "segcls", "densepose", "gray", DP_MINIVAL + ".png")).any()
    dense = read_png(os.path.join(densepose, "segcls", "densepose", "gray", DP_TRAIN + ".png"))
    assert not (dense == 255).any() and dense[20 + 40, 30 + 40] == 1
    points = read_png(os.path.join(densepose, "segcls", "densepose_points", "gray", DP_TRAIN + ".png"))
    assert np.argwhere(points == 11).tolist() == [[111, 160], [112, 159], [112, 160], [112, 161], [113, 160]]
    # two points at (95, 20): the later one's disc wins
    assert np.argwhere(points == 6).tolist() == [[147, 131], [148, 130], [148, 131], [148, 132], [149, 131]]
    assert (points[19:22, 94:97][[0, 1, 1, 1, 2], [1, 0, 1, 2, 1]] == 1).all()


def test_densepose_errors(tmp_path):
    script = load_script("datasets/prepare_densepose.py")
    with pytest.raises(FileNotFoundError, match="densepose_train2014.json"):
        script.main(["--root", str(tmp_path), "--split", "train2014", "--workers", "1"])
    write_densepose_fixture(str(tmp_path), fine_parts=[1.0, 25.0, 9.0, 2.0])
    with pytest.raises(ValueError, match=rf"densepose_train2014.json.*{DP_TRAIN}.*annotation id 11.*1\.\.24"):
        script.main(["--root", str(tmp_path), "--split", "train2014", "--workers", "1"])

    other = tmp_path / "no_images"
    write_densepose_fixture(str(other))
    shutil.rmtree(os.path.join(str(other), "coco", "val2014"))
    with pytest.raises(FileNotFoundError, match=r"coco.val2014"):
        script.main(["--root", str(other), "--split", "minival2014", "--workers", "1"])
