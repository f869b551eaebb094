"""datasets/prepare_voc_sbd.py and datasets/prepare_voc_weak_labels.py on tiny VOC/SBD fixtures."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from wss_d2.data.datasets.pascal_voc import voc_palette
from wss_d2.data.readers import read_label_map
from wss_d2.data.weak_labels import load_image_tags

from .conftest import REPO, load_script
from .test_weak_label_formats import scribblesup_xml, voc_xml

W, H = 12, 10


prepare_voc_sbd = load_script("datasets/prepare_voc_sbd.py")
prepare_voc_weak_labels = load_script("datasets/prepare_voc_weak_labels.py")

# VOC train / val, SBD train / val (docs/datasets.md §2.3): 2007_000039 is in VOC train and SBD
# (VOC wins), 2007_000033 is VOC val and SBD val (stays out of train_aug).
VOC_TRAIN = ["2007_000032", "2007_000039"]
VOC_VAL = ["2007_000033"]
SBD_TRAIN = ["2007_000039", "2008_000002"]
SBD_VAL = ["2007_000033", "2008_000003"]
TRAIN_AUG = ["2007_000032", "2007_000039", "2008_000002", "2008_000003"]


def _label(value, void_band=False):
    label = np.zeros((H, W), np.uint8)
    label[2:7, 3:9] = value
    if void_band:
        label[1, 2:10] = 255
    return label


def _write_lines(path, ids):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(i + "\n" for i in ids))


def _save_sbd_mat(path, segmentation):
    """An SBD cls/<id>.mat: the struct GTcls with Segmentation, Boundaries and CategoriesPresent."""
    boundaries = np.empty((20, 1), dtype=object)
    for k in range(20):
        boundaries[k, 0] = scipy.sparse.csc_matrix(segmentation.shape, dtype=np.float64)
    present = np.unique(segmentation[segmentation > 0]).astype(np.uint8).reshape(-1, 1)
    struct = {"Segmentation": segmentation, "Boundaries": boundaries, "CategoriesPresent": present}
    scipy.io.savemat(path, {"GTcls": struct})


def make_voc_sbd(root):
    """<root>/VOC2012 (JPEGs, palette SegmentationClass, lists) and <root>/benchmark_RELEASE."""
    voc, sbd = os.path.join(root, "VOC2012"), os.path.join(root, "benchmark_RELEASE", "dataset")
    for sub in ("JPEGImages", "SegmentationClass", "Annotations"):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    os.makedirs(os.path.join(sbd, "cls"), exist_ok=True)
    rng = np.random.default_rng(0)
    for image_id in sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL)):
        image = Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        image.save(os.path.join(voc, "JPEGImages", image_id + ".jpg"))
    for value, image_id in enumerate(VOC_TRAIN + VOC_VAL, start=1):
        png = Image.fromarray(_label(value, void_band=True), mode="P")
        png.putpalette(voc_palette())
        png.save(os.path.join(voc, "SegmentationClass", image_id + ".png"))
    for value, image_id in enumerate(SBD_TRAIN + SBD_VAL, start=10):
        _save_sbd_mat(os.path.join(sbd, "cls", image_id + ".mat"), _label(value))
    _write_lines(os.path.join(voc, "ImageSets", "Segmentation", "train.txt"), VOC_TRAIN)
    _write_lines(os.path.join(voc, "ImageSets", "Segmentation", "val.txt"), VOC_VAL)
    _write_lines(os.path.join(sbd, "train.txt"), SBD_TRAIN)
    _write_lines(os.path.join(sbd, "val.txt"), SBD_VAL)
    return voc, os.path.join(root, "benchmark_RELEASE")


# ---------------------------------------------------------------------------- prepare_voc_sbd
def _aug_label(voc, image_id):
    path = os.path.join(voc, "SegmentationClassAug", image_id + ".png")
    with Image.open(path) as image:
        assert image.mode == "L"
    return read_label_map(path)


def test_sbd_to_segmentation_class_aug(tmp_path, monkeypatch, capsys):
    voc, _ = make_voc_sbd(str(tmp_path))
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))  # defaults: <root>/VOC2012, <root>/benchmark_RELEASE
    assert prepare_voc_sbd.main([]) == 0
    out = capsys.readouterr().out
    assert "5 label PNGs (3 from VOC SegmentationClass, 2 from SBD)" in out and "12,031" in out
    assert "train_aug.txt: 4 ids" in out and "10,582" in out

    with open(os.path.join(voc, "ImageSets", "Segmentation", "train_aug.txt")) as f:
        assert f.read().split() == TRAIN_AUG
    written = sorted(os.listdir(os.path.join(voc, "SegmentationClassAug")))
    assert written == sorted(i + ".png" for i in TRAIN_AUG + VOC_VAL)
    # palette PNGs are written as raw indices (1, not the luminance 38); VOC wins over SBD's 10
    np.testing.assert_array_equal(_aug_label(voc, "2007_000032"), _label(1, void_band=True))
    np.testing.assert_array_equal(_aug_label(voc, "2007_000039"), _label(2, void_band=True))
    np.testing.assert_array_equal(_aug_label(voc, "2007_000033"), _label(3, void_band=True))  # val: VOC
    np.testing.assert_array_equal(_aug_label(voc, "2008_000002"), _label(11))
    np.testing.assert_array_equal(_aug_label(voc, "2008_000003"), _label(13))

    # idempotent: a second run (here with explicit roots, SBD's dataset/ folder) writes the same
    before = {f: _aug_label(voc, f[:-4]) for f in os.listdir(os.path.join(voc, "SegmentationClassAug"))}
    prepare_voc_sbd.main(["--voc-root", voc, "--sbd-root", str(tmp_path / "benchmark_RELEASE" / "dataset")])
    after = {f: _aug_label(voc, f[:-4]) for f in os.listdir(os.path.join(voc, "SegmentationClassAug"))}
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)


def test_sbd_errors_name_the_file(tmp_path):
    voc, sbd_root = make_voc_sbd(str(tmp_path))
    mat = os.path.join(sbd_root, "dataset", "cls", "2008_000002.mat")
    _save_sbd_mat(mat, np.zeros((H + 1, W), np.uint8))
    message = r"2008_000002.mat is 12x11 \(WxH\) but its image .*2008_000002.jpg is 12x10"
    with pytest.raises(ValueError, match=message):
        prepare_voc_sbd.main(["--voc-root", voc, "--sbd-root", sbd_root])

    scipy.io.savemat(mat, {"Segmentation": np.zeros((H, W), np.uint8)})
    with pytest.raises(ValueError, match=r"2008_000002.mat has no GTcls.Segmentation"):
        prepare_voc_sbd.main(["--voc-root", voc, "--sbd-root", sbd_root])
    with open(mat, "wb") as f:
        f.write(b"not a mat file")
    with pytest.raises(ValueError, match=r"Cannot read SBD label .*2008_000002.mat"):
        prepare_voc_sbd.main(["--voc-root", voc, "--sbd-root", sbd_root])
    _save_sbd_mat(mat, np.full((H, W), 21, np.uint8))
    with pytest.raises(ValueError, match=r"2008_000002.mat has values \[21\]"):
        prepare_voc_sbd.main(["--voc-root", voc, "--sbd-root", sbd_root])
    os.remove(mat)
    with pytest.raises(FileNotFoundError, match="2008_000002.mat"):
        prepare_voc_sbd.main(["--voc-root", voc, "--sbd-root", sbd_root])
    with pytest.raises(FileNotFoundError, match="SBD not found"):
        prepare_voc_sbd.main(["--voc-root", voc, "--sbd-root", str(tmp_path / "nowhere")])


def test_sbd_script_command_line(tmp_path):
    voc, sbd_root = make_voc_sbd(str(tmp_path))
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "datasets", "prepare_voc_sbd.py"),
         "--voc-root", voc, "--sbd-root", sbd_root],
        capture_output=True, text=True, cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert "train_aug.txt: 4 ids" in result.stdout
    assert len(os.listdir(os.path.join(voc, "SegmentationClassAug"))) == 5


# -------------------------------------------------------------------- prepare_voc_weak_labels
def make_weak_sources(root, voc):
    """Annotations XMLs, train_aug.txt, voc_scribbles.zip and the two What's-the-Point JSONs."""
    objects = {
        "2007_000032": [("aeroplane", 2, 2, 8, 6, 0, ()), ("person", 1, 1, 4, 9, 1, ("head",))],
        "2007_000039": [("tvmonitor", 3, 3, 9, 9, 0, ())],
        "2007_000033": [("aeroplane", 1, 1, 12, 10, 0, ())],
        "2008_000002": [("cat", 1, 1, 5, 5, 0, ()), ("cat", 6, 6, 9, 9, 0, ())],
        "2008_000003": [],
    }
    for image_id, objs in objects.items():
        with open(os.path.join(voc, "Annotations", image_id + ".xml"), "w") as f:
            f.write(voc_xml(objs, W, H, image_id))
    _write_lines(os.path.join(voc, "ImageSets", "Segmentation", "train_aug.txt"), TRAIN_AUG)

    zip_file = os.path.join(root, "voc_scribbles.zip")
    with zipfile.ZipFile(zip_file, "w") as archive:
        polygons = [("plane", [(2, 4), (8, 4)]), ("background", [(10, 8)])]
        archive.writestr("2007_000032.xml", scribblesup_xml(polygons, W, H))
        archive.writestr("2007_000039.xml", scribblesup_xml([("monitor", [(5, 5)])], W, H, "2007_000039"))

    fg = {
        "2007_000032": [
            {"x": 4.2, "y": 3.0, "rank": 1, "cls": 1},
            {"x": 704.0, "y": 3.0, "rank": 1, "cls": 15},  # outside the image
        ],
        "2007_000039": [{"x": 6, "y": 6, "rank": 1, "cls": 20}],
        "2009_999999": [{"x": 1.0, "y": 1.0, "rank": 1, "cls": 3}],  # no JPEG: skipped and reported
    }
    bg = {"2007_000032": [{"x": 10.0, "y": 8.0, "cls": 0}, {"x": 5.0, "y": 10.5, "cls": 0}], "2007_000039": []}
    json_files = [
        os.path.join(root, "voc_whats_the_point.json"),
        os.path.join(root, "voc_whats_the_point_bg_from_scribbles.json"),
    ]
    for path, table in zip(json_files, (fg, bg)):
        with open(path, "w") as f:
            json.dump(table, f)
    return zip_file, json_files


def test_weak_labels_end_to_end(tmp_path, monkeypatch, capsys):
    voc, _ = make_voc_sbd(str(tmp_path))
    make_weak_sources(str(tmp_path), voc)
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))  # default sources under the datasets root
    assert prepare_voc_weak_labels.main(["--tags", "--scribbles", "--points"]) == 0
    out = capsys.readouterr().out

    tags = load_image_tags(os.path.join(voc, "cls_labels.npy"), 20)
    assert tags == {
        "2007_000032": [1, 15], "2007_000033": [1], "2007_000039": [20], "2008_000002": [8], "2008_000003": [],
    }
    assert "tags of 5 images (str keys" in out and "1 without any class" in out

    scribble = read_label_map(os.path.join(voc, "scribble", "seginst", "2007_000032.png"))
    expected = np.full((H, W), 21, np.uint8)
    expected[3:6, 1:10] = 1
    expected[7:10, 9:12] = 0
    np.testing.assert_array_equal(scribble, expected)
    assert "2 scribble PNGs, 3 scribbles" in out

    point = read_label_map(os.path.join(voc, "point", "segcls", "2007_000032.png"))
    expected = np.full((H, W), 21, np.uint8)
    expected[2:5, 3:6] = 1
    expected[7:10, 9:12] = 0
    np.testing.assert_array_equal(point, expected)
    assert sorted(os.listdir(os.path.join(voc, "point", "segcls"))) == ["2007_000032.png", "2007_000039.png"]
    assert "2 point PNGs with 3 points; 2 points outside their image dropped" in out
    assert "1 images skipped without a JPEG (e.g. 2009_999999)" in out


def test_weak_labels_irn_keys_and_255_canvas(tmp_path):
    voc, _ = make_voc_sbd(str(tmp_path))
    zip_file, json_files = make_weak_sources(str(tmp_path), voc)
    xml_dir = str(tmp_path / "scribble_annotation" / "pascal_2012")  # ScribbleSup's unzipped folder
    with zipfile.ZipFile(zip_file) as archive:
        archive.extractall(xml_dir)
    out_root = str(tmp_path / "out")
    args = ["--voc-root", voc, "--output-root", out_root, "--tags", "--int-keys", "--unlabeled-value", "255"]
    args += ["--scribbles", xml_dir, "--points", *json_files, "--point-radius", "0"]
    assert prepare_voc_weak_labels.main(args) == 0
    table = np.load(os.path.join(out_root, "cls_labels.npy"), allow_pickle=True).item()
    assert sorted(table) == [2007000032, 2007000033, 2007000039, 2008000002, 2008000003]
    assert all(type(k) is np.int32 for k in table)
    scribble = read_label_map(os.path.join(out_root, "scribble", "seginst", "2007_000039.png"))
    assert (scribble == 20).sum() == 9 and (scribble == 255).sum() == H * W - 9
    point = read_label_map(os.path.join(out_root, "point", "segcls", "2007_000032.png"))
    assert sorted(zip(*np.nonzero(point != 255))) == [(3, 4), (8, 10)]  # single pixels (row, col)


def test_weak_labels_errors(tmp_path, capsys):
    voc, _ = make_voc_sbd(str(tmp_path))
    zip_file, json_files = make_weak_sources(str(tmp_path), voc)
    with pytest.raises(SystemExit):
        prepare_voc_weak_labels.main(["--voc-root", voc])
    assert "nothing to do" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prepare_voc_weak_labels.main(["--voc-root", voc, "--tags", "--unlabeled-value", "20"])
    assert "--unlabeled-value must be 21..255" in capsys.readouterr().err
    with zipfile.ZipFile(zip_file, "w") as archive:
        archive.writestr("2007_000032.xml", scribblesup_xml([("plane", [(2, 4)])], W + 1, H))
    message = r"voc_scribbles.zip:2007_000032.xml gives size 13x10 \(WxH\) but image .*/2007_000032.jpg is 12x10"
    with pytest.raises(ValueError, match=message):
        prepare_voc_weak_labels.main(["--voc-root", voc, "--scribbles", zip_file])
    os.remove(os.path.join(voc, "Annotations", "2008_000003.xml"))
    with pytest.raises(FileNotFoundError, match="2008_000003.xml"):
        prepare_voc_weak_labels.main(["--voc-root", voc, "--tags"])
    with open(json_files[0], "w") as f:
        json.dump({"2007_000032": [{"x": 1.0, "y": 1.0, "cls": 21}]}, f)
    with pytest.raises(ValueError, match=r"image 2007_000032 has class values \[21\]"):
        prepare_voc_weak_labels.main(["--voc-root", voc, "--points"] + json_files)
