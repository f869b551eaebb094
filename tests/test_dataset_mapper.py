import os

import numpy as np
import pytest
from PIL import Image

from detectron2.data import detection_utils

from wss_d2 import get_wss_cfg
from wss_d2.data import WeakLabelDatasetMapper, build_dataset_mapper, read_label_map
from wss_d2.data.datasets import voc_palette

from .conftest import MAIN_CONFIG

LABEL_VALUES = np.array([[0, 1, 15, 255], [20, 0, 1, 15]], dtype=np.uint8)


def _save_label(path, values, mode):
    image = Image.fromarray(values, mode="L")
    if mode == "P":
        image = image.convert("P")
        image.putpalette(voc_palette())
        # convert("P") remaps indices; write the raw values back
        image = Image.frombytes("P", image.size, values.tobytes())
        image.putpalette(voc_palette())
    image.save(path)
    return path


@pytest.mark.parametrize("mode", ["P", "L"])
def test_label_png_read_as_raw_indices(tmp_path, mode):
    path = _save_label(str(tmp_path / "label.png"), LABEL_VALUES, mode)
    assert Image.open(path).mode == mode
    np.testing.assert_array_equal(read_label_map(path), LABEL_VALUES)


def test_palette_png_scrambled_by_detectron2_default_reader(tmp_path):
    """The trap read_label_map avoids: detectron2's "L" conversion maps colours to luminance."""
    path = _save_label(str(tmp_path / "label.png"), LABEL_VALUES, "P")
    scrambled = detection_utils.read_image(path, "L")[..., 0]
    assert scrambled[0, 1] == 38 and scrambled[0, 3] == 220


def _cfg(**overrides):
    opts = ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", "21"]
    for key, value in overrides.items():
        opts += [key, str(value)]
    return get_wss_cfg(MAIN_CONFIG, opts)


def _color_coded_pair(tmp_path, h=40, w=56, mode="P", name="x"):
    """An image whose colour encodes its label, to check that image and label move together."""
    label = np.zeros((h, w), np.uint8)
    label[5:25, 8:30] = 1
    label[20:38, 30:50] = 15
    label[:, :3] = 255
    colours = {0: (0, 0, 0), 1: (250, 0, 0), 15: (0, 250, 0), 255: (0, 0, 250)}
    image = np.zeros((h, w, 3), np.uint8)
    for value, colour in colours.items():
        image[label == value] = colour
    image_path = str(tmp_path / f"{name}.png")  # lossless, so colours stay exact
    Image.fromarray(image).save(image_path)
    label_path = _save_label(str(tmp_path / f"{name}_label.png"), label, mode)
    return {"file_name": image_path, "sem_seg_file_name": label_path}, colours


@pytest.mark.parametrize("mode", ["P", "L"])
def test_training_mapper_moves_image_and_label_together(tmp_path, mode):
    record, colours = _color_coded_pair(tmp_path, mode=mode)
    mapper = WeakLabelDatasetMapper(_cfg(**{"INPUT.CROP.SIZE": "(32, 32)", "INPUT.FORMAT": "RGB"}), True)
    np.random.seed(0)
    for _ in range(10):
        out = mapper(record)
        image = out["image"].numpy().transpose(1, 2, 0)
        label = out["sem_seg"].numpy()
        assert image.shape[:2] == label.shape and max(label.shape) <= 32
        assert set(np.unique(label).tolist()) <= {0, 1, 15, 255}
        # away from label edges (bilinear image resize blurs them), colours match labels
        interior = np.ones_like(label, dtype=bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                interior &= np.roll(np.roll(label, dy, 0), dx, 1) == label
        interior[[0, -1], :] = interior[:, [0, -1]] = False
        for value, colour in colours.items():
            pixels = image[interior & (label == value)]
            if len(pixels):
                assert np.abs(pixels - np.array(colour)).max() <= 2, value
        assert out["height"] == 40 and out["width"] == 56


def test_test_mapper_keeps_original_size(tmp_path):
    record, _ = _color_coded_pair(tmp_path)
    out = build_dataset_mapper(_cfg(), is_train=False)(record)
    assert tuple(out["image"].shape) == (3, 40, 56)
    assert tuple(out["sem_seg"].shape) == (40, 56)


def test_missing_image(tmp_path):
    record, _ = _color_coded_pair(tmp_path)
    os.remove(record["file_name"])
    with pytest.raises(FileNotFoundError, match="x.png"):
        WeakLabelDatasetMapper(_cfg(), False)(record)


def test_corrupt_image(tmp_path):
    record, _ = _color_coded_pair(tmp_path)
    with open(record["file_name"], "wb") as f:
        f.write(b"not an image")
    with pytest.raises(ValueError, match="Cannot decode image .*x.png"):
        WeakLabelDatasetMapper(_cfg(), False)(record)


def test_truncated_jpeg(tmp_path):
    path = str(tmp_path / "t.jpg")
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), np.uint8)).save(path)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    label = _save_label(str(tmp_path / "t.png"), np.zeros((64, 64), np.uint8), "L")
    with pytest.raises(ValueError, match="t.jpg"):
        WeakLabelDatasetMapper(_cfg(), False)({"file_name": path, "sem_seg_file_name": label})


def test_label_size_mismatch(tmp_path):
    record, _ = _color_coded_pair(tmp_path)
    _save_label(record["sem_seg_file_name"], np.zeros((40, 50), np.uint8), "L")
    with pytest.raises(ValueError, match=r"x_label.png is 50x40 .*/x.png is 56x40"):
        WeakLabelDatasetMapper(_cfg(), True)(record)


def test_label_out_of_range(tmp_path):
    record, _ = _color_coded_pair(tmp_path)
    with pytest.raises(ValueError, match=r"x_label.png has values \[15\] outside the class ids 0..5"):
        WeakLabelDatasetMapper(_cfg(**{"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 6}), True)(record)


def test_colour_label_rejected(tmp_path):
    record, _ = _color_coded_pair(tmp_path)
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(record["sem_seg_file_name"])
    with pytest.raises(ValueError, match="mode 'RGB'"):
        WeakLabelDatasetMapper(_cfg(), True)(record)


def test_missing_label(tmp_path):
    record, _ = _color_coded_pair(tmp_path)
    os.remove(record["sem_seg_file_name"])
    with pytest.raises(FileNotFoundError, match="x_label.png"):
        WeakLabelDatasetMapper(_cfg(), True)(record)
