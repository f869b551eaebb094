"""
SPML's stage-C colour augmentations (docs/spml.md §4.2): INPUT.RANDOM_GRAYSCALE (luma 0.3 R +
0.59 G + 0.11 B on all channels) and INPUT.RANDOM_BLUR (5x5 kernel ∝ exp(−(x² + y²)/σ²),
σ ~ U(0.1, 5), per channel, cv2.filter2D): values by hand, p = 0 / p = 1, the config wiring, and
draws from the per-image generator the resumable loader seeds.
"""
import math
import os

import numpy as np
import pytest

from detectron2.data import transforms as T

from wss_d2 import get_wss_cfg
from wss_d2.data.augmentation import (
    BlurTransform,
    GrayscaleTransform,
    RandomBlur,
    RandomGrayscale,
    StrongPhotometric,
    blur_kernel,
)
from wss_d2.data.dataset_mapper import build_semantic_augmentations
from wss_d2.data.train_loader import isolated_rng

from .conftest import CONFIGS


def _image(seed=0, shape=(9, 11, 3)):
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def test_blur_kernel_matches_the_formula_by_hand():
    sigma = 2.0
    kernel = blur_kernel(sigma)
    assert kernel.shape == (5, 5)
    # unnormalised weights by distance²: 0 -> 1, 1 -> e^-1/4, 2 -> e^-2/4, 4 -> e^-1, 5 -> e^-5/4, 8 -> e^-2
    # counts over the 5x5 grid: d² 0: 1, 1: 4, 2: 4, 4: 4, 5: 8, 8: 4
    total = 1 + 4 * math.exp(-0.25) + 4 * math.exp(-0.5) + 4 * math.exp(-1) + 8 * math.exp(-1.25) + 4 * math.exp(-2)
    assert kernel[2, 2] == pytest.approx(1 / total, rel=1e-12)
    assert kernel[2, 3] == pytest.approx(math.exp(-0.25) / total, rel=1e-12)
    assert kernel[1, 1] == pytest.approx(math.exp(-0.5) / total, rel=1e-12)
    assert kernel[0, 2] == pytest.approx(math.exp(-1) / total, rel=1e-12)
    assert kernel[0, 1] == pytest.approx(math.exp(-1.25) / total, rel=1e-12)
    assert kernel[0, 0] == pytest.approx(math.exp(-2) / total, rel=1e-12)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(kernel, kernel.T) and np.allclose(kernel, kernel[::-1, ::-1])
    # σ = 0.1: all weight on the centre
    assert blur_kernel(0.1)[2, 2] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        blur_kernel(1.0, size=4)


def test_blur_is_per_channel_filter2d_with_reflect_101_borders():
    sigma = 1.5
    image = _image(1, (7, 8, 3))
    out = BlurTransform(sigma).apply_image(image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    kernel = blur_kernel(sigma)
    padded = np.pad(image.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode="reflect")  # = cv2's reflect-101
    expected = np.zeros(image.shape, np.float64)
    for dy in range(5):
        for dx in range(5):
            expected += kernel[dy, dx] * padded[dy:dy + 7, dx:dx + 8]
    assert np.abs(out.astype(np.float64) - expected).max() <= 0.5 + 1e-3  # rounded back to uint8
    # float images stay float, to float32 precision
    floats = image.astype(np.float32) / 255
    assert np.allclose(BlurTransform(sigma).apply_image(floats), expected / 255, atol=1e-5)
    # a constant image is unchanged; a delta spreads as the kernel
    assert np.array_equal(BlurTransform(3.0).apply_image(np.full((6, 6, 3), 77, np.uint8)), np.full((6, 6, 3), 77))
    delta = np.zeros((9, 9, 3), np.float32)
    delta[4, 4] = 1.0
    assert np.allclose(BlurTransform(3.0).apply_image(delta)[2:7, 2:7, 1], blur_kernel(3.0), atol=1e-6)


def test_grayscale_values_by_hand_and_channel_order():
    image = np.array([[[200, 100, 50], [0, 255, 0]]], np.uint8)
    out = GrayscaleTransform((0.3, 0.59, 0.11)).apply_image(image)
    # 0.3·200 + 0.59·100 + 0.11·50 = 124.5 -> 124 (half to even); 0.59·255 = 150.45 -> 150
    assert out.dtype == np.uint8 and out.tolist() == [[[124] * 3, [150] * 3]]
    floats = np.array([[[0.5, 0.25, 1.0]]], np.float32)
    assert np.allclose(GrayscaleTransform((0.3, 0.59, 0.11)).apply_image(floats), 0.3 * 0.5 + 0.59 * 0.25 + 0.11)
    # a BGR image gets the weights reversed: same luma
    np.random.seed(0)
    bgr = RandomGrayscale(1.0, "BGR").get_transform(image[..., ::-1]).apply_image(image[..., ::-1].copy())
    assert np.array_equal(bgr, out)
    with pytest.raises(ValueError, match="RGB or BGR"):
        RandomGrayscale(0.3, "L")


def test_probability_zero_keeps_and_one_always_applies():
    image = _image(2)
    label = np.random.RandomState(3).randint(0, 21, image.shape[:2]).astype(np.uint8)
    np.random.seed(0)
    for _ in range(20):
        assert isinstance(RandomGrayscale(0.0).get_transform(image), T.NoOpTransform)
        assert isinstance(RandomBlur(0.0).get_transform(image), T.NoOpTransform)
        assert isinstance(RandomGrayscale(1.0).get_transform(image), GrayscaleTransform)
        blur = RandomBlur(1.0, (0.1, 5.0)).get_transform(image)
        assert isinstance(blur, BlurTransform) and 0.1 <= blur.sigma <= 5.0 and blur.size == 5
    aug_input = T.AugInput(image.copy(), sem_seg=label.copy())
    transforms = T.AugmentationList([RandomGrayscale(1.0), RandomBlur(1.0)])(aug_input)
    out = aug_input.image
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert np.array_equal(aug_input.sem_seg, label)  # labels and geometry untouched
    assert np.array_equal(transforms.apply_coords(np.array([[3.0, 4.0]])), [[3.0, 4.0]])
    # σ is drawn uniformly from the range: a degenerate range fixes it
    np.random.seed(1)
    assert RandomBlur(1.0, (2.5, 2.5)).get_transform(image).sigma == 2.5
    # p = 0.3 fires on about 30 % of images
    np.random.seed(4)
    fired = sum(isinstance(RandomGrayscale(0.3).get_transform(image), GrayscaleTransform) for _ in range(2000))
    assert 0.26 < fired / 2000 < 0.34
    with pytest.raises(ValueError):
        RandomBlur(1.5)
    with pytest.raises(ValueError):
        RandomBlur(0.5, (0.0, 5.0))


def test_strong_photometric_grayscale_is_not_spmls():
    """AGMM's StrongPhotometric converts with PIL (0.299/0.587/0.114, integer arithmetic): not reusable
    for SPML's 0.3/0.59/0.11, so SPML's have their own classes and AGMM is left as it is."""
    image = np.array([[[0, 0, 255], [0, 255, 0]]], np.uint8)
    np.random.seed(0)
    pil = StrongPhotometric(0.0, 1.0, 0.0, 0.0).get_transform(image).apply_image(image)
    ours = GrayscaleTransform((0.3, 0.59, 0.11)).apply_image(image)
    assert pil[0, :, 0].tolist() == [29, 150] and ours[0, :, 0].tolist() == [28, 150]  # 0.114 vs 0.11 of 255


def test_config_keys_default_off_and_stage_c_configs_turn_them_on():
    cfg = get_wss_cfg(os.path.join(CONFIGS, "Base-SPML.yaml"), ["MODEL.WEIGHTS", ""])
    assert cfg.INPUT.RANDOM_GRAYSCALE == 0.0 and cfg.INPUT.RANDOM_BLUR == 0.0
    names = [type(a).__name__ for a in build_semantic_augmentations(cfg, True)]
    assert "RandomGrayscale" not in names and "RandomBlur" not in names
    for config in ("voc/spml_R101_classifier.yaml", "voc/spml_R101_classifier_msc.yaml",
                   "densepose/spml_R101_classifier.yaml"):
        cfg = get_wss_cfg(os.path.join(CONFIGS, config), ["MODEL.WEIGHTS", ""])
        augs = build_semantic_augmentations(cfg, True)
        names = [type(a).__name__ for a in augs]
        assert names[-2:] == ["RandomGrayscale", "RandomBlur"], config
        assert tuple(cfg.INPUT.RANDOM_SCALE) == (0.5, 2.0)
        assert augs[-2].prob == 0.3 and augs[-2].image_format == "RGB"
        assert augs[-1].prob == 0.5 and augs[-1].sigma_range == (0.1, 5.0) and augs[-1].size == 5
        assert build_semantic_augmentations(cfg, False) == [] or all(
            type(a).__name__ not in ("RandomGrayscale", "RandomBlur") for a in build_semantic_augmentations(cfg, False)
        )


def test_draws_come_from_the_per_image_generator():
    """The same per-image seed (what the resumable loader sets around each mapper call) gives the
    same grayscale/blur draws, and the surrounding generator state is left as it was."""
    image = _image(5, (12, 12, 3))
    augs = [RandomGrayscale(0.3), RandomBlur(0.5)]

    def run(seed):
        with isolated_rng(seed):
            aug_input = T.AugInput(image.copy())
            T.AugmentationList(augs)(aug_input)
            return aug_input.image

    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    outputs = {seed: run(seed) for seed in range(12)}
    assert np.array_equal(np.random.get_state()[1], before)
    assert all(np.array_equal(run(seed), out) for seed, out in outputs.items())
    assert len({out.tobytes() for out in outputs.values()}) > 2  # the seeds do change the draws


def test_the_mapper_changes_the_image_only(tmp_path):
    """Through WeakLabelDatasetMapper: grayscale and blur reach the image, never the CAMs or the
    sparse labels (the CAMs follow the geometry only)."""
    from PIL import Image

    from wss_d2.data import WeakLabelDatasetMapper
    from wss_d2.data.weak_labels.cams import write_irn_cams

    h, w = 24, 32
    image = _image(6, (h, w, 3))
    image_file = str(tmp_path / "im.png")
    Image.fromarray(image).save(image_file)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    cams = np.stack([xs / w, ys / h])
    cam_file = str(tmp_path / "cam.npy")
    write_irn_cams(cam_file, [15, 1], cams)
    scribble = np.full((h, w), 255, np.uint8)
    scribble[5, 3:20] = 15
    scribble_file = str(tmp_path / "s.png")
    Image.fromarray(scribble, mode="L").save(scribble_file)
    augs = [T.RandomFlip(prob=1.0), RandomGrayscale(1.0), RandomBlur(1.0, (1.0, 1.0))]
    mapper = WeakLabelDatasetMapper(True, augmentations=augs, image_format="RGB", num_classes=21,
                                    weak_label="scribbles", sparse_unlabeled_value=255, sparse_void_value=None)
    np.random.seed(0)
    out = mapper({"file_name": image_file, "cam_file_name": cam_file, "sparse_sem_seg_file_name": scribble_file})
    expected = BlurTransform(1.0).apply_image(GrayscaleTransform((0.3, 0.59, 0.11)).apply_image(image[:, ::-1].copy()))
    assert np.array_equal(out["image"].numpy().transpose(1, 2, 0), expected)
    assert np.allclose(out["cams"].numpy(), cams[:, :, ::-1])
    assert np.array_equal(out["sparse_sem_seg"].numpy(), np.where(scribble == 255, 21, scribble)[:, ::-1])
