"""
SPML's inputs through the weak-label mapper (docs/spml.md §3, §4.1): over-segmentation files
and their fallback, dilation of scribbles and points, tags from the full weak label, and the
CAM-derived stage-A labels of tags and boxes.
"""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T

from wss_d2 import get_wss_cfg
from wss_d2.data import WeakLabelDatasetMapper
from wss_d2.data.augmentation import RandomScale
from wss_d2.data.config import WEAK_LABEL_INPUT_DEFAULTS, add_weak_label_input_config
from wss_d2.data.datasets.pascal_voc import load_voc_weak_labels
from wss_d2.data.datasets.pseudo_labels import register_pseudo_label_dataset
from wss_d2.data.datasets.registration import register_sem_seg_dataset
from wss_d2.data.datasets.synthetic import OVERSEG_DIR, ensure_synthetic_overseg, generate_synthetic_dataset
from wss_d2.data.weak_labels.cams import write_irn_cams
from wss_d2.data.weak_labels.dilation import dilate_sparse_labels
from wss_d2.data.weak_labels.overseg import felzenszwalb_overseg, read_overseg, write_overseg
from wss_d2.refinement import box_cam_labels, tag_cam_labels

H, W, K = 48, 64, 21


def _coordinate_image(path):
    """red = 20 + 3x, green = 20 + 3y: every output pixel tells where it came from."""
    ys, xs = np.mgrid[0:H, 0:W]
    image = np.stack([20 + 3 * xs, 20 + 3 * ys, np.full_like(xs, 7)], axis=2).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


def _save(path, array):
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)
    return path


class _FixedCrop(T.Augmentation):
    def __init__(self, x0, y0, w, h):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        return T.CropTransform(self.x0, self.y0, self.w, self.h)


def _mapper(weak_label="full", augmentations=(), **kwargs):
    return WeakLabelDatasetMapper(
        True, augmentations=list(augmentations), image_format="RGB", num_classes=K, weak_label=weak_label, **kwargs
    )


@pytest.fixture
def image_file(tmp_path):
    return _coordinate_image(str(tmp_path / "img.png"))


@pytest.fixture
def column_overseg(tmp_path):
    """Region id = the pixel's column (0..63): the output tells which column a pixel came from."""
    return write_overseg(np.tile(np.arange(W), (H, 1)), str(tmp_path / "overseg.png"))


# ----------------------------------------------------------------------- over-segmentations
def test_overseg_png_round_trip_and_range(tmp_path):
    regions = np.random.RandomState(0).randint(0, 255, (H, W))
    path = write_overseg(regions, str(tmp_path / "a.png"))
    back = read_overseg(path, (H, W, 3), "img.jpg")
    assert back.dtype == np.int64 and (back == regions).all()
    assert Image.open(path).mode == "L"
    with pytest.raises(ValueError, match="255 is padding"):
        write_overseg(np.full((4, 4), 255), str(tmp_path / "b.png"))


def test_overseg_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_overseg(missing)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="corrupt.png"):
        read_overseg(str(corrupt))
    sixteen = str(tmp_path / "sixteen.png")
    Image.fromarray(np.full((4, 4), 300, np.uint16)).save(sixteen)
    with pytest.raises(ValueError, match="sixteen.png.*8-bit"):
        read_overseg(sixteen)
    small = write_overseg(np.zeros((4, 4)), str(tmp_path / "small.png"))
    with pytest.raises(ValueError, match="small.png is 4x4.*img.jpg is 64x48"):
        read_overseg(small, (H, W, 3), "img.jpg")


def test_mapper_overseg_errors_name_the_file(tmp_path, image_file):
    mapper = _mapper(overseg=True)
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        mapper({"file_name": image_file, "overseg_file_name": str(tmp_path / "nowhere.png")})
    with pytest.raises(ValueError, match="no overseg_file_name.*INPUT.WEAK.OVERSEG"):
        mapper({"file_name": image_file})
    small = write_overseg(np.zeros((H // 2, W)), str(tmp_path / "half.png"))
    with pytest.raises(ValueError, match="half.png is 64x24"):
        mapper({"file_name": image_file, "overseg_file_name": small})
    # off by default: the field is ignored; at inference a dict without one is fine
    assert "overseg" not in _mapper()({"file_name": image_file, "overseg_file_name": str(tmp_path / "nowhere.png")})
    test_mapper = WeakLabelDatasetMapper(False, augmentations=[], image_format="RGB", num_classes=K, overseg=True)
    assert "overseg" not in test_mapper({"file_name": image_file})


def test_mapper_overseg_follows_the_image_through_scale_crop_flip_and_pad(image_file, column_overseg):
    mapper = _mapper(
        augmentations=[RandomScale(0.5, 2.0), T.RandomCrop("absolute", (40, 40)), T.RandomFlip(prob=0.5)],
        overseg=True, pad_to_size=(40, 40),
    )
    np.random.seed(0)
    flips = 0
    for _ in range(40):
        out = mapper({"file_name": image_file, "overseg_file_name": column_overseg})
        overseg, valid = out["overseg"].numpy(), out["valid_mask"].numpy()
        assert out["overseg"].dtype == torch.int64 and overseg.shape == (40, 40)
        assert (overseg[~valid] == 255).all()  # padding is void
        assert (overseg[valid] < W).all()
        rows, cols = np.nonzero(valid)
        x = (out["image"].numpy()[0, rows, cols].astype(np.float64) - 20) / 3  # decoded source column
        assert np.abs(overseg[rows, cols] - x).max() <= 1.7  # nearest vs bilinear, uint8 rounding
        flips += int(overseg[rows[0], cols[0]] > overseg[rows[0], cols[valid[rows[0]].sum() - 1]])
    assert 5 < flips < 35  # both orientations were seen


def test_felzenszwalb_fallback_covers_the_image_with_few_ids(tmp_path):
    from wss_d2.data.datasets.synthetic import render_synthetic_image

    image, _ = render_synthetic_image(np.random.default_rng([0, 3]))
    regions = felzenszwalb_overseg(image)
    assert regions.shape == image.shape[:2] and regions.dtype == np.uint8
    n = int(regions.max()) + 1
    assert 2 <= n <= 255 and set(np.unique(regions).tolist()) == set(range(n))  # consecutive, every pixel
    noise = np.random.RandomState(0).randint(0, 255, (120, 120, 3)).astype(np.uint8)
    fine = felzenszwalb_overseg(noise, scale=1.0, sigma=0.0, min_size=1)  # scale doubles until <= 255 regions
    assert fine.max() < 255
    path = write_overseg(regions, str(tmp_path / "r.png"))
    assert (read_overseg(path) == regions).all()


def test_make_weak_labels_writes_overseg_for_data_without_masks(tmp_path):
    import datasets.make_weak_labels as make_weak_labels

    records = []
    for i in range(2):
        path = str(tmp_path / f"im{i}.png")
        Image.fromarray(np.random.RandomState(i).randint(0, 255, (30, 40, 3)).astype(np.uint8)).save(path)
        records.append({"file_name": path, "image_id": f"im{i}"})
    name = "_test_spml_images_only"
    if name not in DatasetCatalog.list():
        register_sem_seg_dataset(name, lambda: [dict(r) for r in records], ["bg", "a"], None)
    summary = make_weak_labels.main(["--dataset", name, "--output", str(tmp_path / "out"), "--kinds", "overseg"])
    folder = tmp_path / "out" / "overseg_felzenszwalb"
    assert summary["overseg"]["images"] == 2
    assert json.loads((folder / "overseg.json").read_text())["parameters"] == {"scale": 200.0, "sigma": 0.8, "min_size": 50}
    for i in range(2):
        assert read_overseg(str(folder / f"im{i}.png"), (30, 40)).max() < 255


def test_synthetic_overseg_and_voc_dicts_name_it(tmp_path):
    dataset_dir = str(tmp_path / "syn")
    generate_synthetic_dataset(dataset_dir, split_sizes={"train": 3, "val": 1})
    assert ensure_synthetic_overseg(dataset_dir) == dataset_dir
    dicts = load_voc_weak_labels(dataset_dir, "train", "points", sparse_dir="point/segcls", overseg_dir=OVERSEG_DIR)
    for d in dicts:
        assert d["overseg_file_name"] == os.path.join(dataset_dir, OVERSEG_DIR, d["image_id"] + ".png")
        image = np.asarray(Image.open(d["file_name"]))
        assert read_overseg(d["overseg_file_name"], image.shape).max() < 255
    assert MetadataCatalog.get("wss_synthetic_train_points").overseg_dir == OVERSEG_DIR
    assert MetadataCatalog.get("voc_2012_train_aug_scribbles").overseg_dir == "hed"


def test_densepose_third_column_is_the_overseg(tmp_path):
    from wss_d2.data.datasets.densepose import load_densepose_parts

    for sub in ("images/train2014", "points"):
        os.makedirs(tmp_path / sub)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "images/train2014/a.jpg")
    _save(str(tmp_path / "points/a.png"), np.zeros((4, 4)))
    (tmp_path / "list.txt").write_text("images/train2014/a.jpg points/a.png seginst/pmi_0.1_256/a.png\n")
    d = load_densepose_parts(str(tmp_path), "list.txt", "sparse_sem_seg_file_name", with_overseg=True)[0]
    assert d["overseg_file_name"] == os.path.join(str(tmp_path), "seginst/pmi_0.1_256/a.png")


# -------------------------------------------------------------------------------- dilation
def test_dilation_by_3_and_6_on_hand_made_labels():
    sparse = np.full((12, 12), K, np.uint8)
    sparse[5, 5] = 2  # a one-pixel scribble piece
    sparse[4, 6] = 255  # void next to it stays void
    sparse[6, 4] = 7  # another class's label stays
    out = dilate_sparse_labels(sparse, 3, K)
    expected = np.full((12, 12), K, np.uint8)
    expected[4:7, 4:7] = 2  # 2's 3x3 square
    expected[5:8, 3:6] = 7  # 7's square; where they meet the larger id wins
    expected[5, 5] = 2  # labelled pixels keep their class
    expected[4, 6] = 255  # void stays void
    assert (out == expected).all()
    point = np.full((12, 12), K, np.uint8)
    point[5, 5] = 0  # a background click
    six = dilate_sparse_labels(point, 6, K)
    assert set(zip(*np.nonzero(six == 0))) == {(r, c) for r in range(3, 9) for c in range(3, 9)}
    assert (dilate_sparse_labels(point, 0, K) == point).all()


def test_mapper_dilates_scribbles_and_points_only_when_asked(tmp_path, image_file):
    label = np.full((H, W), K, np.uint8)
    label[10, 10], label[30, 40] = 3, 0
    path = _save(str(tmp_path / "s.png"), label)
    record = {"file_name": image_file, "sparse_sem_seg_file_name": path}
    assert ((_mapper("scribbles")(record)["sparse_sem_seg"].numpy() < K).sum()) == 2  # default off
    scribbles = _mapper("scribbles", scribble_dilation=3)(record)["sparse_sem_seg"].numpy()
    assert (scribbles[9:12, 9:12] == 3).all() and (scribbles < K).sum() == 18
    points = _mapper("points", point_dilation=6, scribble_dilation=3)(record)["sparse_sem_seg"].numpy()
    assert (points[8:14, 8:14] == 3).all() and (points[28:34, 38:44] == 0).all() and (points < K).sum() == 72
    # dilated points follow the image like scribbles: a 2x upscale doubles the square
    up = _mapper("points", [RandomScale(2.0, 2.0)], point_dilation=6)(record)["sparse_sem_seg"].numpy()
    assert (up == 3).sum() == 144


# ------------------------------------------------------------------ tags from the full label
def test_tags_come_from_the_full_label_before_the_crop(tmp_path, image_file):
    label = np.full((H, W), 0, np.uint8)
    label[5:15, 5:15] = 3  # only in the left part
    label[30:40, 40:60] = K  # unlabelled (a CAM label)
    path = _save(str(tmp_path / "cam.png"), label)
    crop = [_FixedCrop(32, 0, 32, 48)]  # the right half: class 3 is cropped away
    record = {"file_name": image_file, "sparse_sem_seg_file_name": path}
    out = _mapper("cam_labels", crop, tags_from_full_label=True)(record)
    assert not (out["sparse_sem_seg"].numpy() == 3).any()
    assert np.flatnonzero(out["image_labels"].numpy()).tolist() == [0, 3]  # background slot, then foreground
    # a dense pseudo label gives tags only with the switch
    dense = {"file_name": image_file, "pseudo_sem_seg_file_name": _save(str(tmp_path / "d.png"), np.where(label == K, 255, label))}
    assert "image_labels" not in _mapper("pseudo", crop)(dense)
    assert np.flatnonzero(_mapper("pseudo", crop, tags_from_full_label=True)(dense)["image_labels"].numpy()).tolist() == [0, 3]


def test_config_keys_and_their_defaults():
    cfg = get_wss_cfg()
    mapper = WeakLabelDatasetMapper(cfg, True, dataset_names=[])
    assert (mapper.overseg, mapper.tags_from_full_label, mapper.scribble_dilation, mapper.point_dilation) == (False, False, 0, 0)
    add_weak_label_input_config(cfg)
    for (section, key), default in WEAK_LABEL_INPUT_DEFAULTS.items():
        assert cfg.INPUT[section][key] == default
    cfg.INPUT.WEAK.OVERSEG, cfg.INPUT.SPARSE.SCRIBBLE_DILATION, cfg.INPUT.SPARSE.POINT_DILATION = True, 3, 6
    mapper = WeakLabelDatasetMapper(cfg, True, dataset_names=[])
    assert (mapper.overseg, mapper.scribble_dilation, mapper.point_dilation) == (True, 3, 6)


# ---------------------------------------------------------------------- CAM-derived labels
def test_tag_cam_labels_hand_computed():
    # 1 x 4 image; classes 5 and 9, each CAM with its maximum 1 somewhere
    cam5 = [1.0, 0.1, 0.0, 0.4]
    cam9 = [0.0, 0.1, 1.0, 0.45]
    out = tag_cam_labels([5, 9], np.array([[cam5], [cam9]]), K)
    # pixel 0: m = 1, b = 0 -> 5; pixel 1: b = 0.9^6 = 0.531 vs 0.1, 0.1 -> background;
    # pixel 2: -> 9; pixel 3: b = 0.55^6 = 0.0277, shares 0.033, 0.45/0.8777 = 0.513 -> 9
    assert out.tolist() == [[5, 0, 9, 9]]
    # five classes at 0.5: b = 0.5^6 = 0.015625, each share 0.5 / 2.515625 = 0.199 < 0.2 -> unlabelled
    cams = np.full((5, 1, 2), 0.5)
    cams[:, 0, 1] = 1.0  # the maxima
    out = tag_cam_labels([1, 2, 3, 4, 5], cams, K)
    assert out[0, 0] == K
    # the background map of a SIPE file is ignored; CAMs are max-normalised first
    scaled = tag_cam_labels([0, 5, 9], np.array([[[0.3] * 4], [cam5], [cam9]]) * 3.0, K)
    assert scaled.tolist() == [[5, 0, 9, 9]]


def test_box_cam_labels_hand_computed():
    cam3 = np.arange(10, dtype=np.float64)[None]  # 1 x 10 image
    cam7 = np.array([[0, 0, 0, 0, 4, 0, 0, 8, 0, 0]], np.float64)
    boxes = [[0, 0, 6, 1], [4, 0, 8, 1]]  # XYXY: columns 0..5 (class 3) and 4..7 (class 7)
    out = box_cam_labels([3, 7], np.stack([cam3, cam7]), boxes, [3, 7], K)
    # box 3 normalised: [0, .2, .4, .6, .8, 1]; box 7 over columns 4..7: [.5, 0, 0, 1]
    # columns 4, 5: box 3 (.8, 1) beats box 7 (.5, 0); column 6: box 7's 0 < .5; 8, 9 outside
    assert out.tolist() == [[K, K, K, 3, 3, 3, K, 7, 0, 0]]
    with pytest.raises(ValueError, match="class 4"):
        box_cam_labels([3, 7], np.stack([cam3, cam7]), boxes, [3, 4], K)


def test_make_cam_labels_writes_and_registers_a_sparse_set(tmp_path, image_file, column_overseg):
    import datasets.make_cam_labels as make_cam_labels

    source = "_test_spml_tags_source"
    records = [{"file_name": image_file, "image_id": "img", "image_labels": [5], "overseg_file_name": column_overseg}]
    if source not in DatasetCatalog.list():
        register_sem_seg_dataset(source, lambda: [dict(r) for r in records], ["c"] * K, None, weak_label="tags")
    cams = np.zeros((2, H, W), np.float32)
    cams[1, :, :20] = 1.0  # class 5 on the left
    cams[1, :, 20:24] = 0.3  # a weak band
    write_irn_cams(str(tmp_path / "cams" / "img.npy"), [0, 5], cams)
    output = str(tmp_path / "cam_tags")
    summary = make_cam_labels.main(["--cams", str(tmp_path / "cams"), "--dataset", source, "--kind", "tags", "--output", output])
    assert summary["unlabeled_value"] == K and summary["parameters"] == {"alpha": 6.0, "threshold": 0.2}
    label = np.asarray(Image.open(os.path.join(output, "img.png")))
    assert (label[:, :20] == 5).all() and (label[:, 24:] == 0).all()
    register_pseudo_label_dataset("_test_spml_cam_tags", source, output)
    meta = MetadataCatalog.get("_test_spml_cam_tags")
    assert (meta.weak_label, meta.sparse_unlabeled_value, meta.sparse_void_value) == ("cam_labels", K, 255)
    (record,) = DatasetCatalog.get("_test_spml_cam_tags")
    assert record["overseg_file_name"] == column_overseg
    out = _mapper("cam_labels", overseg=True, tags_from_full_label=True)(record)
    assert (out["sparse_sem_seg"].numpy() == label).all() and out["overseg"].shape == (H, W)
    assert np.flatnonzero(out["image_labels"].numpy()).tolist() == [0, 5]


def test_cam_labels_are_resampled_like_dense_maps(tmp_path, image_file):
    label = np.full((H, W), K, np.uint8)
    label[:, :30] = 5
    label[10:20, 40:50] = 0
    record = {"file_name": image_file, "sparse_sem_seg_file_name": _save(str(tmp_path / "c.png"), label)}
    out = _mapper("cam_labels", [RandomScale(0.5, 0.5)])(record)["sparse_sem_seg"].numpy()
    nearest = T.ResizeTransform(H, W, H // 2, W // 2, Image.BILINEAR).apply_segmentation(label)
    assert (out == nearest).all()  # no labelled pixel is placed over an unlabelled one


def test_make_cam_labels_boxes(tmp_path, image_file):
    import datasets.make_cam_labels as make_cam_labels

    from detectron2.structures import BoxMode

    source = "_test_spml_boxes_source"
    ann = {"bbox": [10, 0, 20, 48], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 4}  # columns 10..29
    if source not in DatasetCatalog.list():
        register_sem_seg_dataset(source, lambda: [{"file_name": image_file, "image_id": "img", "annotations": [ann]}],
                                 ["c"] * K, None, weak_label="boxes")
    cams = np.zeros((1, H, W), np.float32)
    cams[0, :, 20:30] = 1.0  # the right half of the box is the object
    write_irn_cams(str(tmp_path / "cams" / "img.npy"), [4], cams)
    output = str(tmp_path / "cam_boxes")
    make_cam_labels.main(["--cams", str(tmp_path / "cams"), "--dataset", source, "--kind", "boxes", "--output", output])
    label = np.asarray(Image.open(os.path.join(output, "img.png")))
    assert (label[:, :10] == 0).all() and (label[:, 30:] == 0).all()  # outside the box: background
    assert (label[:, 10:20] == K).all() and (label[:, 20:30] == 4).all()
    with pytest.raises(SystemExit, match="--alpha applies to --kind tags only"):
        make_cam_labels.main(["--cams", "x", "--dataset", source, "--kind", "boxes", "--output", output, "--alpha", "2"])


def test_densepose_flip_remaps_parts_but_not_region_ids(tmp_path, image_file, column_overseg):
    from wss_d2.data.datasets.densepose_parts import FLIP_PART_MAP

    label = np.full((H, W), 15, np.uint8)
    label[5, 5], label[20, 50] = 2, 6  # right hand, right thigh
    record = {"file_name": image_file, "sparse_sem_seg_file_name": _save(str(tmp_path / "p.png"), label),
              "overseg_file_name": column_overseg}
    mapper = WeakLabelDatasetMapper(True, augmentations=[T.RandomFlip(prob=1.0)], image_format="RGB", num_classes=15,
                                    weak_label="points", flip_label_map=list(FLIP_PART_MAP), overseg=True, point_dilation=6)
    out = mapper(record)
    sparse, overseg = out["sparse_sem_seg"].numpy(), out["overseg"].numpy()
    assert (overseg == np.tile(np.arange(W)[::-1], (H, 1))).all()  # mirrored, ids unchanged
    assert (sparse[3:9, W - 9:W - 3] == 3).all() and (sparse[18:24, W - 54:W - 48] == 7).all()  # left hand, left thigh


def test_cam_label_sets_may_label_every_pixel_but_not_use_a_foreign_unlabelled_value(tmp_path):
    from wss_d2.data.sparse_label_check import check_sparse_label_encoding
    from wss_d2.data.writers import write_label_png

    K = 6
    files = []
    for i in range(3):  # CAM labels of images with one or two classes: every pixel labelled
        label = np.zeros((8, 8), np.uint8)
        label[:, 4:] = 1 + i
        files.append(str(tmp_path / f"cam_{i}.png"))
        write_label_png(label, files[-1])
    shares = check_sparse_label_encoding(files, K, K, 255, name="dataset cams", dense_labels=True)
    assert shares["unlabelled"] == 0 and shares["labelled"] == 1.0
    # the same files as hand-made sparse labels: no unlabelled value is an error
    with pytest.raises(ValueError, match="no pixel has the unlabelled value 6"):
        check_sparse_label_encoding(files, K, K, 255, name="dataset sparse")
    # files that mark unlabelled pixels with 200 while the metadata says 6: refused, naming 200 and a file
    label = np.zeros((8, 8), np.uint8)
    label[2:5] = 200
    write_label_png(label, str(tmp_path / "cam_3.png"))
    with pytest.raises(ValueError, match=r"the values \[200\].*cam_0\.png|cam_0\.png.*the values \[200\]"):
        check_sparse_label_encoding(files + [str(tmp_path / "cam_3.png")], K, K, 255, name="dataset cams",
                                    dense_labels=True)
