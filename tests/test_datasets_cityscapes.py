"""Cityscapes trainId and click registrations, on a fixture in the real Cityscapes layout."""
import os
import re

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from wss_d2.data import read_label_map
from wss_d2.data.datasets import cityscapes

from .test_datasets_coco import map_dict

# city: stems; bochum sorts after aachen, frames within a city are sorted too
TRAIN = {"bochum": ("bochum_000000_000313",), "aachen": ("aachen_000001_000019", "aachen_000000_000019")}
VAL = {"frankfurt": ("frankfurt_000000_000294",)}
TRAIN_ORDER = ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"]
H, W = 24, 32  # not square, so height/width cannot be swapped unnoticed
APPENDIX_E = [  # trainId order: name, colour
    ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)), ("fence", (190, 153, 153)), ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)), ("traffic sign", (220, 220, 0)), ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)), ("sky", (70, 130, 180)), ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)), ("car", (0, 0, 142)), ("truck", (0, 0, 70)), ("bus", (0, 60, 100)),
    ("train", (0, 80, 100)), ("motorcycle", (0, 0, 230)), ("bicycle", (119, 11, 32)),
]


def _train_ids(seed):
    label = np.full((H, W), 2, np.uint8)  # building
    label[2:10, 3:12] = 0  # road
    label[12:20, 15:30] = 18  # bicycle, the largest trainId
    label[0, :] = 255  # not evaluated
    label[20:, :5] = 11 + seed
    return label


def _clicks(seed, n):
    """AGMM convention: 19 = unlabelled, trainIds on clicked pixels, 255 void."""
    clicks = np.full((H, W), 19, np.uint8)
    clicks[0, :] = 255
    spread = (np.arange(n) * ((H * W - W) // n) + seed) % (H * W - W) + W  # n distinct pixels, rows 1..
    rows, cols = np.unravel_index(spread, (H, W))
    clicks[rows, cols] = _train_ids(seed)[rows, cols]
    return clicks


def _cityscapes_layout(datasets_root):
    root = os.path.join(datasets_root, "cityscapes")
    rng = np.random.RandomState(0)
    seed = 0
    for split, cities in (("train", TRAIN), ("val", VAL)):
        for city, stems in cities.items():
            os.makedirs(os.path.join(root, "leftImg8bit", split, city))
            os.makedirs(os.path.join(root, "gtFine", split, city))
            for stem in stems:
                Image.fromarray(rng.randint(0, 255, (H, W, 3), np.uint8)).save(
                    os.path.join(root, "leftImg8bit", split, city, stem + "_leftImg8bit.png")
                )
                Image.fromarray(_train_ids(seed), mode="L").save(
                    os.path.join(root, "gtFine", split, city, stem + "_gtFine_labelTrainIds.png")
                )
                if split == "train":
                    for n in cityscapes.CLICK_COUNTS:
                        os.makedirs(os.path.join(root, f"{n}clicks"), exist_ok=True)
                        Image.fromarray(_clicks(seed, n), mode="L").save(
                            os.path.join(root, f"{n}clicks", stem + "_gtFine_labelTrainIds.png")
                        )
                seed += 1
    return root


def _seed(stem):
    """The seed _cityscapes_layout used for `stem` (cities in dict order, then listed order)."""
    order = [s for cities in (TRAIN, VAL) for stems in cities.values() for s in stems]
    return order.index(stem)


@pytest.fixture
def cs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    return _cityscapes_layout(str(tmp_path))


def test_names_registered_once():
    registered = DatasetCatalog.list()
    assert set(cityscapes.CITYSCAPES_DATASET_NAMES) == {
        "cityscapes_wss_sem_seg_train",
        "cityscapes_wss_sem_seg_val",
        "cityscapes_fine_sem_seg_train_20clicks",
        "cityscapes_fine_sem_seg_train_50clicks",
        "cityscapes_fine_sem_seg_train_100clicks",
    }
    for name in cityscapes.CITYSCAPES_DATASET_NAMES:
        assert registered.count(name) == 1
    with pytest.raises(AssertionError, match="already registered"):
        cityscapes.register_cityscapes()
    # detectron2's own sets are untouched
    assert MetadataCatalog.get("cityscapes_fine_sem_seg_train").evaluator_type == "cityscapes_sem_seg"


def test_metadata():
    for name in cityscapes.CITYSCAPES_DATASET_NAMES:
        meta = MetadataCatalog.get(name)
        assert meta.stuff_classes == [name for name, _ in APPENDIX_E]
        assert [tuple(c) for c in meta.stuff_colors] == [c for _, c in APPENDIX_E]
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg" and meta.background_class is None
        if name.endswith("clicks"):
            assert meta.weak_label == "clicks"
            assert (meta.sparse_unlabeled_value, meta.sparse_void_value) == (19, 255)
        else:
            assert meta.weak_label == "full"


def test_full_dicts(cs_root):
    dicts = DatasetCatalog.get("cityscapes_wss_sem_seg_train")
    assert [d["image_id"] for d in dicts] == TRAIN_ORDER
    city = TRAIN_ORDER[2].split("_")[0]
    assert dicts[2] == {
        "file_name": os.path.join(cs_root, "leftImg8bit", "train", city, TRAIN_ORDER[2] + "_leftImg8bit.png"),
        "image_id": TRAIN_ORDER[2],
        "height": H,
        "width": W,
        "sem_seg_file_name": os.path.join(
            cs_root, "gtFine", "train", city, TRAIN_ORDER[2] + "_gtFine_labelTrainIds.png"
        ),
    }
    assert [d["image_id"] for d in DatasetCatalog.get("cityscapes_wss_sem_seg_val")] == list(VAL["frankfurt"])
    meta = MetadataCatalog.get("cityscapes_wss_sem_seg_val")
    assert meta.image_root == os.path.join(cs_root, "leftImg8bit", "val")
    assert meta.sem_seg_root == os.path.join(cs_root, "gtFine", "val")


def test_full_mapper_reads_raw_train_ids(cs_root):
    for d in DatasetCatalog.get("cityscapes_wss_sem_seg_train"):
        mapped = map_dict("cityscapes_wss_sem_seg_train", d)
        np.testing.assert_array_equal(mapped["sem_seg"].numpy(), _train_ids(_seed(d["image_id"])))


@pytest.mark.parametrize("n", cityscapes.CLICK_COUNTS)
def test_click_dicts(cs_root, n):
    name = f"cityscapes_fine_sem_seg_train_{n}clicks"
    dicts = DatasetCatalog.get(name)
    assert [d["image_id"] for d in dicts] == TRAIN_ORDER
    for d in dicts:
        assert "sem_seg_file_name" not in d and (d["height"], d["width"]) == (H, W)
        assert d["sparse_sem_seg_file_name"] == os.path.join(
            cs_root, f"{n}clicks", d["image_id"] + "_gtFine_labelTrainIds.png"
        )
        raw = read_label_map(d["sparse_sem_seg_file_name"])
        np.testing.assert_array_equal(raw, _clicks(_seed(d["image_id"]), n))
        # the mapper's internal convention equals the AGMM raw one: 0..18, 19 unlabelled, 255 void
        mapped = map_dict(name, d)
        np.testing.assert_array_equal(mapped["sparse_sem_seg"].numpy(), raw)
    assert MetadataCatalog.get(name).sparse_sem_seg_root == os.path.join(cs_root, f"{n}clicks")


def test_clicks_cover_edge_values(cs_root):
    raw = read_label_map(DatasetCatalog.get("cityscapes_fine_sem_seg_train_100clicks")[2]["sparse_sem_seg_file_name"])
    assert {0, 18, 19, 255} <= set(np.unique(raw).tolist())


def test_missing_click_file_is_named(cs_root):
    missing = os.path.join(cs_root, "50clicks", TRAIN_ORDER[1] + "_gtFine_labelTrainIds.png")
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        DatasetCatalog.get("cityscapes_fine_sem_seg_train_50clicks")
    assert len(DatasetCatalog.get("cityscapes_fine_sem_seg_train_20clicks")) == 3


def test_missing_click_folder_is_named(cs_root):
    os.rename(os.path.join(cs_root, "20clicks"), os.path.join(cs_root, "random_20clicks"))
    with pytest.raises(FileNotFoundError, match=re.escape(os.path.join(cs_root, "20clicks"))):
        DatasetCatalog.get("cityscapes_fine_sem_seg_train_20clicks")


def test_missing_train_ids_are_named(cs_root):
    missing = os.path.join(cs_root, "gtFine", "val", "frankfurt", VAL["frankfurt"][0] + "_gtFine_labelTrainIds.png")
    os.remove(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        DatasetCatalog.get("cityscapes_wss_sem_seg_val")


def test_unexpected_file_is_named(cs_root):
    stray = os.path.join(cs_root, "leftImg8bit", "val", "frankfurt", "frankfurt_000000_000294_gtFine_color.png")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(stray)
    with pytest.raises(ValueError, match=re.escape(stray)):
        DatasetCatalog.get("cityscapes_wss_sem_seg_val")


def test_corrupt_image_is_named(cs_root):
    bad = os.path.join(cs_root, "leftImg8bit", "val", "frankfurt", VAL["frankfurt"][0] + "_leftImg8bit.png")
    with open(bad, "wb") as f:
        f.write(b"not a png")
    with pytest.raises(ValueError, match=re.escape(bad)):
        DatasetCatalog.get("cityscapes_wss_sem_seg_val")


def test_missing_root_and_split_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="WSS_DATASETS") as e:
        DatasetCatalog.get("cityscapes_wss_sem_seg_train")
    assert str(tmp_path / "cityscapes") in str(e.value)
    os.makedirs(tmp_path / "cityscapes" / "leftImg8bit" / "val" / "frankfurt")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "cityscapes" / "leftImg8bit" / "train"))):
        DatasetCatalog.get("cityscapes_wss_sem_seg_train")
    with pytest.raises(FileNotFoundError, match="No Cityscapes images"):
        DatasetCatalog.get("cityscapes_wss_sem_seg_val")
