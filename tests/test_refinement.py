"""wss_d2.refinement: probabilities, tag restriction, argmax with threshold, confident regions,
pseudo-label quality, and the CRF label generators on a DenseCRFPool."""
import numpy as np
import pytest
import torch

from wss_d2 import get_wss_cfg
from wss_d2.inference import DenseCRF, DenseCRFPool
from wss_d2.refinement import (
    PseudoLabelQuality, argmax_labels, argmax_with_threshold, combine_confident_regions, confident_region_labels,
    confident_region_pool, ir_label_jobs, restrict_to_tags, scores_to_probabilities,
)


# ------------------------------------------------------------------ probabilities
def test_argmax_with_threshold():
    probs = np.array([[[0.6, 0.3]], [[0.4, 0.45]], [[0.0, 0.25]]], np.float32)
    label = argmax_with_threshold(probs, 0.0, 255)
    assert label.dtype == np.uint8 and label.tolist() == [[0, 1]]
    assert argmax_with_threshold(probs, 0.5, 255).tolist() == [[0, 255]]  # 0.45 < 0.5
    assert argmax_with_threshold(probs, 0.45, 7).tolist() == [[0, 1]]  # at the threshold: kept


def test_restrict_to_tags_renormalises_and_zeroes_absent_classes():
    probs = np.array([[[0.2]], [[0.5]], [[0.1]], [[0.2]]], np.float32)
    restricted = restrict_to_tags(probs, np.array([1, 0, 1, 0], np.float32))
    assert restricted[:, 0, 0].tolist() == pytest.approx([2 / 3, 0, 1 / 3, 0])
    # a pixel with no mass on the tagged classes stays all zero (no division by zero)
    assert restrict_to_tags(np.array([[[0.0]], [[1.0]]], np.float32), [1, 0])[:, 0, 0].tolist() == [0, 0]


def test_sem_seg_of_each_kind():
    scores = torch.tensor([[[1.0, 0.0]], [[3.0, 2.0]]])
    logits = scores_to_probabilities({"sem_seg": scores}, "sem_seg", 2, 0.15, 0)
    assert np.allclose(logits, torch.softmax(scores, 0).numpy()) and logits.dtype == np.float32
    probs = torch.tensor([[[0.7, 0.2]], [[0.3, 0.8]]])
    out = scores_to_probabilities({"sem_seg": probs, "sem_seg_kind": "probabilities"}, "sem_seg", 2, 0.15, 0)
    assert np.array_equal(out, probs.numpy())
    out = scores_to_probabilities({"sem_seg": scores}, "sem_seg", 2, 0.15, 0, kind="scores")  # the model's kind
    assert out[:, 0, 0].tolist() == pytest.approx([0.25, 0.75]) and out[:, 0, 1].tolist() == pytest.approx([0, 1])
    with pytest.raises(ValueError, match="source"):
        scores_to_probabilities({"sem_seg": scores}, "boxes", 2, 0.15, 0)


def test_foreground_cams_get_the_constant_background():
    cams = torch.tensor([[[1.0, 0.1]], [[0.5, 0.05]]])  # classes 1 and 3 of 4, no background channel
    probs = scores_to_probabilities({"cams": cams, "cam_labels": torch.tensor([1, 3])}, "cams", 4, 0.2, 0)
    assert probs.shape == (4, 1, 2) and np.allclose(probs.sum(0), 1)
    assert probs[:, 0, 0].tolist() == pytest.approx([0.2 / 1.7, 1 / 1.7, 0, 0.5 / 1.7])
    assert probs[:, 0, 1].tolist() == pytest.approx([0.2 / 0.35, 0.1 / 0.35, 0, 0.05 / 0.35])
    # no background class (a dataset without one): no constant
    probs = scores_to_probabilities({"cams": cams, "cam_labels": torch.tensor([1, 3])}, "cams", 4, 0.2, None)
    assert probs[0].tolist() == [[0, 0]]
    with pytest.raises(KeyError, match="no 'cams'"):
        scores_to_probabilities({"sem_seg": cams}, "cams", 4, 0.2, 0)


def test_cams_with_a_background_channel_keep_their_own():
    cams = torch.tensor([[[0.6, 0.1]], [[0.2, 0.3]]])  # background (0) and class 2
    probs = scores_to_probabilities({"cams": cams, "cam_labels": torch.tensor([0, 2])}, "cams", 3, 0.9, 0)
    assert probs[:, 0, 0].tolist() == pytest.approx([0.75, 0, 0.25])
    assert probs[:, 0, 1].tolist() == pytest.approx([0.25, 0, 0.75])


# ------------------------------------------------------------------ confident regions
def test_confident_regions_of_three_channels():
    cam_labels = [0, 3, 6]  # background, classes 3 and 6
    # pixel: fg agreement (class 3), fg (class 6) whatever bg says, bg agreement, uncertain (fg says
    # background, the halved background says a class)
    fg_conf = np.array([[1, 2, 0, 0]])
    bg_conf = np.array([[1, 0, 0, 2]])
    assert combine_confident_regions(fg_conf, bg_conf, cam_labels).tolist() == [[3, 6, 0, 255]]
    kept = combine_confident_regions(fg_conf, bg_conf, cam_labels, ignore_label=200, keep_uncertain=False)
    assert kept.dtype == np.uint8 and kept.tolist() == [[3, 6, 0, 0]]
    # another background class value
    assert combine_confident_regions(fg_conf, bg_conf, [9, 3, 6], keep_uncertain=False,
                                     background_class=9).tolist() == [[3, 6, 9, 9]]


# ------------------------------------------------------------------ quality
def test_quality_of_a_hand_made_pair():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 0]], np.uint8)
    label = np.array([[0, 1, 1, 255], [2, 255, 2, 0]], np.uint8)
    quality = PseudoLabelQuality(3, ignore_label=255, background_class=0)
    assert quality.metrics(["bg", "a", "b"]) == {}
    quality.update(label, gt)
    metrics = quality.metrics(["bg", "a", "b"])
    # labelled GT-valid pixels: (0,0) (0,1) (0,2) (1,0) (1,3): bg 2/3, a 1/2, b 1/1
    assert metrics["mIoU"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 1) / 3)
    assert metrics["pACC"] == pytest.approx(100 * 4 / 5)
    assert metrics["coverage"] == pytest.approx(100 * 5 / 7)
    # ignored pixels as background: (0,3) a -> bg, (1,1) b -> bg: bg 2/5, a 1/3, b 1/2
    assert metrics["mIoU_ignore_as_background"] == pytest.approx(100 * (2 / 5 + 1 / 3 + 1 / 2) / 3)
    assert list(metrics) == ["mIoU", "pACC", "coverage", "mIoU_ignore_as_background"]
    # a second image accumulates
    quality.update(np.array([[1]], np.uint8), np.array([[1]], np.uint8))
    assert quality.metrics(["bg", "a", "b"])["coverage"] == pytest.approx(100 * 6 / 8)
    without_bg = PseudoLabelQuality(3, background_class=None)
    without_bg.update(label, gt)
    assert "mIoU_ignore_as_background" not in without_bg.metrics(["bg", "a", "b"])


# ------------------------------------------------------------------ CRF generators
def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    result = []
    for i in range(n):
        image = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        probs = rng.random((3, 12, 16)).astype(np.float32)
        probs /= probs.sum(0, keepdims=True)
        result.append((f"img{i}", image, probs))
    return result


def test_argmax_labels_on_a_pool_equal_dense_crf():
    crf = DenseCRF(iterations=5)
    items = _images(3)
    with DenseCRFPool(crf, num_workers=1) as pool:
        labels = list(argmax_labels(iter(items), 0.4, 255, pool))
    assert [key for key, _ in labels] == ["img0", "img1", "img2"]
    for (_, image, probs), (_, label) in zip(items, labels):
        assert np.array_equal(label, argmax_with_threshold(crf(image, probs), 0.4, 255))
    # without a pool: the plain argmax, images unused
    plain = list(argmax_labels(((k, None, p) for k, _, p in items), 0.4, 255))
    assert all(np.array_equal(label, argmax_with_threshold(p, 0.4, 255)) for (_, _, p), (_, label) in zip(items, plain))


def test_confident_region_labels_on_a_pool_equal_dense_crf():
    cfg = get_wss_cfg(opts=["TEST.CRF.NUM_WORKERS", "1", "TEST.IR_LABELS.ITERATIONS", "3"])
    node = cfg.TEST.IR_LABELS
    crf = DenseCRF(cfg, node="TEST.IR_LABELS")
    items = [(key, image, probs, np.array([0, 2, 5])) for key, image, probs in _images(2, seed=1)]
    with confident_region_pool(cfg) as pool:
        assert pool.in_process and repr(pool.crf) == repr(crf)
        labels = list(confident_region_labels(iter(items), pool, ignore_label=255, keep_uncertain=True,
                                              background_class=0, bg_scale=node.BG_SCALE, gt_prob=node.GT_PROB))
    assert [key for key, _ in labels] == ["img0", "img1"]
    for (_, image, cams, cam_labels), (_, label) in zip(items, labels):
        fg, bg = ir_label_jobs(image, cams, cam_labels, bg_scale=node.BG_SCALE, gt_prob=node.GT_PROB)
        expected = combine_confident_regions(crf.refine_labels(image, fg.labels, fg.n_labels, fg.gt_prob),
                                             crf.refine_labels(image, bg.labels, bg.n_labels, bg.gt_prob), cam_labels)
        assert np.array_equal(label, expected)
    assert any((label == 255).any() or (label == 0).any() for _, label in labels)
