"""The weak-label simulator: real formats, requested densities, determinism."""
import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from detectron2.data import DatasetCatalog, MetadataCatalog

from wss_d2.data.datasets import SYNTHETIC_CLASSES, load_voc_sem_seg
from wss_d2.data.readers import read_label_map
from wss_d2.data.weak_labels import (
    boxes_from_label_map,
    load_image_tags,
    load_whats_the_point,
    read_voc_xml,
    tags_from_label_map,
)
from wss_d2.data.weak_labels.simulate import simulate_scribbles, write_weak_labels

from .conftest import REPO

K = len(SYNTHETIC_CLASSES)
ALL_KINDS = ("tags", "boxes", "points", "scribbles", "clicks")


def _simulate(records, out, **kwargs):
    return write_weak_labels(records, str(out), num_classes=K, class_names=SYNTHETIC_CLASSES, **kwargs)


@pytest.fixture(scope="module")
def records(synthetic_dir):
    return load_voc_sem_seg(synthetic_dir, "train")[:40]


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def test_deterministic_and_independent_of_the_subset(records, tmp_path):
    params = dict(kinds=ALL_KINDS, seed=3, points_per_object=2, scribble_fraction=0.5, num_clicks=7)
    _simulate(records, tmp_path / "a", **params)
    _simulate(records, tmp_path / "b", **params)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b") and len(files) == 1 + 1 + 1 + 4 * len(records)
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert not mismatch and not errors
    # a subset processed alone gets the same labels (per-image generators)
    _simulate(records[10:15], tmp_path / "c", **params)
    for kind_dir in ("point/segcls", "scribble/seginst_0.5", "7clicks", "Annotations"):
        names = sorted(os.listdir(tmp_path / "c" / kind_dir))
        _, mismatch, _ = filecmp.cmpfiles(tmp_path / "a" / kind_dir, tmp_path / "c" / kind_dir, names, shallow=False)
        assert len(names) == 5 and not mismatch
    # another seed changes them
    _simulate(records, tmp_path / "d", **{**params, "seed": 4})
    names = sorted(os.listdir(tmp_path / "a" / "7clicks"))
    _, mismatch, _ = filecmp.cmpfiles(tmp_path / "a" / "7clicks", tmp_path / "d" / "7clicks", names, shallow=False)
    assert len(mismatch) > len(names) / 2


def test_points_n_per_object_plus_background(records, tmp_path):
    summary = _simulate(records, tmp_path, kinds=("points",), points_per_object=2, background_points=3)
    table = load_whats_the_point(str(tmp_path / "points.json"))
    total = 0
    for record in records:
        label = read_label_map(record["sem_seg_file_name"])
        points = table[record["image_id"]].astype(int)
        xs, ys, classes = points.T
        assert (label[ys, xs] == classes).all(), "a point on the wrong class or on void"
        assert len(set(zip(xs, ys))) == len(points), "duplicate point"
        assert (classes == 0).sum() == 3
        # every object (8-connected region of a class) gets min(2, area) points
        for cls in np.unique(label[(label > 0) & (label < K)]):
            regions, count = ndimage.label(label == cls, structure=np.ones((3, 3)))
            hits = np.bincount(regions[ys[classes == cls], xs[classes == cls]], minlength=count + 1)[1:]
            areas = np.bincount(regions.ravel(), minlength=count + 1)[1:]
            assert np.array_equal(hits, np.minimum(areas, 2))
        # the PNG holds the same points as 3-px discs on a K canvas
        png = np.asarray(Image.open(tmp_path / "point" / "segcls" / (record["image_id"] + ".png")))
        assert (png[ys, xs] == classes).all() and set(np.unique(png)) <= set(range(K + 1))
        assert (png < K).sum() <= 9 * len(points)
        total += len(points)
    assert summary["stats"]["points"] == total


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.5, 1.0])
def test_scribbles_match_the_requested_fraction(records, tmp_path, fraction):
    summary = _simulate(records, tmp_path, kinds=("scribbles",), scribble_fraction=fraction)
    stats = summary["stats"]
    achieved = stats["skeleton_kept"] / stats["skeleton_total"]
    assert abs(achieved - fraction) < 0.05 or (fraction == 0 and achieved < 0.05)
    folder = "scribble/seginst" + ("" if fraction == 1 else f"_{fraction:g}")
    for record in records[:15]:
        label = read_label_map(record["sem_seg_file_name"])
        scribble = np.asarray(Image.open(tmp_path / folder / (record["image_id"] + ".png")))
        labelled = scribble < K
        assert (scribble[labelled] == label[labelled]).all(), "scribble pixel off its region"
        # every region that is not tiny has a stroke, including the background
        for cls in np.unique(label[label < K]):
            assert (scribble == cls).any()


def test_several_scribble_fractions_write_a_folder_each(records, tmp_path):
    summary = _simulate(records[:12], tmp_path / "both", kinds=("scribbles",), scribble_fraction=(1.0, 0.3))
    _simulate(records[:12], tmp_path / "short", kinds=("scribbles",), scribble_fraction=0.3)
    assert summary["folders"]["scribbles"] == ["scribble/seginst", "scribble/seginst_0.3"]
    kept, total = summary["stats"]["skeleton_kept"], summary["stats"]["skeleton_total"]
    assert kept["1"] == total and abs(kept["0.3"] / total - 0.3) < 0.05
    for record in records[:12]:
        name = record["image_id"] + ".png"
        whole, short = (np.asarray(Image.open(tmp_path / "both" / f / name))
                        for f in ("scribble/seginst", "scribble/seginst_0.3"))
        # the short stroke is a piece of the whole one, and the same as when written alone
        assert ((short == whole) | (short == K)).all() and (short < K).sum() < (whole < K).sum()
        alone = np.asarray(Image.open(tmp_path / "short" / "scribble/seginst_0.3" / name))
        np.testing.assert_array_equal(short, alone)


def test_scribble_is_one_contiguous_stroke_of_width_3():
    label = np.zeros((40, 80), np.uint8)
    label[10:30, 5:75] = 1  # a long bar: its skeleton is a horizontal line
    scribble, kept, total = simulate_scribbles(label, np.random.default_rng(0), fraction=0.5, num_classes=K)
    stroke = scribble == 1
    assert ndimage.label(stroke, structure=np.ones((3, 3)))[1] == 1
    rows = np.nonzero(stroke.any(1))[0]
    assert len(rows) == 3  # width 3 across a horizontal skeleton
    assert abs(kept / total - 0.5) < 0.05 and abs(stroke.any(0).sum() - total / 2) <= 3


def test_clicks_tags_and_boxes(records, tmp_path):
    _simulate(records, tmp_path, kinds=("clicks", "tags", "boxes"), num_clicks=25)
    tags = load_image_tags(str(tmp_path / "cls_labels.npy"), K - 1)
    assert sorted(tags) == sorted(r["image_id"] for r in records)
    for record in records:
        label = read_label_map(record["sem_seg_file_name"])
        clicks = np.asarray(Image.open(tmp_path / "25clicks" / (record["image_id"] + ".png")))
        assert (clicks < K).sum() == 25 and (clicks[clicks < K] == label[clicks < K]).all()
        assert tags[record["image_id"]] == tags_from_label_map(label, K)
        parsed = read_voc_xml(str(tmp_path / "Annotations" / (record["image_id"] + ".xml")), SYNTHETIC_CLASSES)
        assert (parsed["height"], parsed["width"]) == label.shape
        assert [(o["category_id"], o["bbox"]) for o in parsed["objects"]] == boxes_from_label_map(label)


def test_bundled_synthetic_dataset_has_every_kind(synthetic_dir):
    with open(os.path.join(synthetic_dir, "weak_labels.json")) as f:
        summary = json.load(f)
    assert set(summary["kinds"]) == set(ALL_KINDS) and summary["unlabeled_value"] == K
    ids = [r["image_id"] for r in load_voc_sem_seg(synthetic_dir, "train")]
    folders = ("Annotations", ".xml"), ("point/segcls", ".png"), ("scribble/seginst", ".png"), \
        ("scribble/seginst_0.3", ".png"), ("20clicks", ".png")
    for folder, ext in folders:
        assert all(os.path.isfile(os.path.join(synthetic_dir, folder, i + ext)) for i in ids), folder
    assert summary["scribble_fraction"] == [1.0, 0.3]
    short = DatasetCatalog.get("wss_synthetic_train_scribbles_0.3")
    assert len(short) == len(ids) and short[0]["sparse_sem_seg_file_name"].endswith(f"seginst_0.3/{ids[0]}.png")
    assert MetadataCatalog.get("wss_synthetic_train_scribbles_0.3").sparse_unlabeled_value == K
    assert os.path.isfile(os.path.join(synthetic_dir, "cls_labels.npy"))


def test_command_line(tmp_path, datasets_root):
    out = tmp_path / "weak"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "datasets", "make_weak_labels.py"), "--dataset", "wss_synthetic_val",
         "--output", str(out), "--kinds", "clicks", "scribbles", "--clicks", "5", "--scribble-fraction", "0.3"],
        capture_output=True, text=True, env={**os.environ, "WSS_DATASETS": datasets_root},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(os.listdir(out / "5clicks")) == 100 and len(os.listdir(out / "scribble" / "seginst_0.3")) == 100
    bad = subprocess.run(
        [sys.executable, os.path.join(REPO, "datasets", "make_weak_labels.py"), "--dataset", "wss_synthetic_train_tags",
         "--output", str(out)],
        capture_output=True, text=True, env={**os.environ, "WSS_DATASETS": datasets_root},
    )
    assert bad.returncode != 0 and "without full masks" in bad.stderr
