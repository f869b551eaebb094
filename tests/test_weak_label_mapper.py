"""
The weak-label mapper: every label kind follows the image through scale, crop and flip.

The fixture image encodes its own coordinates (red = 20 + 3 x, green = 20 + 3 y), a linear
ramp that bilinear resizing keeps linear, so any output pixel tells where in the original
image it came from. A label is at the right place when the original label at the decoded
position has the same class.
"""
import logging
import os

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from wss_d2 import get_wss_cfg
from wss_d2.data import WeakLabelDatasetMapper
from wss_d2.data.augmentation import RandomLongSide, RandomScale
from wss_d2.data.datasets.registration import register_sem_seg_dataset
from wss_d2.data.weak_labels.cams import write_irn_cams

H, W, K = 48, 64, 21
TOLERANCE = 1.7  # pixels: half an output pixel at scale 0.5, rounding, uint8 quantisation


def _coordinate_image(path):
    ys, xs = np.mgrid[0:H, 0:W]
    image = np.stack([20 + 3 * xs, 20 + 3 * ys, np.full_like(xs, 7)], axis=2).astype(np.uint8)
    Image.fromarray(image).save(path)
    return path


def _decode(image_chw, rows, cols):
    """Original (x, y) pixel coordinates of output pixels (rows, cols)."""
    image = image_chw.numpy().astype(np.float64)
    return (image[0, rows, cols] - 20) / 3, (image[1, rows, cols] - 20) / 3


def _save(path, array, mode="L"):
    image = Image.fromarray(array.astype(np.uint8), mode="L")
    if mode == "P":
        image = image.convert("P")
        image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    image.save(path)
    return path


def _point_map():
    """Single-pixel points at least 6 px apart (so each output pixel decodes to one point)."""
    label = np.full((H, W), K, np.uint8)
    rng = np.random.RandomState(0)
    points = []
    for r in range(3, H - 3, 7):
        for c in range(3, W - 3, 7):
            cls = int(rng.randint(0, K))
            label[r, c] = cls
            points.append((c, r, cls))
    return label, np.array(points)


def _mapper(weak_label="full", augment=True, crop=(32, 32), flip=True, **kwargs):
    augmentations = []
    if augment:
        augmentations = [RandomScale(0.5, 2.0)]
        if crop:
            augmentations.append(T.RandomCrop("absolute", crop))
        if flip:
            augmentations.append(T.RandomFlip(prob=0.5))
    return WeakLabelDatasetMapper(
        True,
        augmentations=augmentations,
        image_format="RGB",
        num_classes=K,
        weak_label=weak_label,
        **kwargs,
    )


@pytest.fixture
def image_file(tmp_path):
    return _coordinate_image(str(tmp_path / "2007_000032.png"))


@pytest.mark.parametrize("mode", ["L", "P"])
def test_points_png_every_point_lands_once_at_its_place(tmp_path, image_file, mode):
    label, points = _point_map()
    record = {"file_name": image_file, "sparse_sem_seg_file_name": _save(str(tmp_path / "p.png"), label, mode)}
    mapper = _mapper("points")
    np.random.seed(0)
    for _ in range(30):
        out = mapper(record)
        sparse = out["sparse_sem_seg"].numpy()
        h, w = sparse.shape
        assert set(np.unique(sparse).tolist()) <= set(range(K + 1))
        rows, cols = np.nonzero(sparse < K)
        xs, ys = _decode(out["image"], rows, cols)
        # each labelled output pixel comes from exactly one point, of the same class
        dist = np.hypot(xs[:, None] - points[None, :, 0], ys[:, None] - points[None, :, 1])
        nearest = dist.argmin(1)
        assert (dist.min(1) <= TOLERANCE).all()
        assert (points[nearest, 2] == sparse[rows, cols]).all()
        assert len(np.unique(nearest)) == len(nearest), "a point was duplicated"
        # every point well inside the crop is present (none lost)
        corner_x, corner_y = _decode(out["image"], np.array([0, h - 1]), np.array([0, w - 1]))
        lo_x, hi_x = sorted(corner_x)
        lo_y, hi_y = sorted(corner_y)
        inside = (
            (points[:, 0] > lo_x + TOLERANCE)
            & (points[:, 0] < hi_x - TOLERANCE)
            & (points[:, 1] > lo_y + TOLERANCE)
            & (points[:, 1] < hi_y - TOLERANCE)
        )
        assert set(np.flatnonzero(inside)) <= set(nearest.tolist())


def test_points_survive_strong_downscaling(tmp_path, image_file):
    """Nearest-neighbour resizing to 1/4 would drop most single-pixel clicks; none is lost."""
    label, points = _point_map()
    record = {"file_name": image_file, "sparse_sem_seg_file_name": _save(str(tmp_path / "p.png"), label)}
    mapper = WeakLabelDatasetMapper(
        True, augmentations=[RandomScale(0.25, 0.25)], image_format="RGB", num_classes=K, weak_label="clicks"
    )
    sparse = mapper(record)["sparse_sem_seg"].numpy()
    assert sparse.shape == (12, 16)
    # 7-px spacing at scale 1/4 keeps the points in distinct pixels
    assert (sparse < K).sum() == len(points)
    nearest = T.ResizeTransform(H, W, 12, 16, Image.NEAREST).apply_segmentation(label)
    assert (nearest < K).sum() < len(points) / 2  # what plain nearest resizing would have kept


def test_json_points_follow_the_image_and_outside_points_are_dropped(tmp_path, image_file):
    _, points = _point_map()
    json_points = points.astype(np.float64) + [0.3, -0.2, 0]
    outside = [[W + 3.0, 5.0, 4], [5.0, -2.0, 4]]
    record = {"file_name": image_file, "points": np.concatenate([json_points, outside]).tolist()}
    mapper = _mapper("points", point_radius=0)
    np.random.seed(1)
    for _ in range(20):
        out = mapper(record)
        moved = out["points"].numpy()
        assert moved.shape[1] == 3 and len(moved) <= len(json_points)
        rows, cols = np.floor(moved[:, 1] + 0.5).astype(int), np.floor(moved[:, 0] + 0.5).astype(int)
        xs, ys = _decode(out["image"], rows, cols)
        dist = np.hypot(xs[:, None] - json_points[None, :, 0], ys[:, None] - json_points[None, :, 1])
        assert (dist.min(1) <= TOLERANCE).all()
        assert (json_points[dist.argmin(1), 2] == moved[:, 2]).all()
        # and the raster the methods read holds exactly these points (radius 0)
        sparse = out["sparse_sem_seg"].numpy()
        assert (sparse < K).sum() == len(np.unique(rows * 1000 + cols))
        assert (sparse[rows, cols] == moved[:, 2]).all()


def test_scribbles_stay_on_their_stroke_and_connected(tmp_path, image_file):
    label = np.full((H, W), K, np.uint8)
    label[20:23, 5:60] = 7  # a horizontal stroke of width 3
    label[30:45, 40:43] = 0  # a vertical background stroke
    record = {"file_name": image_file, "sparse_sem_seg_file_name": _save(str(tmp_path / "s.png"), label)}
    from scipy import ndimage

    for scale in (0.3, 2.0):
        mapper = WeakLabelDatasetMapper(
            True, augmentations=[RandomScale(scale, scale)], image_format="RGB", num_classes=K, weak_label="scribbles"
        )
        out = mapper(record)
        sparse = out["sparse_sem_seg"].numpy()
        for cls in (7, 0):
            rows, cols = np.nonzero(sparse == cls)
            assert len(rows) > 0, f"stroke {cls} lost at scale {scale}"
            xs, ys = _decode(out["image"], rows, cols)
            orig_r, orig_c = np.nonzero(label == cls)
            dist = np.hypot(xs[:, None] - orig_c[None], ys[:, None] - orig_r[None]).min(1)
            assert (dist <= TOLERANCE / min(scale, 1)).all()
            assert ndimage.label(sparse == cls, structure=np.ones((3, 3)))[1] == 1  # still one stroke


def test_boxes_follow_the_crop(tmp_path, image_file):
    boxes = [[4.0, 6.0, 30.0, 40.0, 12], [40.0, 2.0, 62.0, 20.0, 3]]
    record = {
        "file_name": image_file,
        "annotations": [
            {"bbox": b[:4], "bbox_mode": BoxMode.XYXY_ABS, "category_id": b[4]} for b in boxes
        ],
    }
    mapper = _mapper("boxes", tags_from_crop=True)
    np.random.seed(2)
    for _ in range(30):
        out = mapper(record)
        instances = out["instances"]
        h, w = out["image"].shape[1:]
        coords = instances.gt_boxes.tensor.numpy()
        assert (coords[:, 0::2] >= 0).all() and (coords[:, 0::2] <= w).all()
        assert (coords[:, 1::2] >= 0).all() and (coords[:, 1::2] <= h).all()
        for (x0, y0, x1, y1), cls in zip(coords, instances.gt_classes.tolist()):
            original = next(b for b in boxes if b[4] == cls)
            # a box corner inside the crop decodes to the original corner
            last_col, last_row = max(int(np.ceil(x1)) - 1, int(x0)), max(int(np.ceil(y1)) - 1, int(y0))
            ox, oy = _decode(out["image"], np.array([int(y0), last_row]), np.array([int(x0), last_col]))
            ox, oy = sorted(ox), sorted(oy)
            assert ox[0] >= original[0] - TOLERANCE and ox[1] <= original[2] + TOLERANCE
            assert oy[0] >= original[1] - TOLERANCE and oy[1] <= original[3] + TOLERANCE
        # tags from the crop: the boxes left in it, plus the background around them
        expected = np.zeros(K, np.float32)
        expected[instances.gt_classes.numpy()] = 1
        expected[0] = 1
        assert np.array_equal(out["image_labels"].numpy(), expected)


def test_tags_from_dataset_or_from_crop(tmp_path, image_file):
    label = np.zeros((H, W), np.uint8)
    label[:, 40:] = 5
    label[:10, :10] = 9
    record = {"file_name": image_file, "sem_seg_file_name": _save(str(tmp_path / "l.png"), label)}
    out = _mapper()({**record, "image_labels": [5, 9]})
    expected = np.zeros(K, np.float32)
    expected[[0, 5, 9]] = 1
    assert np.array_equal(out["image_labels"].numpy(), expected)
    mapper = _mapper(tags_from_crop=True)
    np.random.seed(3)
    for _ in range(20):
        out = mapper(record)
        present = np.unique(out["sem_seg"].numpy())
        assert np.flatnonzero(out["image_labels"].numpy()).tolist() == present[present < K].tolist()


def test_weak_shot_never_leaks_a_novel_pixel(tmp_path, image_file):
    label = np.zeros((H, W), np.uint8)
    label[5:25, 5:30] = 3  # novel
    label[30:, 35:] = 8  # base
    label[0:4, 50:60] = 11  # novel, small
    record = {"file_name": image_file, "sem_seg_file_name": _save(str(tmp_path / "l.png"), label)}
    whole = _mapper(novel_classes=[3, 11, 17])
    crop_tags = _mapper(novel_classes=[3, 11, 17], tags_from_crop=True)
    np.random.seed(4)
    for _ in range(30):
        out = whole(record)
        sem_seg = out["sem_seg"].numpy()
        assert not np.isin(sem_seg, [3, 11, 17]).any()
        assert np.flatnonzero(out["image_labels"].numpy()).tolist() == [0, 3, 8, 11]  # whole-image tags
        out = crop_tags(record)
        sem_seg = out["sem_seg"].numpy()
        tags = out["image_labels"].numpy()
        assert not np.isin(sem_seg, [3, 11, 17]).any()
        # the fixture has no void, so ignore pixels in the crop are exactly the novel ones
        assert bool(tags[3] or tags[11]) == bool((sem_seg == 255).any())
        assert tags[8] == (sem_seg == 8).any() and tags[0] == (sem_seg == 0).any()


def test_pseudo_label_is_the_dense_target(tmp_path, image_file):
    pseudo = np.full((H, W), 255, np.uint8)
    pseudo[10:30, 10:30] = 4
    record = {"file_name": image_file, "pseudo_sem_seg_file_name": _save(str(tmp_path / "p.png"), pseudo)}
    out = _mapper(augment=False)(record)
    assert np.array_equal(out["sem_seg"].numpy(), pseudo)


def test_cams_follow_the_image(tmp_path, image_file):
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    cam_file = str(tmp_path / "cam.npy")
    write_irn_cams(cam_file, [15, 1], np.stack([xs / W, ys / H]))
    mapper = _mapper(crop=(32, 32))
    np.random.seed(5)
    for _ in range(10):
        out = mapper({"file_name": image_file, "cam_file_name": cam_file})
        assert out["cam_labels"].tolist() == [15, 1]
        cams = out["cams"].numpy()
        assert cams.shape[1:] == out["image"].shape[1:]
        xs_dec, ys_dec = _decode(out["image"], *np.mgrid[2 : cams.shape[1] - 2, 2 : cams.shape[2] - 2])
        inner = (slice(2, -2), slice(2, -2))
        assert np.abs(cams[0][inner] * W - xs_dec).max() < 1.5
        assert np.abs(cams[1][inner] * H - ys_dec).max() < 1.5


def test_flip_swaps_left_and_right_classes(tmp_path, image_file):
    label = np.full((H, W), 15, np.uint8)
    label[10:20, 5:10] = 2  # right hand, on the left of the image
    label[10:20, 50:55] = 3  # left hand
    flip = [0, 1, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 14]
    mapper = WeakLabelDatasetMapper(
        True,
        augmentations=[T.RandomFlip(prob=1.0)],
        image_format="RGB",
        num_classes=15,
        weak_label="points",
        flip_label_map=flip,
    )
    out = mapper({"file_name": image_file, "sparse_sem_seg_file_name": _save(str(tmp_path / "d.png"), label)})
    sparse = out["sparse_sem_seg"].numpy()
    assert (sparse[10:20, W - 10 : W - 5] == 3).all() and (sparse[10:20, W - 55 : W - 50] == 2).all()


def test_padding_and_valid_mask(tmp_path, image_file):
    label, _ = _point_map()
    record = {"file_name": image_file, "sparse_sem_seg_file_name": _save(str(tmp_path / "p.png"), label)}
    mapper = WeakLabelDatasetMapper(
        True,
        augmentations=[RandomScale(0.5, 0.5)],
        image_format="RGB",
        num_classes=K,
        weak_label="points",
        pad_to_size=(40, 40),
        pad_image_value=0,
    )
    out = mapper(record)
    valid = out["valid_mask"].numpy()
    assert out["image"].shape == (3, 40, 40) and valid.shape == (40, 40)
    assert valid[:24, :32].all() and not valid[24:].any() and not valid[:, 32:].any()
    assert (out["sparse_sem_seg"].numpy()[~valid] == 255).all()
    assert (out["image"].numpy()[:, ~valid] == 0).all()


def test_random_long_side_and_random_pad_position_move_every_label(tmp_path, image_file):
    """SIPE's augmentation (docs/sipe.md §4.3): long side in [min, max] with PIL bicubic, the small
    image placed at a random offset of the padded crop; points, boxes and the mask follow."""
    label, points = _point_map()
    record = {
        "file_name": image_file,
        "points": points.tolist(),
        "annotations": [{"bbox": [10, 5, 30, 25], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 3}],
    }
    mapper = WeakLabelDatasetMapper(
        True, augmentations=[RandomLongSide(40, 50)], image_format="RGB", num_classes=K, weak_label="points",
        pad_to_size=(64, 64), pad_position="random",
    )
    offsets = set()
    for seed in range(12):
        np.random.seed(seed)
        out = mapper(record)
        valid = out["valid_mask"].numpy()
        rows, cols = np.nonzero(valid)
        top, left, h, w = rows.min(), cols.min(), np.ptp(rows) + 1, np.ptp(cols) + 1
        assert 40 <= max(h, w) <= 50 and valid.sum() == h * w
        offsets.add((top, left))
        # every point decodes (through the coordinate image) to its own source position
        xy = out["points"].numpy()
        x, y = _decode(out["image"], np.floor(xy[:, 1]).astype(int), np.floor(xy[:, 0]).astype(int))
        source = {(int(c), int(r)): cls for c, r, cls in points}
        for (px, py, cls), sx, sy in zip(xy, x, y):
            nearest = min(source, key=lambda p: (p[0] - sx) ** 2 + (p[1] - sy) ** 2)
            # bicubic's wider support bends the coordinate ramp near the border: 2.5 px, not 1.7
            assert np.hypot(nearest[0] - sx, nearest[1] - sy) < 2.5 and source[nearest] == cls
        box = out["instances"].gt_boxes.tensor.numpy()[0]
        scale = max(h, w) / W
        assert box == pytest.approx([left + 10 * scale, top + 5 * scale, left + 30 * scale, top + 25 * scale], abs=0.6)
    assert len(offsets) > 6  # not always the top-left corner


def test_test_time_tags_come_from_the_gt_of_a_labelled_split(tmp_path, image_file):
    label = np.zeros((H, W), np.uint8)
    label[5:20, 5:20] = 7
    label[30:, 30:] = 255
    record = {"file_name": image_file, "sem_seg_file_name": _save(str(tmp_path / "gt.png"), label)}
    evaluation = WeakLabelDatasetMapper(False, augmentations=[], image_format="RGB", num_classes=K)
    assert np.nonzero(evaluation(record)["image_labels"].numpy())[0].tolist() == [0, 7]
    training = WeakLabelDatasetMapper(True, augmentations=[], image_format="RGB", num_classes=K)
    assert "image_labels" not in training(record)  # never from pixels at training time


@pytest.mark.parametrize(
    "kind,field,value,reason",
    [
        ("tags", "image_labels", [], "no image tags"),
        ("boxes", "annotations", [], "no boxes"),
        ("points", "points", [], "no points"),
    ],
)
def test_empty_weak_label_skip_or_error(image_file, caplog, kind, field, value, reason):
    record = {"file_name": image_file, field: value}
    with caplog.at_level(logging.WARNING):
        assert _mapper(kind, on_empty="skip")(record) is None
    assert "2007_000032.png" in caplog.text and reason in caplog.text
    with pytest.raises(ValueError, match=f"2007_000032.png has an empty weak label \\({reason}\\)"):
        _mapper(kind, on_empty="error")(record)


def test_empty_weak_label_reason_reads_labels_only(tmp_path, image_file):
    """The reason the mapper skips an image, without the image (the pre-training check's scan)."""
    missing_image = str(tmp_path / "not_there.jpg")
    empty = _save(str(tmp_path / "empty.png"), np.full((H, W), K, np.uint8))
    label = np.full((H, W), K, np.uint8)
    label[3, 4] = 2
    labelled = _save(str(tmp_path / "one_pixel.png"), label)
    mapper = _mapper("points", on_empty="skip")
    assert mapper.empty_weak_label_reason({"file_name": missing_image, "sparse_sem_seg_file_name": empty}) == (
        f"no labelled pixel in {empty}"
    )
    assert mapper.empty_weak_label_reason({"file_name": missing_image, "sparse_sem_seg_file_name": labelled}) is None
    assert _mapper("tags").empty_weak_label_reason({"file_name": missing_image, "image_labels": []}) == "no image tags"
    void = _save(str(tmp_path / "void.png"), np.full((H, W), 255, np.uint8))
    assert "every pixel of" in _mapper("pseudo").empty_weak_label_reason(
        {"file_name": missing_image, "pseudo_sem_seg_file_name": void}
    )
    # the same rule as the mapper's skip
    assert mapper({"file_name": image_file, "sparse_sem_seg_file_name": empty}) is None


def test_empty_sparse_file_names_the_file(tmp_path, image_file):
    path = _save(str(tmp_path / "empty.png"), np.full((H, W), K, np.uint8))
    with pytest.raises(ValueError, match="no labelled pixel in .*empty.png"):
        _mapper("scribbles", on_empty="error")({"file_name": image_file, "sparse_sem_seg_file_name": path})


def test_sparse_raw_conventions(tmp_path, image_file):
    label = np.full((H, W), 255, np.uint8)  # rloss style: 255 = unlabelled
    label[5:8, 5:40] = 0
    label[20:23, 5:40] = 12
    path = _save(str(tmp_path / "rloss.png"), label)
    rloss = _mapper("scribbles", augment=False, sparse_unlabeled_value=255, sparse_void_value=None)
    sparse = rloss({"file_name": image_file, "sparse_sem_seg_file_name": path})["sparse_sem_seg"].numpy()
    assert (sparse == K).sum() == (label == 255).sum() and (sparse == 255).sum() == 0
    # a K-canvas file read as rloss-style: 21 is neither a class, unlabelled nor void
    label[label == 255] = K
    _save(path, label)
    with pytest.raises(ValueError, match=r"rloss.png has values \[21\] .*UNLABELED_RAW"):
        rloss({"file_name": image_file, "sparse_sem_seg_file_name": path})


def test_label_errors_name_the_file(tmp_path, image_file):
    small = _save(str(tmp_path / "small.png"), np.full((H - 1, W), K, np.uint8))
    with pytest.raises(ValueError, match="small.png is 64x47"):
        _mapper("points")({"file_name": image_file, "sparse_sem_seg_file_name": small})
    with pytest.raises(ValueError, match=r"image_labels \[3, 21\] outside the class ids 0..20"):
        _mapper("tags")({"file_name": image_file, "image_id": "x", "image_labels": [3, 21]})
    with pytest.raises(ValueError, match=r"box category_id \[30\]"):
        _mapper("boxes")(
            {"file_name": image_file, "annotations": [{"bbox": [0, 0, 5, 5], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 30}]}
        )
    bad_cam = str(tmp_path / "bad.npy")
    np.save(bad_cam, {"keys": np.array([0, 1]), "high_res": np.zeros((1, H, W), np.float32)})
    with pytest.raises(ValueError, match="bad.npy: 'high_res' has shape"):
        _mapper()({"file_name": image_file, "cam_file_name": bad_cam})


def test_from_config_follows_dataset_metadata_and_rejects_mixed_conventions():
    def register(name, **meta):
        if name not in DatasetCatalog.list():
            register_sem_seg_dataset(name, list, ["a"] * K, None, **meta)

    register("_test_scribbles_k", weak_label="scribbles", sparse_unlabeled_value=K, sparse_void_value=255)
    register("_test_scribbles_rloss", weak_label="scribbles", sparse_unlabeled_value=255, sparse_void_value=None)
    cfg = get_wss_cfg(opts=["MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(K), "DATASETS.TRAIN", "('_test_scribbles_rloss',)"])
    mapper = WeakLabelDatasetMapper(cfg, True)
    assert (mapper.sparse_unlabeled_value, mapper.sparse_void_value, mapper.weak_label) == (255, None, "scribbles")
    cfg.INPUT.SPARSE.UNLABELED_RAW = K  # the config overrides the metadata
    assert WeakLabelDatasetMapper(cfg, True).sparse_unlabeled_value == K
    cfg.DATASETS.TRAIN = ("_test_scribbles_k", "_test_scribbles_rloss")
    with pytest.raises(ValueError, match="disagree on metadata 'sparse_unlabeled_value'"):
        WeakLabelDatasetMapper(cfg, True)


def test_training_loader_batches_weak_labels_and_skips_empty_ones(synthetic_dir, image_file):
    """detectron2's train loader with the mapper: weak-shot and scribble batches; images with an
    empty weak label (the mapper returns None) are replaced by others."""
    from wss_d2.engine import Trainer

    name = "_test_tags_some_empty"
    if name not in DatasetCatalog.list():
        register_sem_seg_dataset(
            name,
            lambda: [{"file_name": image_file, "image_id": f"e{i}", "image_labels": []} for i in range(3)]
            + [{"file_name": image_file, "image_id": "full", "image_labels": [5]}],
            ["c"] * 6,
            None,
            weak_label="tags",
        )
    for dataset, fields in (
        ("wss_synthetic_train_ws", ("sem_seg", "image_labels", "valid_mask")),
        ("wss_synthetic_train_scribbles", ("sparse_sem_seg", "valid_mask")),
        (name, ("image_labels",)),
    ):
        cfg = get_wss_cfg(
            os.path.join(os.path.dirname(__file__), "..", "configs", "synthetic", "deeplabv3plus_R18.yaml"),
            ["DATASETS.TRAIN", f"('{dataset}',)", "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "4"],
        )
        batch = next(iter(Trainer.build_train_loader(cfg)))
        assert len(batch) == 4
        for item in batch:
            assert all(f in item for f in fields)
            if "sem_seg" in item:
                assert not np.isin(item["sem_seg"].numpy(), [4, 5]).any()  # novel classes hidden
            if dataset == name:
                assert item["image_id"] == "full"


def test_sparse_image_labels_come_from_the_whole_image_not_the_crop(tmp_path, image_file):
    # AGMM's image-level c (docs/agmm.md §1.4 step 1): a class the crop removes stays present
    label = np.full((H, W), K, np.uint8)
    label[2, 2] = 7  # top-left corner
    label[40:43, 50:60] = 0
    path = _save(str(tmp_path / "s.png"), label)
    mapper = _mapper("scribbles", crop=(8, 8), flip=False)
    np.random.seed(0)
    outside = 0
    for _ in range(20):
        out = mapper({"file_name": image_file, "sparse_sem_seg_file_name": path})
        assert np.flatnonzero(out["image_labels"].numpy()).tolist() == [0, 7]
        outside += 7 not in out["sparse_sem_seg"].numpy()
    assert outside > 0  # some crops did remove class 7


def test_strong_photometric_changes_the_image_only():
    from wss_d2.data.augmentation import StrongPhotometric, StrongPhotometricTransform

    image = np.random.RandomState(0).randint(0, 256, (20, 30, 3)).astype(np.uint8)
    label = np.random.RandomState(1).randint(0, 21, (20, 30)).astype(np.uint8)
    aug_input = T.AugInput(image.copy(), sem_seg=label.copy())
    np.random.seed(0)
    transforms = T.AugmentationList([StrongPhotometric(1.0, 1.0, 1.0, 1.0)])(aug_input)
    assert aug_input.image.shape == image.shape and aug_input.image.dtype == np.uint8
    assert not np.array_equal(aug_input.image, image)
    assert np.array_equal(aug_input.sem_seg, label)
    assert np.array_equal(transforms.apply_coords(np.array([[3.0, 4.0]])), [[3.0, 4.0]])
    # grayscale makes the channels equal; the scalar shift moves every pixel by the same amount
    gray = StrongPhotometricTransform(None, True, None, None).apply_image(image)
    assert np.array_equal(gray[..., 0], gray[..., 1])
    shifted = StrongPhotometricTransform(None, False, None, 5.0).apply_image(np.full((2, 2, 3), 100, np.uint8))
    assert (shifted == 105).all()
    # probabilities 0: the image is untouched
    aug_input = T.AugInput(image.copy())
    T.AugmentationList([StrongPhotometric(0.0, 0.0, 0.0, 0.0)])(aug_input)
    assert np.array_equal(aug_input.image, image)


def test_a_point_just_inside_the_border_never_indexes_past_it():
    # 111.99999999 passes a float64 "< 112" check but is 112.0 in float32 (a real crash
    # on the synthetic scribbles)
    mapper = _mapper("points", augment=False)
    points = np.array([[112 - 1e-9, 5.0, 3], [3.0, 64 - 1e-9, 4], [10.0, 10.0, 1]])
    moved = mapper._move_points(points, T.TransformList([]), 64, 112)
    assert moved.dtype == np.float32
    assert (np.floor(moved[:, 0]) < 112).all() and (np.floor(moved[:, 1]) < 64).all()
    assert moved[:, 2].tolist() == [1.0]
