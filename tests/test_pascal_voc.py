import os

import numpy as np
import pytest
from PIL import Image

from wss_d2.data.datasets import load_voc_sem_seg, read_split_ids
from wss_d2.data.readers import read_label_map


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
from wss_d2.data import WeakLabelDatasetMapper  # noqa: E402
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
    mapped = WeakLabelDatasetMapper(cfg, is_train=False)(DatasetCatalog.get(name)[0])
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


# --- weak-label registrations ----------------------------------------------------------------

WEAK_NAMES = ("tags", "boxes", "scribbles", "scribbles_rloss", "points", "points_json", "pseudo")


def _weak_voc_layout(voc):
    """The real weak-label files next to the fixture: cls_labels.npy, Annotations XML, AGMM
    (unlabelled 21) and rloss (unlabelled 255) PNGs, What's-the-Point JSON, pseudo labels."""
    import json
    import shutil

    from wss_d2.data.weak_labels.simulate import write_weak_labels

    _real_voc_layout(voc)
    records = load_voc_sem_seg(voc, "train_aug", label_dir="SegmentationClassAug")
    write_weak_labels(records, voc, kinds=("tags", "boxes", "points", "scribbles"), num_classes=21,
                      class_names=VOC_CLASSES, points_per_object=2)
    os.makedirs(os.path.join(voc, "pascal_2012_scribble"))
    for r in records:
        scribble = np.asarray(Image.open(os.path.join(voc, "scribble", "seginst", r["image_id"] + ".png"))).copy()
        scribble[scribble == 21] = 255
        Image.fromarray(scribble, mode="L").save(os.path.join(voc, "pascal_2012_scribble", r["image_id"] + ".png"))
    points = {r["image_id"]: [{"x": 6.4, "y": 7.6, "cls": 15, "rank": 1}, {"x": 704.0, "y": 3.0, "cls": 1, "rank": 1}]
              for r in records}
    with open(os.path.join(voc, "voc_whats_the_point.json"), "w") as f:
        json.dump(points, f)
    with open(os.path.join(voc, "voc_whats_the_point_bg_from_scribbles.json"), "w") as f:
        json.dump({TRAIN_IDS[0]: [{"x": 1, "y": 28, "cls": 0}]}, f)
    shutil.copytree(os.path.join(voc, "SegmentationClassAug"), os.path.join(voc, "pseudo_labels"))
    return records


def test_voc_weak_label_registrations_load_and_map(tmp_path, monkeypatch):
    voc = str(tmp_path / "VOC2012")
    records = _weak_voc_layout(voc)
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    mapped = {}
    for suffix in WEAK_NAMES:
        name = f"voc_2012_train_aug_{suffix}"
        dicts = DatasetCatalog.get(name)
        assert [d["image_id"] for d in dicts] == list(TRAIN_IDS + AUG_ONLY_IDS)
        assert not any("sem_seg_file_name" in d for d in dicts), "weak sets must not carry the GT"
        cfg = get_wss_cfg(MAIN_CONFIG, ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "21", "DATASETS.TRAIN", f"('{name}',)"])
        mapper = WeakLabelDatasetMapper(cfg, is_train=False, dataset_names=[name])
        mapped[suffix] = [mapper(d) for d in dicts]
    for record, i in zip(records, range(3)):
        gt = read_label_map(record["sem_seg_file_name"])
        classes = sorted(set(np.unique(gt).tolist()) - {0, 255})
        tags = mapped["tags"][i]["image_labels"].numpy()
        assert np.flatnonzero(tags).tolist() == [0] + classes
        assert sorted(set(mapped["boxes"][i]["instances"].gt_classes.tolist())) == classes
        # AGMM-style and rloss-style files of the same scribbles map to the same internal labels
        agmm, rloss = (mapped[k][i]["sparse_sem_seg"].numpy() for k in ("scribbles", "scribbles_rloss"))
        assert np.array_equal(agmm, rloss) and set(np.unique(agmm).tolist()) <= set(classes) | {0, 21}
        assert (agmm[agmm < 21] == gt[agmm < 21]).all()
        points = mapped["points"][i]["sparse_sem_seg"].numpy()
        assert (points[points < 21] == gt[points < 21]).all()
        json_points = mapped["points_json"][i]["points"].numpy()
        assert json_points[0].tolist() == pytest.approx([6.4, 7.6, 15])
        assert len(json_points) == (2 if i == 0 else 1)  # x=704 dropped; a background point for the first
        assert np.array_equal(mapped["pseudo"][i]["sem_seg"].numpy(), gt)


def test_voc_weak_label_errors_name_the_file(tmp_path, monkeypatch):
    voc = str(tmp_path / "VOC2012")
    _weak_voc_layout(voc)
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    os.remove(os.path.join(voc, "scribble", "seginst", AUG_ONLY_IDS[0] + ".png"))
    with pytest.raises(FileNotFoundError, match=f"scribble/seginst/{AUG_ONLY_IDS[0]}.png"):
        DatasetCatalog.get("voc_2012_train_aug_scribbles")
    from wss_d2.data.weak_labels import write_image_tags

    write_image_tags(os.path.join(voc, "cls_labels.npy"), {TRAIN_IDS[0]: [15]}, 20)
    with pytest.raises(KeyError, match=r"cls_labels.npy has no entry for 2 images"):
        DatasetCatalog.get("voc_2012_train_aug_tags")
    np.save(os.path.join(voc, "cls_labels.npy"), {i: np.zeros(21, np.float32) for i in TRAIN_IDS + AUG_ONLY_IDS})
    with pytest.raises(ValueError, match="has length 21, expected 20"):
        DatasetCatalog.get("voc_2012_train_aug_tags")


SHORTENED_RATIOS = ("0.8", "0.5", "0.3")


def _shortened_scribble_layout(voc, records):
    """SPML's scribble/dilate_3_<ratio>/<id>.png (docs/datasets.md §3.3): 255 canvas, class values on
    the (already dilated) strokes; each ratio keeps the first `ratio` of every image's labelled rows."""
    for ratio in SHORTENED_RATIOS:
        folder = os.path.join(voc, "scribble", f"dilate_3_{ratio}")
        os.makedirs(folder)
        for r in records:
            scribble = np.asarray(Image.open(os.path.join(voc, "scribble", "seginst", r["image_id"] + ".png"))).copy()
            scribble[scribble == 21] = 255
            rows = np.flatnonzero((scribble != 255).any(axis=1))
            if len(rows):
                scribble[rows[0] + max(1, int(len(rows) * float(ratio))):] = 255
            Image.fromarray(scribble, mode="L").save(os.path.join(folder, r["image_id"] + ".png"))


def test_voc_shortened_scribble_registrations(tmp_path, monkeypatch):
    voc = str(tmp_path / "VOC2012")
    records = _weak_voc_layout(voc)
    _shortened_scribble_layout(voc, records)
    monkeypatch.setenv("WSS_DATASETS", str(tmp_path))
    for ratio in SHORTENED_RATIOS:
        name = f"voc_2012_train_aug_scribbles_{ratio}"
        meta = MetadataCatalog.get(name)
        assert meta.weak_label == "scribbles"
        assert meta.sparse_unlabeled_value == 255 and meta.sparse_void_value is None
        dicts = DatasetCatalog.get(name)
        assert [d["image_id"] for d in dicts] == list(TRAIN_IDS + AUG_ONLY_IDS)
        assert not any("sem_seg_file_name" in d for d in dicts)
        folder = os.path.join(voc, "scribble", f"dilate_3_{ratio}")
        assert all(d["sparse_sem_seg_file_name"] == os.path.join(folder, d["image_id"] + ".png") for d in dicts)
        # the files are dilated already: mapped without dilation, 255 becomes unlabelled (K = 21)
        cfg = get_wss_cfg(MAIN_CONFIG, ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "21", "DATASETS.TRAIN", f"('{name}',)",
                                        "INPUT.SPARSE.SCRIBBLE_DILATION", "0"])
        mapper = WeakLabelDatasetMapper(cfg, is_train=False, dataset_names=[name])
        for d, record in zip(dicts, records):
            raw = read_label_map(d["sparse_sem_seg_file_name"])
            sparse = mapper(d)["sparse_sem_seg"].numpy()
            assert np.array_equal(sparse, np.where(raw == 255, 21, raw))
            gt = read_label_map(record["sem_seg_file_name"])
            assert (sparse[sparse < 21] == gt[sparse < 21]).all()
    # shorter scribbles label fewer pixels
    counts = [sum((read_label_map(d["sparse_sem_seg_file_name"]) != 255).sum()
                  for d in DatasetCatalog.get(f"voc_2012_train_aug_scribbles_{ratio}")) for ratio in SHORTENED_RATIOS]
    assert counts[0] >= counts[1] >= counts[2] > 0
    os.remove(os.path.join(voc, "scribble", "dilate_3_0.5", AUG_ONLY_IDS[0] + ".png"))
    with pytest.raises(FileNotFoundError, match=f"scribble/dilate_3_0.5/{AUG_ONLY_IDS[0]}.png"):
        DatasetCatalog.get("voc_2012_train_aug_scribbles_0.5")


@pytest.mark.parametrize("percent, ratio", [("80", "0.8"), ("50", "0.5"), ("30", "0.3")])
def test_shortened_scribble_configs_train_spml_without_a_second_dilation(percent, ratio):
    from .conftest import CONFIGS

    cfg = get_wss_cfg(os.path.join(CONFIGS, "voc", f"spml_R101_scribbles_{percent}.yaml"))
    base = get_wss_cfg(os.path.join(CONFIGS, "voc", "spml_R101_scribbles.yaml"))
    assert tuple(cfg.DATASETS.TRAIN) == (f"voc_2012_train_aug_scribbles_{ratio}",)
    assert cfg.INPUT.SPARSE.SCRIBBLE_DILATION == 0 and base.INPUT.SPARSE.SCRIBBLE_DILATION == 3
    assert cfg.MODEL.SPML == base.MODEL.SPML  # the same setting and loss weights
    assert cfg.OUTPUT_DIR == f"output/voc/spml_R101_scribbles_{percent}"
