import json
import os

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from wss_d2.data.datasets import SYNTHETIC_CLASSES, generate_synthetic_dataset, voc_palette
from wss_d2.data.datasets.registration import IGNORE_LABEL
from wss_d2.data.datasets.synthetic import SPLIT_SIZES, ensure_synthetic_dataset

SMALL = {"train": 6, "val": 3}


def _read_split(dataset_dir, split):
    with open(os.path.join(dataset_dir, "ImageSets", "Segmentation", split + ".txt")) as f:
        return f.read().split()


def test_files_are_voc_format(synthetic_dir):
    ids = _read_split(synthetic_dir, "train")
    assert len(ids) == SPLIT_SIZES["train"]
    palette = voc_palette()
    for image_id in ids[:20]:
        image = Image.open(os.path.join(synthetic_dir, "JPEGImages", image_id + ".jpg"))
        label = Image.open(os.path.join(synthetic_dir, "SegmentationClass", image_id + ".png"))
        assert image.format == "JPEG" and image.mode == "RGB"
        assert label.format == "PNG" and label.mode == "P"
        assert label.getpalette()[: len(palette)] == palette
        assert image.size == label.size
        assert 96 <= image.size[0] <= 144 and 96 <= image.size[1] <= 144


def test_label_values(synthetic_dir):
    ids = _read_split(synthetic_dir, "train")
    seen = set()
    objects_per_image = []
    for image_id in ids:
        label = np.asarray(Image.open(os.path.join(synthetic_dir, "SegmentationClass", image_id + ".png")))
        values = set(np.unique(label).tolist())
        assert values <= set(range(len(SYNTHETIC_CLASSES))) | {IGNORE_LABEL}
        assert 0 in values and IGNORE_LABEL in values  # background and the void band
        foreground = values - {0, IGNORE_LABEL}
        assert foreground, f"{image_id} has no object"
        seen |= foreground
        objects_per_image.append(len(foreground))
        # the void band is thin: a few percent of the image, never most of it
        assert (label == IGNORE_LABEL).mean() < 0.2
    assert seen == set(range(1, len(SYNTHETIC_CLASSES)))
    counts = np.bincount(objects_per_image)
    assert counts[1] > 0 and counts[2] > 0 and len(counts) > 3 and counts[3] > 0  # co-occurrence


def test_splits_are_disjoint(synthetic_dir):
    train, val = _read_split(synthetic_dir, "train"), _read_split(synthetic_dir, "val")
    assert len(val) == SPLIT_SIZES["val"]
    assert not set(train) & set(val)


def test_generation_is_deterministic(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    generate_synthetic_dataset(a, seed=3, split_sizes=SMALL)
    generate_synthetic_dataset(b, seed=3, split_sizes=SMALL)
    generate_synthetic_dataset(c, seed=4, split_sizes=SMALL)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        names = sorted(os.listdir(os.path.join(a, sub)))
        assert names == sorted(os.listdir(os.path.join(b, sub)))
        for name in names:
            with open(os.path.join(a, sub, name), "rb") as fa, open(os.path.join(b, sub, name), "rb") as fb:
                assert fa.read() == fb.read(), f"{sub}/{name} differs between two runs"
    label_a = np.asarray(Image.open(os.path.join(a, "SegmentationClass", "syn_000000.png")))
    label_c = np.asarray(Image.open(os.path.join(c, "SegmentationClass", "syn_000000.png")))
    assert label_a.shape != label_c.shape or (label_a != label_c).any()


def test_ensure_generates_once(tmp_path):
    root = str(tmp_path)
    dataset_dir = ensure_synthetic_dataset(root)
    marker = os.path.join(dataset_dir, "wss_synthetic.json")
    stamp = os.stat(marker).st_mtime_ns
    assert ensure_synthetic_dataset(root) == dataset_dir
    assert os.stat(marker).st_mtime_ns == stamp  # not regenerated
    assert [n for n in os.listdir(root) if n != "wss_synthetic"] == []  # no temp folder left
    with open(marker) as f:
        info = json.load(f)
    assert info["splits"] == SPLIT_SIZES and info["classes"] == list(SYNTHETIC_CLASSES)


def test_stale_dataset_is_regenerated(tmp_path):
    root = str(tmp_path)
    dataset_dir = ensure_synthetic_dataset(root)
    marker = os.path.join(dataset_dir, "wss_synthetic.json")
    with open(marker, "w") as f:
        json.dump({"version": -1, "seed": 0}, f)
    os.remove(os.path.join(dataset_dir, "JPEGImages", "syn_000000.jpg"))
    ensure_synthetic_dataset(root)
    assert os.path.exists(os.path.join(dataset_dir, "JPEGImages", "syn_000000.jpg"))


@pytest.mark.parametrize("split", ["train", "val"])
def test_registration(split, synthetic_dir):
    name = f"wss_synthetic_{split}"
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == SPLIT_SIZES[split]
    assert os.path.dirname(os.path.dirname(dicts[0]["file_name"])) == synthetic_dir
    assert set(dicts[0]) == {"file_name", "sem_seg_file_name", "image_id"}
    meta = MetadataCatalog.get(name)
    assert meta.stuff_classes == list(SYNTHETIC_CLASSES)
    assert meta.ignore_label == 255
    assert meta.evaluator_type == "sem_seg"
    assert len(meta.stuff_colors) == len(SYNTHETIC_CLASSES)
