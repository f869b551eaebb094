"""The shared CAM tools of wss_d2.modeling.cam, by hand, and SIPE's use of them."""
import os

import pytest
import torch
import torch.nn.functional as F

from detectron2.modeling import build_model

from wss_d2 import get_wss_cfg
from wss_d2.modeling.cam import (
    cams_to_class_scores,
    foreground_tags,
    fuse_flip,
    max_normalize,
    min_max_normalize,
    multi_scale_cams,
    normalized_cams,
    validated_image_labels,
)

from .conftest import CONFIGS


def test_normalized_cams_by_hand():
    # 2 classes on a 1x3 map: ReLU, then ÷ (max + eps); background = 1 − max over classes
    logits = torch.tensor([[[[2.0, -1.0, 1.0]], [[0.0, 4.0, 1.0]]]])
    eps = 1e-5
    expected = torch.tensor([[
        [[1 - 2 / (2 + eps), 1 - 4 / (4 + eps), 1 - max(1 / (2 + eps), 1 / (4 + eps))]],
        [[2 / (2 + eps), 0.0, 1 / (2 + eps)]],
        [[0.0, 4 / (4 + eps), 1 / (4 + eps)]],
    ]])
    got = normalized_cams(logits)
    assert got.shape == (1, 3, 1, 3)
    assert torch.allclose(got, expected, atol=1e-7)


def test_max_normalize_per_channel():
    maps = torch.tensor([[[1.0, 2.0], [4.0, 0.0]], [[0.5, 0.25], [0.0, 0.0]]])
    got = max_normalize(maps, eps=0.0)
    assert torch.equal(got, torch.tensor([[[0.25, 0.5], [1.0, 0.0]], [[1.0, 0.5], [0.0, 0.0]]]))
    assert torch.allclose(max_normalize(maps), maps / (maps.amax(dim=(1, 2), keepdim=True) + 1e-5))
    # batched (N, C, H, W) equals the per-image result
    assert torch.equal(max_normalize(maps[None])[0], max_normalize(maps))
    shifted = min_max_normalize(maps + 3, eps=0.0)
    assert torch.allclose(shifted[0], torch.tensor([[0.25, 0.5], [1.0, 0.0]]))


def test_cams_to_class_scores_foreground_only():
    cams = torch.tensor([[[0.2, 0.4]], [[0.9, 0.1]]], dtype=torch.float64)
    scores = cams_to_class_scores(cams, torch.tensor([2, 4]), 5, background_class=0, background_score=0.25)
    assert scores.shape == (5, 1, 2) and scores.dtype == torch.float64
    assert torch.equal(scores[[2, 4]], cams)
    assert torch.equal(scores[0], torch.full((1, 2), 0.25, dtype=torch.float64))
    assert scores[[1, 3]].abs().sum() == 0


def test_cams_to_class_scores_with_background_map_and_without_score():
    cams = torch.tensor([[[0.7, 0.3]], [[0.1, 0.6]]])
    # the background is among the labels: its map is kept, the constant is not used
    scores = cams_to_class_scores(cams, [0, 3], 4, background_class=0, background_score=0.25)
    assert torch.equal(scores[0], cams[0]) and torch.equal(scores[3], cams[1])
    # background_score None: the background channel stays 0
    scores = cams_to_class_scores(cams[1:], [3], 4, background_class=0)
    assert scores[0].abs().sum() == 0 and torch.equal(scores[3], cams[1])
    with pytest.raises(ValueError, match="cam_labels"):
        cams_to_class_scores(cams, [3], 4)
    with pytest.raises(ValueError, match="outside 0..3"):
        cams_to_class_scores(cams, [0, 4], 4)


def test_image_label_errors_name_the_image_and_the_method():
    labels = validated_image_labels({"image_labels": [[1, 0, 1]], "file_name": "a.jpg"}, 3, "SIPE")
    assert labels.tolist() == [1, 0, 1]
    with pytest.raises(KeyError, match=r"MCC needs image tags \('image_labels'\) for a.jpg"):
        validated_image_labels({"file_name": "a.jpg"}, 3, "MCC")
    with pytest.raises(ValueError, match="AGMM: image_labels of 7 has 2 entries, expected 3"):
        validated_image_labels({"image_labels": torch.ones(2), "image_id": 7}, 3, "AGMM")
    batch = [{"image_labels": torch.tensor([1.0, 0, 1])}, {"image_labels": torch.tensor([0.0, 1, 1])}]
    tags = foreground_tags(batch, 3, background_class=1, method="SIPE")
    assert tags.dtype == torch.float32 and tags.tolist() == [[1, 1], [0, 1]]  # column 1 dropped


def test_fuse_flip():
    maps = torch.tensor([[[[1.0, 2.0, 3.0]]], [[[0.0, 5.0, 1.0]]]])  # an image and its mirror
    assert torch.equal(fuse_flip(maps, "sum"), torch.tensor([[[[2.0, 7.0, 3.0]]]]))
    assert torch.equal(fuse_flip(maps, "max"), torch.tensor([[[[1.0, 5.0, 3.0]]]]))


def _toy_network(image):
    """(N, 2, h/2, w/2) maps of a float image batch: channel means and squares, pooled."""
    pooled = F.avg_pool2d(image, 2)
    return torch.cat([pooled.mean(1, keepdim=True), (pooled**2).mean(1, keepdim=True) - 0.3], dim=1)


def _bilinear(image, size):
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


def test_multi_scale_cams_equals_a_hand_written_loop():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 12, 16)
    scales = (1.0, 0.5)

    def maps_at_scale(x):
        return F.relu(fuse_flip(_toy_network(torch.cat([x, x.flip(-1)])), "sum"))

    got = multi_scale_cams(image, scales, maps_at_scale, resize=_bilinear)

    total = 0
    for scale in scales:
        x = image if scale == 1.0 else _bilinear(image, (round(12 * scale), round(16 * scale)))
        maps = F.relu(_toy_network(x) + _toy_network(x.flip(-1)).flip(-1))
        total = total + F.interpolate(maps, size=(12, 16), mode="bilinear", align_corners=False)
    expected = total / (total.amax(dim=(2, 3), keepdim=True) + 1e-5)
    assert got.shape == (1, 2, 12, 16)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.amax(dim=(2, 3)), torch.ones(1, 2), atol=1e-4)  # max-normalised

    # MCC-style: floor sizes, max flip fusion at the full size, min-max normalisation
    def full_size_maps(x):
        maps = _bilinear(_toy_network(torch.cat([x, x.flip(-1)])), (12, 16))
        return F.relu(fuse_flip(maps, "max"))

    got = multi_scale_cams(image, (1.0, 0.7), full_size_maps, resize=_bilinear, size_rounding=int,
                           normalize=min_max_normalize)
    small = _bilinear(image, (8, 11))  # int(12 * 0.7), int(16 * 0.7)
    total = full_size_maps(image) + full_size_maps(small)
    shifted = total - total.amin(dim=(2, 3), keepdim=True)
    assert torch.allclose(got, shifted / (shifted.amax(dim=(2, 3), keepdim=True) + 1e-5), atol=1e-6)


def test_sipe_cam_background_score_reaches_sem_seg():
    cfg = get_wss_cfg(os.path.join(CONFIGS, "synthetic", "sipe_R18.yaml"), [
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "TEST.SIPE.SCALES", "[1.0]",
        "MODEL.SIPE.TEST_OUTPUT", "cam", "MODEL.SIPE.CAM_BACKGROUND_SCORE", "0.3",
    ])
    assert get_wss_cfg().MODEL.SIPE.CAM_BACKGROUND_SCORE == 0.15  # the default
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    labels = torch.tensor([1.0, 0, 1, 0, 0, 1])  # background + classes 2 and 5
    out = model([{"image": torch.randint(0, 255, (3, 32, 40), dtype=torch.uint8), "image_labels": labels}])[0]
    assert out["cam_labels"].tolist() == [2, 5]
    assert out["sem_seg"].shape == (6, 32, 40)
    assert torch.equal(out["sem_seg"][0], torch.full((32, 40), 0.3))
    assert torch.equal(out["sem_seg"][[2, 5]], out["cams"])
